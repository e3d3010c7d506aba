"""The intraoperative anatomy: the preoperative case plus what the surgeon changed.

During IORT the bowel and stomach are retracted, the tumour is gone and the bed may be
packed. An :class:`EditList` is an ordered, undoable list of such changes, each with who
made it, when and how it was measured; :meth:`EditList.apply` derives the edited case (CT,
labelmaps) from the original and the edits. The original is never modified, so any edit
can be undone and the preoperative position shown beside the current one.

Edits
-----
* :class:`Retraction` — a structure moved rigidly (or affinely):
  ``patient_from_retracted`` maps a point of the organ where the CT saw it to where it is
  now. The moved tissue carries its HU; the space it vacated is filled with ``fill``
  (``"air"`` for an open abdomen, ``"saline"`` / ``"soft_tissue"`` for packing).
* :class:`Resection` — a structure (GTV, cavity) emptied and filled with ``fill``; or,
  with ``region``, a drawn :class:`ResectionRegion` (a sphere or cylinder placed in the
  patient, e.g. at the applicator's tip) without a structure.
* :class:`DiscPlacement` — a shielding disc (material, diameter, thickness) put in the
  patient at ``patient_from_disc``. It does not change the CT (a metal's HU would saturate
  it): the edited case carries it as ``Case.disc`` and the dose engine models it (water-
  equivalent thickness and backscatter, :mod:`models.dose.disc`). The last placement wins:
  placing the disc again moves it; undo puts it back where it was.

Bad input is refused when an edit is checked against its case (:meth:`EditList.add` with
``case=``, and :meth:`EditList.apply`): a structure the case does not have, a move that
takes more than :data:`MAX_OUTSIDE_PERCENT` of an organ outside the CT grid, a disc
centred outside the CT. A transform
that is not rigid is refused when the edit is made (unless ``affine=True``).

Overlaps (applied in list order, each edit on the result of the previous ones):

1. a moved organ takes the voxels where it now lies: its HU and its label win there, and
   the other structures lose those voxels — except the *external* contour (ROI type
   ``EXTERNAL``), which keeps everything inside the body;
2. the vacated voxels (the organ before minus after) get the fill HU and leave the moved
   structure's mask;
3. a resection sets the fill HU inside the structure and keeps its mask (the region stays
   visible as the cavity it is now); a region resection sets it at the region's voxels
   inside the external contour or a ``CAVITY`` structure (all of them without an external
   contour) and changes no mask.

Examples
--------
>>> from models.patient.volume import Volume
>>> from models.patient.case import Case, Structure
>>> ct = Volume.from_grid(np.zeros((4, 4, 8), np.float32), spacing_mm=(1.0, 1.0, 1.0))
>>> bowel = np.zeros((4, 4, 8), bool); bowel[1:3, 1:3, 1:3] = True
>>> case = Case(ct.with_array(np.where(bowel, 40.0, 0.0).astype(np.float32)),
...             {"BOWEL": Structure("BOWEL", bowel)})
>>> moved = np.eye(4); moved[0, 3] = 4.0          # 4 mm along +x (i)
>>> edits = EditList([Retraction("BOWEL", moved, fill="air")])
>>> edited = edits.apply(case)
>>> int(np.argwhere(edited.structures["BOWEL"].mask)[:, 2].min())   # i now starts at 5
5
>>> float(edited.ct.array[1, 1, 1]), float(edited.ct.array[1, 1, 5])   # vacated air, moved HU
(-1000.0, 40.0)
>>> bool(case.structures["BOWEL"].mask[1, 1, 1])                # the original is kept
True
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import ndimage

from models.base.errors import InputError
from models.base.validation import as_array, as_positive, as_transform
from models.patient.case import Case, Structure

#: HU of the materials a vacated or resected region can be filled with.
FILL_HU: dict[str, float] = {"air": -1000.0, "saline": 0.0, "soft_tissue": 40.0,
                             "fat": -100.0}
#: Largest share (%) of a moved organ's voxels that may leave the CT grid: an organ the CT
#: cuts off (small bowel at the last slice) may slide a sliver over the edge; more is refused.
MAX_OUTSIDE_PERCENT = 1.0
#: Structures whose mask never loses voxels to a moved organ.
KEEPS_ITS_VOXELS = ("EXTERNAL",)
#: Structure types that are space in the patient (a drawn region is filled there too,
#: besides the external contour).
OPEN_SPACES = ("CAVITY",)


@dataclass(frozen=True)
class Provenance:
    """Who made an edit, when (Unix s) and how it was measured."""

    who: str = ""
    when_unix_s: float = field(default_factory=time.time)
    how: str = "manual"


def _check_fill(fill: str) -> None:
    if fill not in FILL_HU:
        raise InputError(f"fill {fill!r} is not a material; choose one of: "
                         f"{', '.join(FILL_HU)}")


@dataclass(frozen=True)
class Retraction:
    """A structure moved: ``patient_from_retracted`` maps its preoperative points to now.

    ``affine`` allows a non-rigid (affine) ``patient_from_retracted``; default rigid.
    """

    structure: str
    patient_from_retracted: np.ndarray
    fill: str = "air"
    affine: bool = False
    provenance: Provenance = field(default_factory=Provenance)

    def __post_init__(self) -> None:
        _check_fill(self.fill)
        try:
            matrix = as_transform(self.patient_from_retracted, name="patient_from_retracted",
                                  rigid=not self.affine, atol=1e-5)
        except InputError as exc:
            hint = ("" if self.affine else "; a retraction is rigid unless affine=True: "
                    "check the matrix (rotation rows of unit length, at right angles)")
            raise InputError(f"retraction of {self.structure}: {exc}{hint}; nothing "
                             "applied") from None
        if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix[:3, :3])) < 1e-6:
            raise InputError(f"retraction of {self.structure}: patient_from_retracted is "
                             "singular or not finite; nothing applied")
        object.__setattr__(self, "patient_from_retracted", matrix)

    @property
    def moved_mm(self) -> float:
        """How far the structure's frame origin moved (mm) — see :meth:`describe`."""
        return float(np.linalg.norm(self.patient_from_retracted[:3, 3]))

    def describe(self, centroid_lps: np.ndarray | None = None) -> str:
        """"BOWEL moved 32 mm, 12 deg" (the distance of ``centroid_lps`` if given)."""
        m = self.patient_from_retracted
        angle = float(np.degrees(np.arccos(np.clip((np.trace(m[:3, :3]) - 1) / 2, -1, 1))))
        if centroid_lps is not None:
            c = np.asarray(centroid_lps, float)
            dist = float(np.linalg.norm(m[:3, :3] @ c + m[:3, 3] - c))
        else:
            dist = self.moved_mm
        return f"{self.structure} moved {dist:.0f} mm, {angle:.0f} deg"


