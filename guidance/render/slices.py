"""CT slice images for the OR monitor: axial, sagittal, coronal through the applicator.

Plain numpy/OpenCV (no Qt): each view is an RGB image of the CT (windowed) resampled on a
plane through a point (the centre of the applicator's end face), with structure outlines,
isodose lines and the applicator's beam axis drawn on it. The monitor only displays the
image. Display conventions are radiological:

* axial: columns to patient left (+x), rows to posterior (+y) — anterior at the top;
* sagittal: columns to posterior (+y), rows to inferior (-z) — superior at the top;
* coronal: columns to patient left (+x), rows to inferior (-z).

``patient_from_pixel`` of each :class:`SliceImage` maps ``(column, row, 0)`` to LPS mm, so
a test can check where a point is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from models.base.errors import InputError
from models.base.validation import as_array, as_positive, as_transform
from models.patient.volume import Volume

ORIENTATIONS: tuple[str, ...] = ("axial", "sagittal", "coronal")
#: (column direction, row direction) in LPS for each orientation.
_AXES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
}


@dataclass(frozen=True)
class Outline:
    """A structure to outline: boolean mask on the CT grid and its colour (RGB 0-255);
    ``dashed`` draws it dashed (e.g. an organ's preoperative position, where it was before
    it was retracted)."""

    mask: np.ndarray
    color_rgb: tuple[int, int, int]
    dashed: bool = False


@dataclass(frozen=True)
class IsodoseLevel:
    """An isodose line: dose level (Gy) and colour (RGB 0-255)."""

    level_gy: float
    color_rgb: tuple[int, int, int]


@dataclass(frozen=True)
class SliceImage:
    """A rendered slice.

    Attributes
    ----------
    orientation : str
        One of :data:`ORIENTATIONS`.
    rgb : (H, W, 3) uint8
        The picture.
    patient_from_pixel : (4, 4) array
        Maps ``(column, row, 0, 1)`` (pixel centres) to patient LPS mm.
    """

    orientation: str
    rgb: np.ndarray
    patient_from_pixel: np.ndarray

    def pixel_of(self, point_lps: np.ndarray) -> np.ndarray:
        """(column, row) where a patient point projects on this slice (orthogonally)."""
        p = as_array(point_lps, name="point_lps", shape=(3,))
        pixel_from_patient = np.linalg.inv(self.patient_from_pixel)
        return (pixel_from_patient[:3, :3] @ p + pixel_from_patient[:3, 3])[:2]


#: Patient direction letters (LPS: +x left, +y posterior, +z superior).
_LETTERS = {(0, 1): "L", (0, -1): "R", (1, 1): "P", (1, -1): "A", (2, 1): "S", (2, -1): "I"}


def _letter(direction: np.ndarray) -> str:
    axis = int(np.argmax(np.abs(direction)))
    return _LETTERS[(axis, 1 if direction[axis] > 0 else -1)]


def edge_labels(orientation: str) -> dict[str, str]:
    """Which patient direction each edge of a slice image faces.

    Returns
    -------
    dict
        ``{"left", "right", "top", "bottom"}`` to ``"A"``/``"P"``/``"L"``/``"R"``/``"S"``/
        ``"I"``.

    Examples
    --------
    >>> edge_labels("axial")
    {'left': 'R', 'right': 'L', 'top': 'A', 'bottom': 'P'}
    """
    col, row = (np.asarray(a) for a in _AXES[orientation])
    return {"left": _letter(-col), "right": _letter(col), "top": _letter(-row),
            "bottom": _letter(row)}


def slice_normal(orientation: str) -> np.ndarray:
    """Unit normal (LPS) of a slice orientation: the direction a positive scroll moves."""
    col, row = (np.asarray(a) for a in _AXES[orientation])
    return np.cross(col, row)


def plane_frame(orientation: str, centre_lps: np.ndarray, *, size_px: int,
                pixel_mm: float) -> np.ndarray:
    """``patient_from_pixel`` of a square slice of ``size_px`` pixels centred on a point."""
    if orientation not in _AXES:
        raise InputError(f"orientation {orientation!r} unknown; choose one of: "
                         f"{', '.join(ORIENTATIONS)}")
    col, row = (np.asarray(a) for a in _AXES[orientation])
    normal = np.cross(col, row)
    out = np.eye(4)
    out[:3, 0] = col * pixel_mm
    out[:3, 1] = row * pixel_mm
    out[:3, 2] = normal * pixel_mm
    half = (size_px - 1) / 2.0
    out[:3, 3] = np.asarray(centre_lps, dtype=np.float64) - half * pixel_mm * (col + row)
    return out


def _plane_voxels(volume: Volume, patient_from_pixel: np.ndarray, size_px: int) -> np.ndarray:
    """Voxel coordinates (i, j, k) of a plane's pixel centres, shape (3, size_px**2)."""
    rows, cols = np.mgrid[0:size_px, 0:size_px].astype(np.float64)
    pixel = np.stack([cols.ravel(), rows.ravel(), np.zeros(cols.size), np.ones(cols.size)])
    return (volume.voxel_from_patient @ patient_from_pixel @ pixel)[:3]


