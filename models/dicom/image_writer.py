"""Write a :class:`models.patient.volume.Volume` as a DICOM image series, one file per slice.

CT Image Storage (or MR Image Storage) with the Image Plane module derived from
``patient_from_voxel``: ImageOrientationPatient = unit i (row direction) and j (column
direction) axes, PixelSpacing = (j spacing, i spacing), ImagePositionPatient = centre of
voxel (0, 0, k). The slice axis must be perpendicular to the image plane (no shear: a
gantry-tilted grid cannot be written as a plain series).

Pixels are stored as 16-bit unsigned integers with RescaleSlope/RescaleIntercept:
integer-valued HU in [-1024, 64511] are stored exactly (slope 1, intercept -1024, the
usual CT convention); other values are scaled linearly into 0..65535.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydicom.dataset import Dataset
from tqdm import tqdm

from models.base.errors import InputError
from models.base.files import make_private_folders
from models.dicom.common import (
    CT_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    Identity,
    add_equipment,
    add_frame_of_reference,
    add_patient_study,
    add_series,
    format_ds,
    new_dataset,
    new_uid,
    write_dataset,
)
from models.patient.volume import Volume

if TYPE_CHECKING:  # pragma: no cover
    from models.dicom.deidentify import Deidentifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rescale:
    """Stored-value -> real-value mapping: ``value = stored * slope + intercept``."""

    slope: float
    intercept: float

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Real values -> uint16 stored values (rounded, clipped)."""
        stored = np.rint((np.asarray(values, dtype=np.float64) - self.intercept) / self.slope)
        return np.clip(stored, 0, 65535).astype(np.uint16)


def choose_rescale(values: np.ndarray) -> Rescale:
    """Exact integer storage when possible, else a linear map of the range onto 0..65535."""
    arr = np.asarray(values)
    lo, hi = float(np.min(arr)), float(np.max(arr))
    integer = bool(np.all(arr == np.rint(arr)))
    if integer and lo >= -1024.0 and hi <= 64511.0:
        return Rescale(1.0, -1024.0)
    if integer and lo >= 0.0 and hi <= 65535.0:
        return Rescale(1.0, 0.0)
    span = hi - lo
    slope = span / 65535.0 if span > 0 else 1.0
    return Rescale(float(format_ds(slope)), float(format_ds(lo)))