def _below(patient_from_applicator: np.ndarray, depth_mm: float, name: str) -> np.ndarray:
    """The applicator frame moved ``depth_mm`` down its axis (+z), in the patient."""
    pose = as_transform(patient_from_applicator, name="patient_from_applicator", rigid=True,
                        atol=1e-5)
    depth = as_positive(depth_mm, name=name, allow_zero=True)
    shift = np.eye(4)
    shift[2, 3] = depth
    return pose @ shift


#: The shapes of a drawn resection region ("contour": a free-hand outline drawn on a slice,
#: extruded through ``length_mm`` about that slice).
REGION_SHAPES = ("sphere", "cylinder", "contour")
#: Smallest area (mm^2) of a drawn outline: below it the drawing is a line or a click.
MIN_OUTLINE_AREA_MM2 = 4.0


def _polygon_area_mm2(xy: np.ndarray) -> float:
    """Area (mm^2) of a closed polygon (shoelace formula, either orientation)."""
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def points_in_polygon(points_xy: np.ndarray, polygon_xy: np.ndarray) -> np.ndarray:
    """Which of ``points_xy`` (N, 2) lie inside the closed ``polygon_xy`` (M, 2), by the
    even-odd rule (a self-crossing outline leaves its doubly wound parts out, as a
    scanline fill does). Same units for both (mm).

    Examples
    --------
    >>> square = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]])
    >>> points_in_polygon(np.array([[1.0, 1.0], [3.0, 1.0]]), square).tolist()
    [True, False]
    """
    px, py = points_xy[:, 0][:, None], points_xy[:, 1][:, None]
    x0, y0 = polygon_xy[:, 0][None, :], polygon_xy[:, 1][None, :]
    x1, y1 = np.roll(polygon_xy[:, 0], -1)[None, :], np.roll(polygon_xy[:, 1], -1)[None, :]
    straddles = (y0 > py) != (y1 > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
    crossings = straddles & (px < x_cross)
    return (np.count_nonzero(crossings, axis=1) % 2) == 1


@dataclass(frozen=True)
class ResectionRegion:
    """A region drawn in the patient without a structure: a sphere, a cylinder, or a
    free-hand outline drawn on a slice and extruded through a thickness about it.

    Parameters
    ----------
    shape : str
        ``"sphere"``, ``"cylinder"`` or ``"contour"``.
    patient_from_region : (4, 4) array
        Rigid pose of the region frame in patient LPS (mm): origin at the region's centre,
        +z the cylinder's axis or the drawn slice's normal (a sphere uses only the origin).
    radius_mm : float
        Sphere or cylinder radius (mm); for a contour, the largest distance of its outline
        from the origin (set by :meth:`drawn`).
    length_mm : float
        Cylinder length, or contour thickness, along +z (mm), centred on the origin;
        ignored for a sphere.
    outline_mm : tuple of (x, y) or None
        A contour's closed outline in the region frame's x-y plane (mm); only for
        ``"contour"`` (use :meth:`drawn` to make one from points on a slice).

    Examples
    --------
    >>> from models.patient.volume import Volume
    >>> ct = Volume.from_grid(np.zeros((9, 9, 9), np.float32), spacing_mm=(1.0, 1.0, 1.0))
    >>> pose = np.eye(4); pose[:3, 3] = ct.voxel_to_patient(np.array([[4.0, 4.0, 4.0]]))[0]
    >>> int(ResectionRegion("sphere", pose, 1.0).mask_on(ct).sum())   # centre + 6 faces
    7
    """

    shape: str
    patient_from_region: np.ndarray
    radius_mm: float
    length_mm: float = 0.0
    outline_mm: tuple[tuple[float, float], ...] | None = None

    def __post_init__(self) -> None:
        if self.shape not in REGION_SHAPES:
            raise InputError(f"resection region shape {self.shape!r} is not one of: "
                             f"{', '.join(REGION_SHAPES)}")
        self._check_outline()
        object.__setattr__(self, "radius_mm", as_positive(self.radius_mm,
                                                          name="region radius_mm"))
        length = (as_positive(self.length_mm, name=f"{self.shape} length_mm")
                  if self.shape in ("cylinder", "contour") else 0.0)
        object.__setattr__(self, "length_mm", float(length))
        try:
            pose = as_transform(self.patient_from_region, name="patient_from_region",
                                rigid=True, atol=1e-5)
        except InputError as exc:
            raise InputError(f"resection region: {exc}; nothing applied") from None
        object.__setattr__(self, "patient_from_region", pose)

    def _check_outline(self) -> None:
        """A contour needs a closed outline of at least 3 finite points and some area;
        the other shapes none."""
        if self.shape != "contour":
            if self.outline_mm is not None:
                raise InputError(f"a {self.shape} region has no outline_mm (only a contour)")
            return
        try:
            xy = np.asarray(self.outline_mm, dtype=np.float64)
        except (TypeError, ValueError):
            xy = np.zeros((0, 0))
        if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) < 3:
            raise InputError("a drawn region needs an outline of at least 3 (x, y) points "
                             "in mm; draw a closed shape on the slice")
        if not np.all(np.isfinite(xy)):
            raise InputError("a drawn region's outline has a NaN or infinite point")
        area = _polygon_area_mm2(xy)
        if area < MIN_OUTLINE_AREA_MM2:
            raise InputError(f"the drawn outline encloses {area:.2g} mm^2 (at least "
                             f"{MIN_OUTLINE_AREA_MM2:g}): draw around the region, not a line")
        object.__setattr__(self, "outline_mm", tuple((float(x), float(y)) for x, y in xy))

    @classmethod
    def drawn(cls, points_lps: np.ndarray, normal_lps: np.ndarray,
              thickness_mm: float) -> ResectionRegion:
        """A contour region from an outline drawn on a slice.

        Parameters
        ----------
        points_lps : (N, 3) array
            The outline's points in patient LPS (mm), in drawing order (closed back to the
            first point); they are projected onto the plane through their mean normal to
            ``normal_lps``.
        normal_lps : (3,) array
            The slice's normal (any length).
        thickness_mm : float
            Extent along the normal, centred on the slice (mm).

        Examples
        --------
        >>> square = np.array([[0, 0, 5.0], [10, 0, 5], [10, 10, 5], [0, 10, 5]])
        >>> r = ResectionRegion.drawn(square, np.array([0, 0, 1.0]), 4.0)
        >>> r.centre_lps.tolist(), round(r.radius_mm, 3)
        ([5.0, 5.0, 5.0], 7.071)
        """
        pts = as_array(points_lps, name="drawn outline points_lps")
        if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 3:
            raise InputError("a drawn region needs at least 3 points (x, y, z) mm; draw a "
                             "closed shape on the slice")
        if not np.all(np.isfinite(pts)):
            raise InputError("a drawn region's outline has a NaN or infinite point")
        z = as_array(normal_lps, name="slice normal_lps", shape=(3,))
        if not np.all(np.isfinite(z)) or np.linalg.norm(z) < 1e-12:
            raise InputError("the slice normal of a drawn region must be a finite non-zero "
                             "vector")
        z = z / np.linalg.norm(z)
        helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        x = np.cross(helper, z)
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        pose = np.eye(4)
        pose[:3, 0], pose[:3, 1], pose[:3, 2] = x, y, z
        pose[:3, 3] = pts.mean(axis=0)
        rel = pts - pose[:3, 3]
        xy = np.column_stack([rel @ x, rel @ y])
        radius = float(np.max(np.hypot(xy[:, 0], xy[:, 1])))
        return cls("contour", pose, max(radius, 1e-6), thickness_mm,
                   tuple((float(a), float(b)) for a, b in xy))

    @classmethod
    def below_applicator(cls, shape: str, patient_from_applicator: np.ndarray,
                         depth_mm: float, radius_mm: float,
                         length_mm: float = 0.0) -> ResectionRegion:
        """A region centred ``depth_mm`` below the applicator's end face on its axis (a
        cylinder along the beam).

        ``patient_from_applicator``: rigid applicator pose (end-face centre, +z into tissue;
        LPS mm). The depth may be 0 (centred on the end face) but not negative.
        """
        return cls(shape, _below(patient_from_applicator, depth_mm, "region depth_mm"),
                   radius_mm, length_mm)

    @property
    def centre_lps(self) -> np.ndarray:
        """Region centre (patient LPS, mm)."""
        return self.patient_from_region[:3, 3].copy()

    def mask_on(self, ct) -> np.ndarray:
        """The voxels (k, j, i) of ``ct`` (a :class:`~models.patient.volume.Volume`) whose
        centres lie inside the region (only the region's box on the grid is tested)."""
        half = np.array([self.radius_mm, self.radius_mm,
                         self.radius_mm if self.shape == "sphere" else 0.5 * self.length_mm])
        half = half + (1e-6 if self.shape == "contour" else 0.0)
        corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1)
                            for sz in (-1, 1)], dtype=np.float64) * half
        corners_lps = corners @ self.patient_from_region[:3, :3].T + self.centre_lps
        ijk = corners_lps @ ct.voxel_from_patient[:3, :3].T + ct.voxel_from_patient[:3, 3]
        shape_ijk = np.array(ct.shape[::-1])
        lo = np.clip(np.floor(ijk.min(axis=0)).astype(int), 0, shape_ijk)
        hi = np.clip(np.ceil(ijk.max(axis=0)).astype(int) + 1, 0, shape_ijk)
        out = np.zeros(ct.shape, dtype=bool)
        if np.any(hi <= lo):
            return out
        i, j, k = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi, strict=True)),
                              indexing="ij")
        pts = np.column_stack([i.ravel(), j.ravel(), k.ravel()]).astype(np.float64)
        local = (pts @ (np.linalg.inv(self.patient_from_region) @ ct.patient_from_voxel)
                 [:3, :3].T + (np.linalg.inv(self.patient_from_region)
                               @ ct.patient_from_voxel)[:3, 3])
        if self.shape == "sphere":
            inside = np.sum(local ** 2, axis=1) <= self.radius_mm ** 2 + 1e-9
        elif self.shape == "contour":
            inside = (np.abs(local[:, 2]) <= 0.5 * self.length_mm + 1e-9) \
                & points_in_polygon(local[:, :2], np.asarray(self.outline_mm))
        else:
            inside = (np.sum(local[:, :2] ** 2, axis=1) <= self.radius_mm ** 2 + 1e-9) \
                & (np.abs(local[:, 2]) <= 0.5 * self.length_mm + 1e-9)
        sel = pts[inside].astype(np.int64)
        out[sel[:, 2], sel[:, 1], sel[:, 0]] = True
        return out

    def describe(self) -> str:
        """"sphere r 15 mm at (x, y, z) mm" / "cylinder r 10 mm x 20 mm at (...) mm"."""
        c = np.round(self.centre_lps).astype(int).tolist()
        if self.shape == "contour":
            area = _polygon_area_mm2(np.asarray(self.outline_mm))
            return (f"drawn region {area / 100.0:.3g} cm^2 x {self.length_mm:g} mm at "
                    f"({c[0]}, {c[1]}, {c[2]}) mm")
        size = (f"r {self.radius_mm:g} mm" if self.shape == "sphere"
                else f"r {self.radius_mm:g} mm x {self.length_mm:g} mm")
        return f"{self.shape} {size} at ({c[0]}, {c[1]}, {c[2]}) mm"

    def to_json(self) -> dict[str, Any]:
        out = {"shape": self.shape, "patient_from_region": self.patient_from_region.tolist(),
               "radius_mm": self.radius_mm, "length_mm": self.length_mm}
        if self.outline_mm is not None:
            out["outline_mm"] = [list(p) for p in self.outline_mm]
        return out

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> ResectionRegion:
        outline = item.get("outline_mm")
        return cls(str(item["shape"]), np.asarray(item["patient_from_region"], float),
                   float(item["radius_mm"]), float(item.get("length_mm", 0.0)),
                   None if outline is None else tuple(tuple(map(float, p)) for p in outline))