def sample_masks(grid: Volume, masks: Sequence[np.ndarray], patient_from_pixel: np.ndarray,
                 size_px: int) -> list[np.ndarray]:
    """Boolean masks on ``grid``'s voxels at the pixel centres of a plane (nearest voxel,
    False outside the grid), each (size_px, size_px).

    The same values as ``sample_plane(grid.with_array(mask), ..., order=0) > 0.5`` away
    from the grid's outer half voxel, with the voxel lookup computed once for all masks
    (a slice with a dozen outlined structures: about 4 ms a mask otherwise).
    """
    ijk = np.floor(_plane_voxels(grid, patient_from_pixel, size_px) + 0.5).astype(np.intp)
    shape_ijk = np.array(grid.array.shape[::-1])[:, None]
    inside = np.all((ijk >= 0) & (ijk < shape_ijk), axis=0)
    flat = np.ravel_multi_index(tuple(np.clip(ijk, 0, shape_ijk - 1)[::-1]), grid.array.shape)
    out = []
    for mask in masks:
        values = np.asarray(mask).reshape(-1)[flat].astype(bool)
        values &= inside
        out.append(values.reshape(size_px, size_px))
    return out


def sample_plane(volume: Volume, patient_from_pixel: np.ndarray, size_px: int, *,
                 order: int, fill_value: float = 0.0) -> np.ndarray:
    """Values of ``volume`` at the pixel centres of a plane, shape (size_px, size_px) float32."""
    ijk = _plane_voxels(volume, patient_from_pixel, size_px)
    array = volume.array
    if array.dtype == np.bool_:
        array = array.view(np.uint8)
    values = ndimage.map_coordinates(array, ijk[::-1], order=order, mode="constant",
                                     cval=fill_value, output=np.float32)
    return values.reshape(size_px, size_px)


def window_ct(hu: np.ndarray, *, level_hu: float = 40.0, width_hu: float = 400.0) -> np.ndarray:
    """Grey uint8 image of CT values with a window (default soft tissue)."""
    low = level_hu - width_hu / 2.0
    grey = np.clip((hu - low) / width_hu * 255.0, 0, 255).astype(np.uint8)
    return grey


def render_slice(ct: Volume, orientation: str, centre_lps: np.ndarray, *,
                 outlines: Mapping[str, Outline] | None = None,
                 dose: Volume | None = None,
                 isodoses: Sequence[IsodoseLevel] = (),
                 patient_from_applicator: np.ndarray | None = None,
                 disc_mm: tuple[float, float, float] | None = None,
                 size_px: int = 256, pixel_mm: float = 1.0,
                 level_hu: float = 40.0, width_hu: float = 400.0) -> SliceImage:
    """Render one slice view (see module docstring).

    Parameters
    ----------
    ct : Volume
        CT in HU.
    orientation : str
        ``"axial"``, ``"sagittal"`` or ``"coronal"``.
    centre_lps : (3,) array
        Point the slice passes through (mm), e.g. the applicator end-face centre.
    outlines : mapping of name to Outline, optional
        Structure masks on the CT grid, drawn as 1-px outlines.
    dose : Volume, optional
        Dose in Gy (any grid); with ``isodoses`` drawn as 2-px lines.
    patient_from_applicator : (4, 4) array, optional
        Draws the beam axis (dashed behind the end face, solid 60 mm into tissue).
    disc_mm : (diameter, thickness, depth), optional
        A shielding disc in the applicator frame (mm), drawn filled in :data:`DISC_RGB`
        with a white edge where the slice cuts it (needs ``patient_from_applicator``).
    size_px, pixel_mm : int, float
        Image size (square) and pixel size.
    """
    centre = as_array(centre_lps, name="centre_lps", shape=(3,))
    pixel_mm = as_positive(pixel_mm, name="pixel_mm")
    frame = plane_frame(orientation, centre, size_px=size_px, pixel_mm=pixel_mm)
    hu = sample_plane(ct, frame, size_px, order=1, fill_value=-1000.0)
    rgb = np.repeat(window_ct(hu, level_hu=level_hu, width_hu=width_hu)[..., None], 3, axis=2)
    shown = list((outlines or {}).values())
    for outline, inside in zip(shown, sample_masks(ct, [o.mask for o in shown], frame,
                                                    size_px), strict=True):
        if outline.dashed:
            _draw_dashed_contours(rgb, inside, outline.color_rgb)
        else:
            _draw_contours(rgb, inside, outline.color_rgb, thickness=1)
    if dose is not None:
        dose_plane = sample_plane(dose, frame, size_px, order=1)
        for iso in isodoses:
            _draw_contours(rgb, dose_plane >= iso.level_gy, iso.color_rgb, thickness=2)
    if patient_from_applicator is not None:
        pose = as_transform(patient_from_applicator, name="patient_from_applicator",
                            rigid=True)
        if disc_mm is not None:
            _draw_disc(rgb, frame, pose, disc_mm)
        _draw_axis(rgb, frame, pose)
    return SliceImage(orientation, np.ascontiguousarray(rgb), frame)


