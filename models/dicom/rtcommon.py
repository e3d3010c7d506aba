"""Pieces the RT Dose and RT Plan writers/readers share, on top of :mod:`models.dicom.common`.

* :func:`rt_dataset` -- a dataset with file meta and the modules every RT object has
  (SOP Common, Patient, General Study, RT Series, Frame of Reference, General Equipment),
  composed from the shared helpers of :mod:`models.dicom.common` so that all objects of a
  case agree on patient, study and Frame of Reference.
* :class:`Instance` -- the series/SOP instance UIDs of one object read back, with its
  :class:`~models.dicom.common.Identity`.
* :func:`reading` -- turns any failure while *interpreting* an outside file into
  :class:`~models.base.errors.InputError` naming the file (``read_dataset`` already does so for
  parsing), so malformed input never escapes as a library exception.
* :func:`ds_values` -- DS strings with 12 significant digits: ``common.format_ds`` keeps
  micrometres, which is right for positions but not for a ``DoseGridScaling`` of 1e-4 or
  for angles that must round-trip a pose.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError

from models.base.errors import InputError
from models.dicom.common import (
    Identity,
    add_equipment,
    add_frame_of_reference,
    add_patient_study,
    add_series,
    new_dataset,
    new_uid,
    read_dataset,
)

#: Exceptions pydicom and numpy raise on malformed files; mapped to InputError.
PARSE_ERRORS: tuple[type[BaseException], ...] = (
    InvalidDicomError, BytesLengthException, OSError, EOFError, ValueError, TypeError, KeyError,
    IndexError, AttributeError, struct.error, OverflowError, NotImplementedError, RuntimeError,
    UnicodeDecodeError, LookupError, ZeroDivisionError, MemoryError, RecursionError,
)


@dataclass(frozen=True)
class Instance:
    """Who an RT object read back belongs to and which instance it is."""

    identity: Identity
    series_instance_uid: str
    sop_instance_uid: str


def rt_dataset(identity: Identity, *, sop_class_uid: str, modality: str, description: str,
               series_instance_uid: str = "", sop_instance_uid: str = "",
               series_number: int = 1) -> Dataset:
    """A dataset with file meta and the modules all RT objects share.

    Empty ``series_instance_uid`` / ``sop_instance_uid`` are generated.
    """
    if not isinstance(identity, Identity):
        raise TypeError(f"identity must be a models.dicom.common.Identity, "
                        f"got {type(identity).__name__}")
    if not identity.frame_of_reference_uid or not identity.study_instance_uid:
        raise InputError("identity needs the CT's study and Frame of Reference UIDs")
    ds = new_dataset(sop_class_uid, sop_instance_uid or new_uid(), modality=modality)
    add_patient_study(ds, identity)
    add_series(ds, series_instance_uid or new_uid(), series_number=series_number,
               description=description)
    add_frame_of_reference(ds, identity)
    add_equipment(ds)
    return ds


def instance_from_dataset(ds: Dataset) -> Instance:
    """Identity and instance UIDs of a dataset (missing attributes become empty)."""
    def text(keyword: str) -> str:
        value = ds.get(keyword, "")
        return "" if value is None else str(value)

    identity = Identity(
        patient_id=text("PatientID"), patient_name=text("PatientName"),
        study_instance_uid=text("StudyInstanceUID"),
        frame_of_reference_uid=text("FrameOfReferenceUID"),
        patient_birth_date=text("PatientBirthDate"), patient_sex=text("PatientSex"),
        study_id=text("StudyID"), study_date=text("StudyDate"), study_time=text("StudyTime"),
        accession_number=text("AccessionNumber"),
        referring_physician_name=text("ReferringPhysicianName"))
    return Instance(identity, text("SeriesInstanceUID"), text("SOPInstanceUID"))


def ds_values(values: Any) -> list[str]:
    """Numbers as DICOM DS strings of at most 16 characters, 12 significant digits."""
    out = []
    for value in np.atleast_1d(np.asarray(values, dtype=np.float64)):
        v = float(value)
        if v == 0:
            out.append("0")
            continue
        for digits in range(12, 0, -1):
            text = f"{v:.{digits}g}"
            if len(text) <= 16:
                break
        out.append(text)
    return out


def ds_value(value: float) -> str:
    """One number as a DS string; see :func:`ds_values`."""
    return ds_values([value])[0]


def source_label(source: Any) -> str:
    """Text naming a file or dataset in error messages."""
    if isinstance(source, Dataset):
        name = getattr(source, "filename", None)
        return str(name) if name else "<dataset>"
    return str(source)


@contextlib.contextmanager
def reading(source: Any, what: str) -> Iterator[str]:
    """Context in which any failure interpreting a file becomes an :class:`InputError`.

    Yields the label to put in messages. An :class:`InputError` raised inside passes
    through unchanged.
    """
    label = source_label(source)
    try:
        yield label
    except InputError:
        raise
    except PARSE_ERRORS as exc:
        raise InputError(f"{label}: cannot read {what}: {type(exc).__name__}: "
                         f"{str(exc)[:200]}") from exc


def as_dataset(source: str | Path | Dataset) -> Dataset:
    """Read a file (Part 10 preamble optional) or pass a dataset through."""
    if isinstance(source, Dataset):
        return source
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    return read_dataset(path)


def rt_object(source: str | Path | Dataset, label: str, *, sop_class_uid: str, modality: str,
              what: str) -> Dataset:
    """The dataset of ``source``, refused unless its SOP class or its Modality is the expected.

    Parameters
    ----------
    source : str, Path or pydicom.Dataset
        File or dataset (see :func:`as_dataset`).
    label : str
        Name of the source in messages (from :func:`reading`).
    sop_class_uid, modality : str
        What an object of the expected kind has (either is enough).
    what : str
        The kind in the message, e.g. ``"RT Dose"``.
    """
    ds = as_dataset(source)
    found_class = str(ds.get("SOPClassUID", ""))
    found_modality = str(ds.get("Modality", ""))
    if found_class != sop_class_uid and found_modality != modality:
        raise InputError(f"{label}: not an {what} object (SOPClassUID {found_class!r}, "
                         f"Modality {found_modality!r})")
    return ds


def require(ds: Dataset, keyword: str, label: str) -> Any:
    """The value of a type-1 attribute; InputError naming it if absent or empty."""
    value = ds.get(keyword)
    if value is None or value == "":
        raise InputError(f"{label}: missing required attribute {keyword}")
    return value


def dicom_floats(ds: Dataset, keyword: str, label: str, *, count: int | None = None
                 ) -> np.ndarray:
    """A multi-valued numeric attribute as finite float64; InputError if absent/bad."""
    value = require(ds, keyword, label)
    try:
        values = np.atleast_1d(np.asarray(
            list(value) if isinstance(value, list | tuple | pydicom.multival.MultiValue)
            else [value], dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{label}: {keyword} is not numeric: {value!r}") from exc
    if count is not None and values.size != count:
        raise InputError(f"{label}: {keyword} must have {count} values, got {values.size}")
    if not np.all(np.isfinite(values)):
        raise InputError(f"{label}: {keyword} contains NaN or infinity")
    return values


def dicom_float(ds: Dataset, keyword: str, label: str, *, default: float | None = None
                ) -> float:
    """A single numeric attribute; ``default`` when absent (else InputError)."""
    if default is not None and ds.get(keyword) in (None, ""):
        return float(default)
    return float(dicom_floats(ds, keyword, label, count=1)[0])