#: What a region resection is called in the edit list (it is not a structure of the case).
REGION_NAME = "REGION"


@dataclass(frozen=True)
class Resection:
    """A structure emptied (tumour removed) and filled with ``fill``.

    With ``region`` (a drawn :class:`ResectionRegion`) the region is emptied instead of a
    structure: its voxels inside the body (the ``EXTERNAL`` contour and any ``CAVITY``
    structure, when the case has an external contour; all of them otherwise) get the fill;
    no structure is added or changed, and ``structure`` is only its name in the list
    (:data:`REGION_NAME` by default).
    """

    structure: str
    fill: str = "air"
    provenance: Provenance = field(default_factory=Provenance)
    region: ResectionRegion | None = None

    def __post_init__(self) -> None:
        _check_fill(self.fill)

    def describe(self, centroid_lps: np.ndarray | None = None) -> str:
        if self.region is not None:
            return f"{self.region.describe()} resected, filled with {self.fill}"
        return f"{self.structure} resected, filled with {self.fill}"


@dataclass(frozen=True)
class DiscPlacement:
    """A shielding disc placed in the patient.

    Parameters
    ----------
    material : str
        ``"lead"`` or ``"steel"`` (the dose engine's shielding materials).
    diameter_mm, thickness_mm : float
        Disc size (mm).
    patient_from_disc : (4, 4) array
        Rigid pose of the disc frame in patient LPS (mm): origin at the disc's centre
        (half-way through its thickness), +z along its axis.
    """

    material: str
    diameter_mm: float
    thickness_mm: float
    patient_from_disc: np.ndarray
    provenance: Provenance = field(default_factory=Provenance)

    #: What the edit acts on (the edit list shows it like a structure name).
    structure = "DISC"

    def __post_init__(self) -> None:
        if not isinstance(self.material, str) or not self.material:
            raise InputError(f"disc material must be a name (lead, steel), got "
                             f"{self.material!r}")
        for name in ("diameter_mm", "thickness_mm"):
            object.__setattr__(self, name, as_positive(getattr(self, name), name=f"disc {name}"))
        try:
            pose = as_transform(self.patient_from_disc, name="patient_from_disc", rigid=True,
                                atol=1e-5)
        except InputError as exc:
            raise InputError(f"disc placement: {exc}; nothing applied") from None
        object.__setattr__(self, "patient_from_disc", pose)

    @classmethod
    def below_applicator(cls, material: str, diameter_mm: float, thickness_mm: float,
                         patient_from_applicator: np.ndarray, depth_mm: float, *,
                         provenance: Provenance | None = None) -> DiscPlacement:
        """A disc normal to the beam, on its axis, its upstream face ``depth_mm`` below the
        applicator's end face (the engine's :class:`models.dose.electron.ShieldingDisc`
        depth): the centre lies ``depth_mm + thickness_mm / 2`` down the axis.

        ``patient_from_applicator``: rigid applicator pose (end-face centre, +z into tissue;
        LPS mm).
        """
        depth = as_positive(depth_mm, name="disc depth_mm")
        thickness = as_positive(thickness_mm, name="disc thickness_mm")
        pose = _below(patient_from_applicator, depth + 0.5 * thickness, "disc depth_mm")
        return cls(material, diameter_mm, thickness, pose,
                   Provenance() if provenance is None else provenance)

    @property
    def centre_lps(self) -> np.ndarray:
        """Disc centre (patient LPS, mm)."""
        return self.patient_from_disc[:3, 3].copy()

    def describe(self, centroid_lps: np.ndarray | None = None) -> str:
        """"lead disc 80 mm x 3 mm placed at (x, y, z) mm"."""
        c = np.round(self.centre_lps).astype(int).tolist()
        return (f"{self.material} disc {self.diameter_mm:g} mm x {self.thickness_mm:g} mm "
                f"placed at ({c[0]}, {c[1]}, {c[2]}) mm")