def _plane_geometry(volume: Volume) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row_dir, col_dir, spacing) of a volume; raises when slices are sheared."""
    direction = volume.direction
    spacing = volume.spacing_mm
    normal = np.cross(direction[:, 0], direction[:, 1])
    if abs(abs(float(normal @ direction[:, 2])) - 1.0) > 1e-6:
        raise InputError("volume slice axis is not perpendicular to its rows/columns "
                         "(sheared grid): resample it before writing a DICOM series")
    return direction[:, 0], direction[:, 1], spacing


def write_image_series(volume: Volume, out_dir: str | Path, identity: Identity, *,
                       series_instance_uid: str, modality: str = "CT",
                       instance_uids: list[str] | None = None, series_number: int = 1,
                       series_description: str = "", file_prefix: str | None = None,
                       progress: bool = False,
                       deidentifier: Deidentifier | None = None,
                       add_attributes: Callable[[Dataset, int], None] | None = None
                       ) -> list[str]:
    """Write one DICOM file per slice into ``out_dir`` (created if needed).

    Parameters
    ----------
    volume : Volume
        Image (HU for CT); ``array[k]`` becomes slice file ``k``.
    out_dir : str or Path
        Folder for the files ``<prefix>_<k+1:04d>.dcm``.
    identity : Identity
        Patient / study / frame of reference.
    series_instance_uid : str
        SeriesInstanceUID of the series.
    modality : {"CT", "MR"}
        CT Image Storage or MR Image Storage.
    instance_uids : list of str, optional
        SOPInstanceUID per slice; derived deterministically from the series UID if omitted.
    series_number : int
        SeriesNumber.
    series_description : str
        SeriesDescription.
    file_prefix : str, optional
        File name prefix (default: the modality).
    progress : bool
        Show a progress bar.
    deidentifier : models.dicom.deidentify.Deidentifier, optional
        Write the slices de-identified (their UIDs replaced, consistently).
    add_attributes : callable(dataset, k), optional
        Adds attributes to slice ``k`` before it is written (e.g. the derivation of a
        derived series, :mod:`models.dicom.derived`).

    Returns
    -------
    list of str
        The SOPInstanceUID of each slice, in ``k`` order (the originals: references are
        replaced the same way when the objects that hold them are de-identified).
    """
    if modality not in ("CT", "MR"):
        raise InputError(f"modality must be CT or MR, got {modality!r}")
    out = make_private_folders(out_dir)
    nk, nj, ni = volume.shape
    row_dir, col_dir, spacing = _plane_geometry(volume)
    uids = list(instance_uids) if instance_uids else [
        new_uid(series_instance_uid, k) for k in range(nk)]
    if len(uids) != nk:
        raise InputError(f"{len(uids)} instance UIDs for {nk} slices")
    rescale = choose_rescale(volume.array)
    sop_class = CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE
    prefix = file_prefix or modality
    template = _template(identity, series_instance_uid, modality, sop_class, series_number,
                         series_description, row_dir, col_dir, spacing, (nj, ni), rescale)
    for k in tqdm(range(nk), desc=f"writing {modality} slices", unit="slice",
                  disable=not progress, leave=False):
        ds = new_dataset(sop_class, uids[k], modality=modality)
        ds.update(template)
        position = volume.patient_from_voxel @ np.array([0.0, 0.0, float(k), 1.0])
        ds.ImagePositionPatient = [format_ds(v) for v in position[:3]]
        ds.SliceLocation = format_ds(float(position[:3] @ np.cross(row_dir, col_dir)))
        ds.InstanceNumber = k + 1
        ds.PixelData = rescale.encode(volume.array[k]).tobytes()
        if add_attributes is not None:
            add_attributes(ds, k)
        write_dataset(ds, out / f"{prefix}_{k + 1:04d}.dcm", deidentifier=deidentifier)
    log.info("wrote %d %s slices to %s", nk, modality, out)
    return uids


def _template(identity: Identity, series_uid: str, modality: str, sop_class: str,
              series_number: int, description: str, row_dir: np.ndarray, col_dir: np.ndarray,
              spacing: np.ndarray, rows_cols: tuple[int, int], rescale: Rescale) -> Dataset:
    """Attributes shared by every slice of the series."""
    ds = Dataset()
    add_patient_study(ds, identity)
    add_series(ds, series_uid, series_number=series_number, description=description)
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = "ABDOMEN"
    add_frame_of_reference(ds, identity)
    add_equipment(ds)
    ds.ContentDate, ds.ContentTime = ds.SeriesDate, ds.SeriesTime
    ds.AcquisitionNumber = 1
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.PatientOrientation = ""
    ds.ImageOrientationPatient = [format_ds(v) for v in (*row_dir, *col_dir)]
    ds.PixelSpacing = [format_ds(spacing[1]), format_ds(spacing[0])]
    ds.SliceThickness = format_ds(spacing[2])
    ds.SpacingBetweenSlices = format_ds(spacing[2])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows_cols
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = format_ds(rescale.intercept)
    ds.RescaleSlope = format_ds(rescale.slope)
    if modality == "CT":
        ds.RescaleType = "HU"
        ds.KVP = "120"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
    else:
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "3D"
        ds.RepetitionTime = "500"
        ds.EchoTime = "15"
        ds.EchoTrainLength = 1
        ds.MagneticFieldStrength = "1.5"
        ds.ImagingFrequency = "63.87"
        ds.ImagedNucleus = "1H"
    return ds
