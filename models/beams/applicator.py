"""IORT electron applicator geometry: a circular tube with a flat or bevelled distal end.

Applicator frame (mm): origin at the centre of the distal end face, +z along the tube axis
(the beam direction, into tissue). A bevelled end is cut at ``bevel_deg`` about the x axis
so that the end face is the plane ``z = y tan(bevel)``: the long side ("toe") of the tube
is at +y, the short side ("heel") at -y. Seen along the beam the aperture is the tube's
circular cross-section of radius ``diameter / 2`` whatever the bevel, so each pencil at
``(x, y)`` leaves the applicator at its own depth ``z = y tan(bevel)``.

When the bevelled end rests on a flat surface, the surface normal (into tissue) is
``(0, -sin b, cos b)``: the clinical axis, tilted by the bevel from the beam axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.base.errors import InputError
from models.base.validation import as_positive


@dataclass(frozen=True)
class Applicator:
    """Geometry of one applicator.

    Parameters
    ----------
    diameter_mm : float
        Inner diameter of the tube (mm): the aperture.
    bevel_deg : float, default 0
        Angle between the end face and the plane normal to the tube axis (deg), in [0, 60].
    wall_mm : float, default 5
        Wall thickness (mm), for drawing only.
    length_mm : float, default 200
        Length drawn above the end face (mm), for drawing only.
    """

    diameter_mm: float
    bevel_deg: float = 0.0
    wall_mm: float = 5.0
    length_mm: float = 200.0

    def __post_init__(self) -> None:
        as_positive(self.diameter_mm, name="diameter_mm")
        bevel = float(self.bevel_deg)
        if not np.isfinite(bevel) or not 0.0 <= bevel <= 60.0:
            raise InputError(f"bevel_deg must be in [0, 60], got {self.bevel_deg!r}")

    @property
    def radius_mm(self) -> float:
        """Aperture radius (mm)."""
        return 0.5 * float(self.diameter_mm)

    @property
    def slope(self) -> float:
        """tan(bevel): dz/dy of the end face in the applicator frame."""
        return float(np.tan(np.radians(self.bevel_deg)))

    def face_z_mm(self, x_mm: np.ndarray, y_mm: np.ndarray) -> np.ndarray:
        """Depth z (mm, applicator frame) of the end face above the points (x, y)."""
        del x_mm  # the face is tilted about x only
        return np.asarray(y_mm, dtype=np.float64) * self.slope

    def face_normal(self) -> np.ndarray:
        """Unit normal of the end face pointing into tissue, shape (3,), applicator frame."""
        b = np.radians(self.bevel_deg)
        return np.array([0.0, -np.sin(b), np.cos(b)])

    def inside_aperture(self, x_mm: np.ndarray, y_mm: np.ndarray) -> np.ndarray:
        """Boolean mask: which (x, y) lie inside the aperture circle."""
        x = np.asarray(x_mm, dtype=np.float64)
        y = np.asarray(y_mm, dtype=np.float64)
        return x * x + y * y <= self.radius_mm ** 2

    def rim_points(self, n: int = 64) -> np.ndarray:
        """(n, 3) points of the inner rim of the end face, applicator frame (mm)."""
        t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
        x = self.radius_mm * np.cos(t)
        y = self.radius_mm * np.sin(t)
        return np.stack([x, y, self.face_z_mm(x, y)], axis=1)

    def aperture_weights(self, spacing_mm: float, x_mm: np.ndarray, y_mm: np.ndarray, *,
                         supersample: int = 8) -> np.ndarray:
        """Fraction of each square pencil cell (side ``spacing_mm``, centred at (x, y)) open.

        Shapes of ``x_mm``/``y_mm`` broadcast; the result has the broadcast shape, values in
        [0, 1], computed by ``supersample`` x ``supersample`` sub-points per cell.
        """
        h = as_positive(spacing_mm, name="spacing_mm")
        offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
        ox, oy = np.meshgrid(offsets * h, offsets * h, indexing="xy")
        x = np.asarray(x_mm, dtype=np.float64)[..., None, None] + ox
        y = np.asarray(y_mm, dtype=np.float64)[..., None, None] + oy
        return self.inside_aperture(x, y).mean(axis=(-2, -1))