Edit = Retraction | Resection | DiscPlacement
EDIT_TYPES = (Retraction, Resection, DiscPlacement)


def _nonzero_in_box(mask: np.ndarray) -> np.ndarray:
    """``np.argwhere(mask)`` (k, j, i), searching only the mask's box."""
    box = _box(mask)
    if box is None:
        return np.zeros((0, 3), dtype=np.int64)
    return np.argwhere(mask[box]) + np.array([b.start for b in box])


@dataclass(frozen=True)
class _Moved:
    """Where a moved organ is now: its box (k, j, i slices) on the CT grid, its mask inside
    the box and the HU it carries at those voxels (C order)."""

    box: tuple[slice, ...]
    inside: np.ndarray
    hu: np.ndarray

    def full(self, shape: tuple[int, ...]) -> np.ndarray:
        out = np.zeros(shape, dtype=bool)
        out[self.box] = self.inside
        return out


def _moved_mask_and_hu(case: Case, ct: np.ndarray, inside_kji: np.ndarray,
                       mask: np.ndarray, edit: Retraction) -> _Moved | None:
    """The structure where it is now and the HU it carries there (None: nowhere).

    Only the organ's box is resampled (where it was, with a margin, and where it is now),
    so the cost follows the organ's size, not the CT's; the HU only at the voxels the organ
    now fills.
    """
    voxel_from_patient = case.ct.voxel_from_patient
    # voxel now -> patient now -> patient before -> voxel before
    before_from_now = (voxel_from_patient @ np.linalg.inv(edit.patient_from_retracted)
                       @ case.ct.patient_from_voxel)
    # ndimage works in (k, j, i) order: reorder the (i, j, k) affine
    perm = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]])
    kji = perm @ before_from_now @ perm
    if not len(inside_kji):
        return None
    shape = np.array(mask.shape)
    in_lo = np.maximum(inside_kji.min(axis=0) - 2, 0)
    in_hi = np.minimum(inside_kji.max(axis=0) + 3, shape)
    corners = np.array([[a, b, c] for a in (in_lo[0], in_hi[0]) for b in (in_lo[1], in_hi[1])
                        for c in (in_lo[2], in_hi[2])], dtype=np.float64)
    now = corners @ np.linalg.inv(kji)[:3, :3].T + np.linalg.inv(kji)[:3, 3]
    lo = np.clip(np.floor(now.min(axis=0)).astype(int) - 1, 0, shape)
    hi = np.clip(np.ceil(now.max(axis=0)).astype(int) + 2, 0, shape)
    if np.any(hi <= lo):
        return None
    box_in = tuple(slice(a, b) for a, b in zip(in_lo, in_hi, strict=True))
    offset = kji[:3, :3] @ lo + kji[:3, 3] - in_lo
    out_shape = tuple(int(n) for n in hi - lo)
    sub = ndimage.affine_transform(mask[box_in].astype(np.float32), kji[:3, :3], offset,
                                   output_shape=out_shape, order=1, mode="constant",
                                   cval=0.0) >= 0.5
    # the HU (trilinear, edge values beyond the box) only where the organ now is
    points = np.argwhere(sub).astype(np.float64) @ kji[:3, :3].T + offset
    hu = ndimage.map_coordinates(ct[box_in], points.T, order=1, mode="nearest")
    return _Moved(tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True)), sub,
                  hu.astype(np.float32))


