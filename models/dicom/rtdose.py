"""RT Dose (DICOM PS3.3 A.18) writer and reader for a dose grid in Gy.

The writer encodes a :class:`~models.patient.volume.Volume` of dose in Gy as a multi-frame RT Dose
object: ``DoseUnits GY``, ``DoseType PHYSICAL``, ``DoseSummationType PLAN`` referencing the
RT Plan, in the Frame of Reference of the CT it was computed on (so a treatment planning
system or record-and-verify system overlays it on that CT). Pixel data are unsigned 16-bit
integers times ``DoseGridScaling`` (step = maximum / 65535, 0.15 mGy at 10 Gy), or 32-bit on
request (``bits_allocated=32``; note that dciodvfy 2022 aborts on any 32-bit pixel data,
pydicom's own ``rtdose.dcm`` included, so the validated default is 16).

Geometry: the Volume's ``i`` axis is the row direction (``ImageOrientationPatient[:3]``),
``j`` the column direction, and ``k`` must be along the slice normal
``row x column`` (either sign; the writer flips the stack so that ``GridFrameOffsetVector``
increases from 0). A sheared grid is rejected (resample it first with
:meth:`Volume.resample_like`).

The reader accepts relative (first value 0) and absolute (first value = z of
``ImagePositionPatient``, axial only) ``GridFrameOffsetVector`` (PS3.3 C.8.8.3.2) and raises
:class:`~models.base.errors.InputError` naming the file and attribute for anything malformed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import RTDoseStorage, RTPlanStorage

from models.base.errors import InputError
from models.base.validation import as_positive
from models.dicom.common import Identity, write_dataset
from models.dicom.rtcommon import (
    Instance,
    dicom_float,
    dicom_floats,
    ds_value,
    ds_values,
    instance_from_dataset,
    reading,
    require,
    rt_dataset,
    rt_object,
)
from models.patient.volume import Volume

if TYPE_CHECKING:  # pragma: no cover
    from models.dicom.deidentify import Deidentifier

logger = logging.getLogger(__name__)

#: DoseComment written for dose to water / dose to the local medium.
DOSE_COMMENTS = {"water": "dose to water", "medium": "dose to medium"}

#: Tolerance on the k axis being along the slice normal, and on uniform frame offsets (mm).
_GEOMETRY_TOL_MM = 1e-3


@dataclass(frozen=True, eq=False)
class RtDose:
    """An RT Dose object read back.

    Attributes
    ----------
    dose : Volume
        Dose grid (Gy when ``units == "GY"``), ``patient_from_voxel`` to LPS mm.
    units : str
        DoseUnits: ``GY`` or ``RELATIVE``.
    dose_type : str
        DoseType: ``PHYSICAL``, ``EFFECTIVE`` or ``ERROR``.
    summation_type : str
        DoseSummationType: ``PLAN``, ``BEAM``, ``FRACTION``, ...
    referenced_plan_uid : str
        SOP Instance UID of the referenced RT Plan ("" if none).
    instance : Instance
        Patient/study/Frame of Reference identity and series/SOP UIDs of the object.
    comment : str
        DoseComment ("" if none); this writer puts "dose to water" or "dose to medium".
    """

    dose: Volume
    units: str
    dose_type: str
    summation_type: str
    referenced_plan_uid: str
    instance: Instance
    comment: str = ""


def _stack_geometry(dose: Volume) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (array with k increasing along the normal, IPP, IOP, [dy, dx, dz])."""
    affine = dose.patient_from_voxel
    spacing = dose.spacing_mm
    row_dir, col_dir, k_dir = (affine[:3, c] / spacing[c] for c in range(3))
    if abs(float(row_dir @ col_dir)) > 1e-6:
        raise InputError("dose grid i and j axes are not orthogonal; resample it first")
    normal = np.cross(row_dir, col_dir)
    along = float(k_dir @ normal)
    if abs(abs(along) - 1.0) > 1e-6:
        raise InputError("dose grid k axis is not along the slice normal (sheared grid); "
                         "resample it onto a rectilinear grid first")
    array = np.asarray(dose.array)
    origin = affine[:3, 3]
    if along < 0:
        array = array[::-1]
        origin = origin + affine[:3, 2] * (array.shape[0] - 1)
    iop = np.concatenate([row_dir, col_dir])
    return array, origin, iop, np.array([spacing[1], spacing[0], spacing[2]])


