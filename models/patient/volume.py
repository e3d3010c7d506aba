"""Volume: a voxel array with a 4x4 affine to patient coordinates (DICOM LPS, mm).

Convention used everywhere in the project
-----------------------------------------
* ``array`` is indexed ``[k, j, i]`` = ``[slice, row, column]`` (numpy order of a DICOM stack).
* ``patient_from_voxel`` maps the homogeneous *index* vector ``(i, j, k, 1)`` (column, row,
  slice; voxel centres at integer indices) to patient LPS millimetres. For a DICOM series:
  column 0 of the matrix is ``ImageOrientationPatient[:3] * PixelSpacing[1]``, column 1 is
  ``ImageOrientationPatient[3:] * PixelSpacing[0]``, column 2 the slice step vector, column 3
  ``ImagePositionPatient`` of the first slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from models.base.errors import InputError
from models.base.validation import as_array, as_points, as_transform


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image or dose grid in patient space.

    Parameters
    ----------
    array : numpy.ndarray
        Voxel values, shape ``(nk, nj, ni)`` = (slices, rows, columns). Units depend on
        content: HU for CT, Gy for dose, label ids for labelmaps.
    patient_from_voxel : numpy.ndarray
        4x4 float64 affine from voxel index ``(i, j, k, 1)`` to patient LPS mm.

    Examples
    --------
    >>> vol = Volume.from_grid(np.zeros((3, 4, 5)), spacing_mm=(1.0, 2.0, 3.0))
    >>> vol.spacing_mm
    array([1., 2., 3.])
    """

    array: np.ndarray
    patient_from_voxel: np.ndarray

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim != 3:
            raise InputError(f"Volume.array must be 3-D (slices, rows, columns), got {arr.shape}")
        affine = as_transform(self.patient_from_voxel, name="patient_from_voxel")
        if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise InputError("patient_from_voxel is singular (zero spacing?)")
        object.__setattr__(self, "array", arr)
        object.__setattr__(self, "patient_from_voxel", affine)

    @classmethod
    def from_grid(cls, array: np.ndarray, spacing_mm: tuple[float, float, float],
                  origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
                  direction: np.ndarray | None = None) -> Volume:
        """Build a volume from spacing (di, dj, dk) mm, origin (first voxel centre) and axes.

        ``direction`` is a 3x3 matrix whose columns are the unit i, j, k axes in LPS
        (identity when omitted).
        """
        spacing = as_array(spacing_mm, name="spacing_mm", shape=(3,))
        if np.any(spacing <= 0):
            raise InputError(f"spacing_mm must be positive, got {spacing}")
        axes = np.eye(3) if direction is None else as_array(direction, name="direction",
                                                            shape=(3, 3))
        affine = np.eye(4)
        affine[:3, :3] = axes * spacing[None, :]
        affine[:3, 3] = as_array(origin_mm, name="origin_mm", shape=(3,))
        return cls(np.asarray(array), affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (nk, nj, ni)."""
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> np.ndarray:
        """Voxel size along i, j, k in mm."""
        return np.linalg.norm(self.patient_from_voxel[:3, :3], axis=0)

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit i, j, k axes in patient LPS."""
        return self.patient_from_voxel[:3, :3] / self.spacing_mm[None, :]

    @property
    def voxel_from_patient(self) -> np.ndarray:
        """4x4 inverse affine, patient LPS mm -> continuous voxel index (i, j, k)."""
        return np.linalg.inv(self.patient_from_voxel)

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm^3."""
        return float(abs(np.linalg.det(self.patient_from_voxel[:3, :3])))

    def digest_sha256(self) -> str:
        """SHA-256 (hex) of the voxel values (as float32, C order) and the affine: the
        identity of an image, e.g. to check that a replay uses the CT a session was
        recorded on."""
        import hashlib

        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.array, dtype=np.float32).tobytes())
        digest.update(np.ascontiguousarray(self.patient_from_voxel, dtype=np.float64).tobytes())
        digest.update(repr(tuple(self.array.shape)).encode())
        return digest.hexdigest()

    def with_array(self, array: np.ndarray) -> Volume:
        """Same grid, other values (shape must match)."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise InputError(f"array shape {array.shape} differs from grid {self.array.shape}")
        return Volume(array, self.patient_from_voxel.copy())

    def voxel_to_patient(self, ijk: np.ndarray) -> np.ndarray:
        """Map (N, 3) voxel indices (i, j, k) to (N, 3) patient LPS mm."""
        pts = as_points(ijk, name="ijk")
        return pts @ self.patient_from_voxel[:3, :3].T + self.patient_from_voxel[:3, 3]

    def patient_to_voxel(self, points_lps: np.ndarray) -> np.ndarray:
        """Map (N, 3) patient LPS mm to continuous (N, 3) voxel indices (i, j, k)."""
        pts = as_points(points_lps, name="points_lps")
        inv = self.voxel_from_patient
        return pts @ inv[:3, :3].T + inv[:3, 3]

    def voxel_centres(self) -> np.ndarray:
        """Patient LPS coordinates (mm) of all voxel centres, shape (nk, nj, ni, 3)."""
        nk, nj, ni = self.shape
        k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
        ijk = np.stack([i, j, k], axis=-1).reshape(-1, 3).astype(np.float64)
        return self.voxel_to_patient(ijk).reshape(nk, nj, ni, 3)

    def bounds_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned (min, max) LPS corners of the voxel-centre box."""
        nk, nj, ni = self.shape
        corners = np.array([[i, j, k] for i in (0, ni - 1) for j in (0, nj - 1)
                            for k in (0, nk - 1)], dtype=np.float64)
        pts = self.voxel_to_patient(corners)
        return pts.min(axis=0), pts.max(axis=0)

    def contains(self, points_lps: np.ndarray) -> np.ndarray:
        """Boolean (N,) mask: which points lie inside the voxel-centre box."""
        ijk = self.patient_to_voxel(points_lps)
        upper = np.array(self.shape[::-1], dtype=np.float64) - 1.0
        return np.all((ijk >= -1e-6) & (ijk <= upper + 1e-6), axis=1)

    def sample(self, points_lps: np.ndarray, *, order: int = 1,
               fill_value: float = 0.0) -> np.ndarray:
        """Interpolate values at (N, 3) patient points (order 0 nearest, 1 trilinear)."""
        ijk = self.patient_to_voxel(points_lps)
        coords = ijk[:, ::-1].T  # (k, j, i) rows for map_coordinates
        return ndimage.map_coordinates(np.asarray(self.array, dtype=np.float64), coords,
                                       order=order, mode="constant", cval=fill_value)

    def resample_like(self, other: Volume, *, order: int = 1, fill_value: float = 0.0) -> Volume:
        """Resample this volume onto the grid of ``other`` (returns a new Volume)."""
        centres = other.voxel_centres().reshape(-1, 3)
        values = self.sample(centres, order=order, fill_value=fill_value)
        return Volume(values.reshape(other.shape).astype(self.array.dtype, copy=False)
                      if order == 0 else values.reshape(other.shape),
                      other.patient_from_voxel.copy())