def _check_inside_ct(case: Case, kji: np.ndarray, edit: Retraction) -> None:
    """InputError when the move takes the organ (voxels ``kji``) outside the CT grid."""
    if not len(kji):
        return
    ijk = kji[:, ::-1].astype(np.float64)
    voxel_from_voxel = (case.ct.voxel_from_patient @ edit.patient_from_retracted
                        @ case.ct.patient_from_voxel)
    moved = ijk @ voxel_from_voxel[:3, :3].T + voxel_from_voxel[:3, 3]
    upper = np.array(case.ct.shape[::-1], dtype=np.float64) - 1.0
    # half a voxel of slack: a mask that touches the grid's edge may stay at the edge
    beyond = np.maximum(np.maximum(-0.5 - moved, moved - upper - 0.5), 0.0)
    outside = np.any(beyond > 0.0, axis=1)
    if 100.0 * outside.mean() > MAX_OUTSIDE_PERCENT:
        far_mm = float(np.max(np.linalg.norm(beyond * case.ct.spacing_mm, axis=1)))
        raise InputError(f"retraction of {edit.structure}: the move takes "
                         f"{100.0 * outside.mean():.0f} % of it outside the CT (up to "
                         f"{far_mm:.0f} mm beyond its edge); check the transform; nothing "
                         "applied")


