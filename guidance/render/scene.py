"""What the guidance views show, as plain data: meshes in patient space with their looks.

No rendering here and no Qt: :mod:`guidance.render.overlay` (offscreen, for the demo and reports)
and the OR monitor both draw a :class:`Scene`. Every mesh is in patient LPS millimetres,
except items given a ``patient_from_item`` transform (the tracked applicator), whose mesh
is in its own frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyvista as pv
import vtk

from models.base.validation import as_positive, as_transform
from models.patient.volume import Volume

log = logging.getLogger(__name__)

#: Triangle budget per scene item in the live views (the monitor's AR and 3D views and their
#: benchmark). Decimating the phantom's meshes from 4000 to 1500 triangles moves a vertex by
#: at most 0.09 mm on the CTV and 1.25 mm on the bowel and body (0.1-0.9 mm on the other
#: organs; tests/guidance/render/test_scene_actors.py), while the CPU rasteriser draws the
#: 1280x720 AR layer 1.5-2 times as fast. Reports and the demo's video draw full meshes.
LIVE_MAX_TRIANGLES = 1500

#: Default looks per role: RGB 0-1, opacity, and whether drawn as lines.
STYLE_TARGET = {"color": (0.95, 0.2, 0.2), "opacity": 0.55}
STYLE_ORGAN = {"opacity": 0.35}
STYLE_ISODOSE = {"color": (1.0, 0.85, 0.0), "opacity": 0.45}
STYLE_APPLICATOR = {"color": (0.75, 0.85, 0.95), "opacity": 0.6}


@dataclass
class SceneItem:
    """One mesh of the scene.

    Attributes
    ----------
    name : str
        Unique name (structure name, ``"applicator"``, ``"isodose_90"``...).
    mesh : pyvista.PolyData
        Surface in patient LPS mm, or in the item's own frame when ``patient_from_item``
        is set.
    color : tuple of float
        RGB in 0..1.
    opacity : float
        0..1.
    patient_from_item : (4, 4) array or None
        Pose of the item's frame in patient space (mm); ``None`` for patient-space meshes.
    visible : bool
        Hidden items stay in the scene but are not drawn.
    """

    name: str
    mesh: pv.PolyData
    color: tuple[float, float, float]
    opacity: float = 1.0
    patient_from_item: np.ndarray | None = None
    visible: bool = True


@dataclass
class Scene:
    """An ordered set of :class:`SceneItem` keyed by name."""

    items: dict[str, SceneItem] = field(default_factory=dict)

    def add(self, item: SceneItem) -> None:
        """Add or replace an item."""
        self.items[item.name] = item

    def set_pose(self, name: str, patient_from_item: np.ndarray) -> None:
        """Move an item (e.g. the tracked applicator) to a new pose in patient space."""
        self.items[name].patient_from_item = as_transform(patient_from_item,
                                                          name="patient_from_item")


def rgb_unit(color_rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """DICOM-style 0-255 colour to 0-1."""
    return tuple(float(c) / 255.0 for c in color_rgb)  # type: ignore[return-value]


def isodose_surface(dose: Volume, level_gy: float, *,
                    max_triangles: int | None = None) -> pv.PolyData:
    """Surface where the dose crosses ``level_gy``, in patient LPS mm.

    Contours in voxel-index space with VTK flying edges, then maps the points through the
    dose grid's ``patient_from_voxel`` (so oblique and beam-aligned grids are exact).

    Parameters
    ----------
    dose : Volume
        Dose grid in Gy.
    level_gy : float
        Isodose level in Gy.
    max_triangles : int or None
        Decimate to this many triangles (the live views pass :data:`LIVE_MAX_TRIANGLES`, on
        the dose worker, so the window does not decimate every new dose); ``None`` keeps
        the contour as computed.

    Returns
    -------
    pyvista.PolyData
        The isodose surface (empty if the level is never reached).
    """
    level = as_positive(level_gy, name="level_gy")
    values = np.asarray(dose.array, dtype=np.float32)
    if not np.any(values >= level):
        return pv.PolyData()
    # pad by one voxel of zeros so the surface closes at the grid border
    padded = np.pad(values, 1, mode="constant", constant_values=0.0)
    grid = pv.ImageData(dimensions=padded.shape[::-1], origin=(-1.0, -1.0, -1.0))
    grid.point_data["dose"] = padded.ravel(order="C")
    flying = vtk.vtkFlyingEdges3D()
    flying.SetInputData(grid)
    flying.SetValue(0, level)
    flying.ComputeNormalsOff()
    flying.Update()
    surface = pv.wrap(flying.GetOutput())
    if surface.n_points == 0:
        return pv.PolyData()
    surface = surface.transform(dose.patient_from_voxel, inplace=False)
    if max_triangles is not None and surface.n_cells > int(max_triangles):
        from models.patient.anatomy import decimate_mesh

        return decimate_mesh(surface, int(max_triangles))
    return surface.compute_normals(auto_orient_normals=False, split_vertices=False)


def applicator_mesh(diameter_mm: float, *, length_mm: float = 150.0,
                    bevel_deg: float = 0.0, resolution: int = 48) -> pv.PolyData:
    """Tube of an electron applicator in the applicator frame (mm).

    The frame's origin is the centre of the distal end face and +z points along the beam
    into tissue, so the tube extends towards -z. A bevelled end is cut at ``bevel_deg``
    about the x axis through the origin.
    """
    diameter = as_positive(diameter_mm, name="diameter_mm")
    length = as_positive(length_mm, name="length_mm")
    bevel_rad = np.radians(float(bevel_deg))
    # the long side of a bevelled tube reaches beyond z = 0 by r * tan(bevel)
    overshoot = diameter / 2.0 * np.tan(bevel_rad) + 1.0
    tube = pv.Cylinder(center=(0.0, 0.0, (overshoot - length) / 2.0), direction=(0.0, 0.0, 1.0),
                       radius=diameter / 2.0, height=length + overshoot, resolution=resolution,
                       capping=False).triangulate()
    # end face: plane through the origin, normal tilted from +z about x by the bevel angle
    end_normal = (0.0, -np.sin(bevel_rad), np.cos(bevel_rad))
    tube = tube.clip(normal=end_normal, origin=(0.0, 0.0, 0.0), invert=True)
    return tube.extract_surface(algorithm="dataset_surface")