#: Fill colour of a shielding disc cut by a slice (metal grey-blue; edge white).
DISC_RGB = (150, 160, 190)


def _draw_disc(rgb: np.ndarray, patient_from_pixel: np.ndarray,
               patient_from_applicator: np.ndarray, disc_mm: tuple[float, float, float]
               ) -> None:
    """Fill the pixels inside the disc (applicator frame: |xy| <= r, depth <= z <= depth +
    thickness) and outline them."""
    diameter, thickness, depth = (float(v) for v in disc_mm)
    size = rgb.shape[0]
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    pixel = np.stack([cols.ravel(), rows.ravel(), np.zeros(cols.size), np.ones(cols.size)])
    app = (np.linalg.inv(patient_from_applicator) @ patient_from_pixel @ pixel)[:3]
    inside = ((np.hypot(app[0], app[1]) <= diameter / 2.0)
              & (app[2] >= depth) & (app[2] <= depth + thickness)).reshape(size, size)
    if not inside.any():
        return
    rgb[inside] = DISC_RGB
    _draw_contours(rgb, inside, (255, 255, 255), thickness=1)


def _draw_contours(rgb: np.ndarray, inside: np.ndarray, color: tuple[int, int, int], *,
                   thickness: int) -> None:
    if not inside.any():
        return
    contours, _ = cv2.findContours(inside.astype(np.uint8), cv2.RETR_LIST,
                                   cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(rgb, contours, -1, tuple(int(c) for c in color), thickness)


#: Dashed outlines: pixels drawn, then pixels skipped, along each contour.
DASH_PX = (4, 3)


def _draw_dashed_contours(rgb: np.ndarray, inside: np.ndarray,
                          color: tuple[int, int, int]) -> None:
    """1-px contours of ``inside`` drawn :data:`DASH_PX` on/off along their length."""
    if not inside.any():
        return
    contours, _ = cv2.findContours(inside.astype(np.uint8), cv2.RETR_LIST,
                                   cv2.CHAIN_APPROX_NONE)
    on, off = DASH_PX
    colour = np.array(color, dtype=rgb.dtype)
    for contour in contours:
        points = contour.reshape(-1, 2)
        keep = (np.arange(len(points)) % (on + off)) < on
        cols, rows = points[keep, 0], points[keep, 1]
        rgb[rows, cols] = colour


def _draw_axis(rgb: np.ndarray, patient_from_pixel: np.ndarray,
               patient_from_applicator: np.ndarray) -> None:
    pixel_from_patient = np.linalg.inv(patient_from_pixel)
    pixel_from_applicator = pixel_from_patient @ patient_from_applicator

    def to_px(z_mm: float) -> tuple[int, int]:
        p = pixel_from_applicator @ np.array([0.0, 0.0, z_mm, 1.0])
        return round(p[0]), round(p[1])

    cv2.line(rgb, to_px(0.0), to_px(60.0), (0, 230, 255), 1, cv2.LINE_AA)
    for start in range(-150, 0, 10):
        cv2.line(rgb, to_px(float(start)), to_px(start + 5.0), (0, 230, 255), 1, cv2.LINE_AA)
    cv2.circle(rgb, to_px(0.0), 3, (0, 230, 255), -1)