def _box(*masks: np.ndarray) -> tuple[slice, ...] | None:
    """The (k, j, i) slices of the box holding every True voxel of ``masks`` (None: none)."""
    union = np.logical_or.reduce([m.any(axis=(1, 2)) for m in masks]), \
        np.logical_or.reduce([m.any(axis=(0, 2)) for m in masks]), \
        np.logical_or.reduce([m.any(axis=(0, 1)) for m in masks])
    out = []
    for axis in union:
        idx = np.flatnonzero(axis)
        if not len(idx):
            return None
        out.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(out)


def _apply_retraction(case: Case, ct: np.ndarray, masks: dict[str, np.ndarray],
                      edit: Retraction, owned: set[str]) -> None:
    """Move one organ (in place on ``ct`` and ``masks``; a mask not in ``owned`` is still
    the original's and is copied before it is changed)."""
    if edit.structure not in masks:
        raise InputError(f"retraction of {edit.structure!r}: no such structure; have: "
                         f"{', '.join(masks) or 'none'}")
    before = masks[edit.structure]
    inside_kji = _nonzero_in_box(before)
    _check_inside_ct(case, inside_kji, edit)
    result = _moved_mask_and_hu(case, ct, inside_kji, before, edit)
    moved = np.zeros(before.shape, dtype=bool) if result is None else result.full(before.shape)
    box = _box(before, moved)
    if box is None:
        return
    vacated = before[box] & ~moved[box]
    ct[box][vacated] = FILL_HU[edit.fill]
    if result is not None:
        ct[result.box][result.inside] = result.hu
    taken = moved[box]
    for name in list(masks):
        if name == edit.structure or case.structures[name].roi_type in KEEPS_ITS_VOXELS:
            continue
        if not (masks[name][box] & taken).any():
            continue
        if name not in owned:
            masks[name] = masks[name].copy()
            owned.add(name)
        masks[name][box] &= ~taken
    masks[edit.structure] = moved
    owned.add(edit.structure)