def dose_dataset(dose: Volume, identity: Identity, *, referenced_plan_uid: str,
                 series_instance_uid: str = "", sop_instance_uid: str = "",
                 series_number: int = 1, description: str = "IORT electron dose",
                 bits_allocated: int = 16, dose_to: str = "water") -> Dataset:
    """Build an RT Dose dataset (with file meta) for a dose grid in Gy.

    Parameters
    ----------
    dose : Volume
        Dose in Gy, any rectilinear grid in patient LPS (k along the slice normal).
    identity : Identity
        Patient, study and Frame of Reference of the CT the dose belongs to
        (:func:`models.dicom.common.identity_of`).
    referenced_plan_uid : str
        SOP Instance UID of the RT Plan this dose is the PLAN sum of.
    series_instance_uid, sop_instance_uid : str
        UIDs of the new object (generated when empty).
    series_number : int
        SeriesNumber of the new RT series.
    description : str
        SeriesDescription.
    bits_allocated : {16, 32}
        Pixel word size; the dose step is ``max / (2**bits - 1)``.
    dose_to : {"water", "medium"}
        What the dose is; DICOM has no coded attribute for it, so ``DoseComment`` says
        ``"dose to water"`` or ``"dose to medium"`` (:data:`DOSE_COMMENTS`) and
        ``DoseType`` stays ``PHYSICAL``.

    Returns
    -------
    pydicom.dataset.Dataset
    """
    array, origin, iop, spacing = _stack_geometry(
        _checked_dose(dose, bits_allocated=bits_allocated,
                      referenced_plan_uid=referenced_plan_uid))
    ds = rt_dataset(identity, sop_class_uid=RTDoseStorage, modality="RTDOSE",
                    description=description, series_instance_uid=series_instance_uid,
                    sop_instance_uid=sop_instance_uid, series_number=series_number)
    nframes, rows, cols = array.shape
    # General Image + Image Plane
    ds.ContentDate = ds.InstanceCreationDate
    ds.ContentTime = ds.InstanceCreationTime
    ds.InstanceNumber = 1
    ds.ImagePositionPatient = ds_values(origin)
    ds.ImageOrientationPatient = ds_values(iop)
    ds.PixelSpacing = ds_values(spacing[:2])
    ds.SliceThickness = ds_value(spacing[2]) if nframes > 1 else ""
    _add_pixel_module(ds, rows, cols, nframes, bits_allocated)
    # RT Dose
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    if dose_to not in DOSE_COMMENTS:
        raise InputError(f"dose_to must be one of {', '.join(DOSE_COMMENTS)}, got {dose_to!r}")
    ds.DoseComment = DOSE_COMMENTS[dose_to]
    ds.DoseSummationType = "PLAN"
    ds.TissueHeterogeneityCorrection = "IMAGE"
    ds.GridFrameOffsetVector = ds_values(np.arange(nframes) * spacing[2])
    pixels, scaling = _scaled_pixels(array, bits_allocated)
    ds.DoseGridScaling = ds_value(scaling)
    ref = Dataset()
    ref.ReferencedSOPClassUID = RTPlanStorage
    ref.ReferencedSOPInstanceUID = referenced_plan_uid
    ds.ReferencedRTPlanSequence = Sequence([ref])
    ds.PixelData = pixels.tobytes()
    return ds