def _apply_resection(case: Case, ct: np.ndarray, masks: Mapping[str, np.ndarray],
                     edit: Resection) -> None:
    if edit.region is not None:
        region = edit.region.mask_on(case.ct)
        if not region.any():
            raise InputError(f"resection of the {edit.region.describe()}: it lies outside the "
                             "CT; check its centre and size; nothing applied")
        body = [masks[n] for n, s in case.structures.items() if s.roi_type in KEEPS_ITS_VOXELS]
        if body:     # only inside the body or an (open) cavity
            body += [masks[n] for n, s in case.structures.items() if s.roi_type in OPEN_SPACES]
            region &= np.logical_or.reduce(body)
            if not region.any():
                raise InputError(f"resection of the {edit.region.describe()}: it lies outside "
                                 "the body; check its centre and size; nothing applied")
        ct[region] = FILL_HU[edit.fill]
        return
    if edit.structure not in masks:
        raise InputError(f"resection of {edit.structure!r}: no such structure; have: "
                         f"{', '.join(masks) or 'none'}")
    ct[masks[edit.structure]] = FILL_HU[edit.fill]


def _read_only(mask: np.ndarray) -> np.ndarray:
    """A view of ``mask`` that cannot be written (the original's mask, shared)."""
    view = mask.view()
    view.flags.writeable = False
    return view


class EditList:
    """Ordered, undoable intraoperative edits of one case.

    Parameters
    ----------
    edits : iterable of Retraction, Resection or DiscPlacement, optional
    """

    def __init__(self, edits: Iterable[Edit] = ()) -> None:
        self._edits: list[Edit] = list(edits)
        self._undone: list[Edit] = []

    def __len__(self) -> int:
        return len(self._edits)

    def __iter__(self):
        return iter(self._edits)

    def add(self, edit: Edit, case: Case | None = None) -> None:
        """Append an edit (clears the redo stack).

        With ``case`` the list is first applied to it with the new edit: an edit the case
        refuses (:class:`InputError`) is not added and the list stays as it was.
        """
        if not isinstance(edit, EDIT_TYPES):
            raise InputError(f"not an anatomy edit: {type(edit).__name__}")
        if case is not None:
            EditList([*self._edits, edit]).apply(case)
        self._edits.append(edit)
        self._undone.clear()

    @property
    def disc(self) -> DiscPlacement | None:
        """The shielding disc in place now (the last placement), or None."""
        for edit in reversed(self._edits):
            if isinstance(edit, DiscPlacement):
                return edit
        return None

    def descriptions(self, case: Case) -> list[str]:
        """One line per edit, in order ("BOWEL moved 35 mm, 4 deg"): a retraction's
        distance is that of the organ's centroid where the edits before it had put it
        (the preoperative centroid in ``case`` for its first move)."""
        out = []
        so_far: dict[str, np.ndarray] = {}
        for edit in self._edits:
            centroid = None
            if isinstance(edit, Retraction) and edit.structure in case.structures \
                    and case.structures[edit.structure].mask.any():
                before = so_far.get(edit.structure, np.eye(4))
                c = case.centroid_lps(edit.structure)
                centroid = before[:3, :3] @ c + before[:3, 3]
                so_far[edit.structure] = edit.patient_from_retracted @ before
            out.append(edit.describe(centroid))
        return out

    def undo(self) -> Edit | None:
        """Take back the last edit; returns it (None when there is none)."""
        if not self._edits:
            return None
        edit = self._edits.pop()
        self._undone.append(edit)
        return edit

    def redo(self) -> Edit | None:
        """Re-apply the last undone edit."""
        if not self._undone:
            return None
        edit = self._undone.pop()
        self._edits.append(edit)
        return edit

    def apply(self, case: Case) -> Case:
        """The edited case: CT and labelmaps derived from ``case`` and the edits in order
        (``case`` itself is not modified)."""
        ct = np.array(case.ct.array, dtype=np.float32, copy=True)
        # a mask no edit changes is shared with the original, read-only; the others are
        # copied when first changed
        masks = {n: s.mask for n, s in case.structures.items()}
        owned: set[str] = set()
        for edit in self._edits:
            if isinstance(edit, Retraction):
                _apply_retraction(case, ct, masks, edit, owned)
            elif isinstance(edit, Resection):
                _apply_resection(case, ct, masks, edit)
        disc = self.disc
        if disc is not None and not bool(case.ct.contains(disc.centre_lps[None])[0]):
            raise InputError(f"disc placement: centre {np.round(disc.centre_lps, 1).tolist()} "
                             "mm (LPS) is outside the CT; check its pose; nothing applied")
        structures = {n: Structure(n, masks[n] if n in owned else _read_only(masks[n]),
                                   s.color_rgb, s.roi_type)
                      for n, s in case.structures.items()}
        return replace(case, ct=case.ct.with_array(ct), structures=structures,
                       image_instance_uids=list(case.image_instance_uids), disc=disc)

    # ------------------------------------------------------------ persistence
    def to_json(self) -> list[dict[str, Any]]:
        """The edits as JSON-able dicts (for the case folder and the session log)."""
        return [edit_to_json(e) for e in self._edits]

    @classmethod
    def from_json(cls, data: Any, *, source: str = "edits") -> EditList:
        """Read :meth:`to_json` output; :class:`InputError` naming the entry otherwise."""
        if not isinstance(data, list):
            raise InputError(f"{source}: expected a list of edits")
        edits: list[Edit] = []
        for n, item in enumerate(data):
            try:
                prov = Provenance(str(item.get("who", "")), float(item["when_unix_s"]),
                                  str(item.get("how", "manual")))
                if item["kind"] == "retraction":
                    edits.append(Retraction(str(item["structure"]),
                                            np.asarray(item["patient_from_retracted"], float),
                                            str(item.get("fill", "air")),
                                            bool(item.get("affine", False)), prov))
                elif item["kind"] == "resection":
                    region = item.get("region")
                    edits.append(Resection(str(item["structure"]),
                                           str(item.get("fill", "air")), prov,
                                           None if region is None
                                           else ResectionRegion.from_json(region)))
                elif item["kind"] == "disc":
                    edits.append(DiscPlacement(str(item["material"]),
                                               float(item["diameter_mm"]),
                                               float(item["thickness_mm"]),
                                               np.asarray(item["patient_from_disc"], float),
                                               prov))
                else:
                    raise InputError(f"kind {item['kind']!r} is not retraction, resection "
                                     "or disc")
            except (KeyError, TypeError, ValueError, AttributeError, InputError) as exc:
                raise InputError(f"{source}: entry {n} is not a valid edit ({exc})") from exc
        return cls(edits)


def edit_to_json(edit: Edit) -> dict[str, Any]:
    """One edit as a JSON-able dict (what :meth:`EditList.from_json` reads back)."""
    item: dict[str, Any] = {"kind": "disc" if isinstance(edit, DiscPlacement)
                            else type(edit).__name__.lower(),
                            "structure": edit.structure, "who": edit.provenance.who,
                            "when_unix_s": edit.provenance.when_unix_s,
                            "how": edit.provenance.how}
    if isinstance(edit, Retraction):
        item.update(fill=edit.fill, patient_from_retracted=edit.patient_from_retracted.tolist(),
                    affine=edit.affine)
    elif isinstance(edit, Resection):
        item["fill"] = edit.fill
        if edit.region is not None:
            item["region"] = edit.region.to_json()
    else:
        item.update(material=edit.material, diameter_mm=edit.diameter_mm,
                    thickness_mm=edit.thickness_mm,
                    patient_from_disc=edit.patient_from_disc.tolist())
    return item