def _checked_dose(dose: Volume, *, bits_allocated: int, referenced_plan_uid: str) -> Volume:
    """The dose to write: checked arguments, finite values, negatives clipped to 0 Gy."""
    if not isinstance(dose, Volume):
        raise TypeError(f"dose must be a models.patient.volume.Volume, got {type(dose).__name__}")
    if bits_allocated not in (16, 32):
        raise InputError(f"bits_allocated must be 16 or 32, got {bits_allocated}")
    if not referenced_plan_uid:
        raise InputError("referenced_plan_uid is required for DoseSummationType PLAN")
    values = np.asarray(dose.array, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise InputError("dose contains NaN or infinite values")
    if values.min() < 0:
        logger.warning("negative dose values (min %.3g Gy) clipped to 0", values.min())
    return dose.with_array(np.clip(values, 0, None))


def _add_pixel_module(ds: Dataset, rows: int, cols: int, nframes: int,
                      bits_allocated: int) -> None:
    """Image Pixel + Multi-frame modules of unsigned monochrome dose frames."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_allocated
    ds.HighBit = bits_allocated - 1
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = nframes
    ds.FrameIncrementPointer = pydicom.tag.Tag(0x3004, 0x000C)


def _scaled_pixels(array_gy: np.ndarray, bits_allocated: int) -> tuple[np.ndarray, float]:
    """Unsigned little-endian pixels and the DoseGridScaling (Gy per count) of a dose."""
    top = float(array_gy.max())
    top_count = 2**bits_allocated - 1
    # round the scaling up in its DS text so that max / scaling never exceeds top_count
    scaling = float(ds_value(top / top_count * (1 + 1e-9))) if top > 0 else 1.0
    pixels = np.rint(array_gy / scaling).clip(0, top_count).astype(f"<u{bits_allocated // 8}")
    return pixels, scaling


def write_rtdose(path: str | Path, dose: Volume, identity: Identity, *,
                 referenced_plan_uid: str, series_instance_uid: str = "",
                 sop_instance_uid: str = "", series_number: int = 1,
                 description: str = "IORT electron dose", bits_allocated: int = 16,
                 dose_to: str = "water", deidentifier: Deidentifier | None = None) -> Path:
    """Write an RT Dose file; see :func:`dose_dataset`. Returns the path written.

    With ``deidentifier`` the file is written de-identified
    (:class:`models.dicom.deidentify.Deidentifier`).
    """
    ds = dose_dataset(dose, identity, referenced_plan_uid=referenced_plan_uid,
                      series_instance_uid=series_instance_uid,
                      sop_instance_uid=sop_instance_uid, series_number=series_number,
                      description=description,
                      bits_allocated=bits_allocated, dose_to=dose_to)
    return write_dataset(ds, path, deidentifier=deidentifier)


def read_rtdose(source: str | Path | Dataset) -> RtDose:
    """Read an RT Dose file (or dataset) into a dose :class:`Volume`.

    Raises
    ------
    InputError
        Not an RT Dose object, missing/invalid attribute, non-uniform frame offsets,
        pixel data of the wrong size; the message names the file and attribute.
    """
    with reading(source, "RT Dose") as label:
        ds = rt_object(source, label, sop_class_uid=RTDoseStorage, modality="RTDOSE",
                       what="RT Dose")
        rows = int(require(ds, "Rows", label))
        cols = int(require(ds, "Columns", label))
        nframes = int(ds.get("NumberOfFrames", 1) or 1)
        if rows < 1 or cols < 1 or nframes < 1:
            raise InputError(f"{label}: empty dose grid ({nframes}x{rows}x{cols})")
        iop = dicom_floats(ds, "ImageOrientationPatient", label, count=6)
        ipp = dicom_floats(ds, "ImagePositionPatient", label, count=3)
        spacing = dicom_floats(ds, "PixelSpacing", label, count=2)
        if np.any(spacing <= 0):
            raise InputError(f"{label}: PixelSpacing must be positive, got {spacing}")
        row_dir, col_dir = iop[:3], iop[3:]
        if (abs(np.linalg.norm(row_dir) - 1) > 1e-3 or abs(np.linalg.norm(col_dir) - 1) > 1e-3
                or abs(row_dir @ col_dir) > 1e-3):
            raise InputError(f"{label}: ImageOrientationPatient {iop.tolist()} is not two "
                             "orthogonal unit vectors")
        normal = np.cross(row_dir, col_dir)
        offsets = _frame_offsets(ds, label, nframes, ipp, normal)
        step = float(offsets[1] - offsets[0]) if nframes > 1 else float(
            ds.get("SliceThickness") or 1.0)
        if nframes > 1:
            steps = np.diff(offsets)
            if np.any(np.abs(steps - step) > _GEOMETRY_TOL_MM) or step == 0:
                raise InputError(f"{label}: GridFrameOffsetVector is not uniformly spaced "
                                 f"(steps {np.unique(np.round(steps, 4)).tolist()} mm)")
        if step == 0 or not np.isfinite(step):
            step = 1.0
        pixels = _pixels(ds, label, nframes, rows, cols)
        scaling = dicom_float(ds, "DoseGridScaling", label, default=1.0)
        affine = np.eye(4)
        affine[:3, 0] = row_dir * spacing[1]
        affine[:3, 1] = col_dir * spacing[0]
        affine[:3, 2] = normal * step
        affine[:3, 3] = ipp + normal * offsets[0]
        dose = Volume(pixels.astype(np.float64) * scaling, affine)
        plan_uid = ""
        refs = ds.get("ReferencedRTPlanSequence")
        if refs:
            plan_uid = str(refs[0].get("ReferencedSOPInstanceUID", ""))
        return RtDose(dose=dose, units=str(ds.get("DoseUnits", "")),
                      dose_type=str(ds.get("DoseType", "")),
                      summation_type=str(ds.get("DoseSummationType", "")),
                      referenced_plan_uid=plan_uid, instance=instance_from_dataset(ds),
                      comment=str(ds.get("DoseComment", "")))


def _frame_offsets(ds: Dataset, label: str, nframes: int, ipp: np.ndarray,
                   normal: np.ndarray) -> np.ndarray:
    """Frame offsets along the normal relative to ImagePositionPatient (mm)."""
    if nframes == 1 and "GridFrameOffsetVector" not in ds:
        return np.zeros(1)
    offsets = dicom_floats(ds, "GridFrameOffsetVector", label, count=nframes)
    if offsets[0] != 0.0:
        # absolute form: z coordinates, allowed only for axial grids (C.8.8.3.2)
        if abs(abs(normal[2]) - 1.0) > 1e-6:
            raise InputError(f"{label}: GridFrameOffsetVector starts at {offsets[0]} "
                             "(absolute form) but the grid is not axial")
        offsets = (offsets - ipp[2]) * np.sign(normal[2])
    return offsets


def _pixels(ds: Dataset, label: str, nframes: int, rows: int, cols: int) -> np.ndarray:
    if "PixelData" not in ds:
        raise InputError(f"{label}: no PixelData")
    bits = int(require(ds, "BitsAllocated", label))
    if bits not in (16, 32):
        raise InputError(f"{label}: BitsAllocated {bits} unsupported for RT Dose (16 or 32)")
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is None or not pydicom.uid.UID(str(syntax)).is_compressed:
        raw = bytes(ds.PixelData)
        need = nframes * rows * cols * dtype.itemsize
        if len(raw) < need:
            raise InputError(f"{label}: PixelData holds {len(raw)} bytes, the grid "
                             f"{nframes}x{rows}x{cols} of {bits}-bit needs {need}")
        big_endian = syntax == pydicom.uid.ExplicitVRBigEndian
        return np.frombuffer(raw[:need], dtype=dtype.newbyteorder(">" if big_endian else "<")
                             ).reshape(nframes, rows, cols)
    array = np.asarray(ds.pixel_array)
    return array.reshape(nframes, rows, cols)


def dose_grid_like(dose: Volume, image: Volume, *, spacing_mm: float,
                   threshold_gy: float = 0.0, margin_mm: float = 4.0) -> Volume:
    """An empty grid on the image's axes covering where ``dose`` exceeds ``threshold_gy``.

    Treatment planning and record-and-verify systems (and dicompyler-core) expect an RT
    Dose on the axes of its CT; the electron engine computes on a beam-aligned grid. Fill
    the returned grid with :func:`models.evaluation.dvh.resample_dose`.

    Parameters
    ----------
    dose : Volume
        Dose in Gy on any grid.
    image : Volume
        The CT; its direction (axes) is used, its voxel centres are not.
    spacing_mm : float
        Isotropic spacing of the new grid (mm).
    threshold_gy : float
        Dose above which a voxel must be covered.
    margin_mm : float
        Extra margin around the covered region (mm).
    """
    spacing = as_positive(spacing_mm, name="spacing_mm")
    values = np.asarray(dose.array)
    hot = np.argwhere(values > threshold_gy)
    if hot.size == 0:
        hot = np.array([[0, 0, 0], [s - 1 for s in values.shape]])
    lo_kji, hi_kji = hot.min(axis=0), hot.max(axis=0)
    corners = np.array([[i, j, k] for i in (lo_kji[2] - 1, hi_kji[2] + 1)
                        for j in (lo_kji[1] - 1, hi_kji[1] + 1)
                        for k in (lo_kji[0] - 1, hi_kji[0] + 1)], dtype=np.float64)
    axes = image.direction
    if np.linalg.det(axes) < 0:
        axes = axes.copy()
        axes[:, 2] *= -1  # keep k along the slice normal
    along = dose.voxel_to_patient(corners) @ axes  # coordinates along the image axes
    lo = along.min(axis=0) - margin_mm
    count = np.ceil((along.max(axis=0) + margin_mm - lo) / spacing).astype(int) + 1
    return Volume.from_grid(np.zeros(count[::-1], dtype=np.float32), spacing_mm=(spacing,) * 3,
                            origin_mm=axes @ lo, direction=axes)
