"""Shared DICOM building blocks: UIDs, file meta, and the modules every IOD needs.

Every writer in :mod:`models.dicom` (CT/MR series, RTSTRUCT, and the RTDOSE/RTPLAN
writers) builds its datasets from these helpers so that all objects of one case agree on
patient, study, frame of reference and equipment. Typical use::

    ds = new_dataset(RT_STRUCTURE_SET_STORAGE, new_uid(), modality="RTSTRUCT")
    add_patient_study(ds, identity)
    add_series(ds, identity_series_uid, series_number=2, modality="RTSTRUCT")
    add_equipment(ds)
    write_dataset(ds, path)

Module contents follow DICOM PS3.3 (C.7.1.1 Patient, C.7.2.1 General Study,
C.7.3.1 General Series, C.7.4.1 Frame of Reference, C.7.5.1 General Equipment,
C.12.1 SOP Common). Type 2 attributes are always present (empty when unknown), so
``dciodvfy`` finds nothing missing.
"""

from __future__ import annotations

import copy
import datetime as _dt
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from models.base.errors import InputError
from models.base.files import private_file

if TYPE_CHECKING:  # pragma: no cover
    from models.dicom.deidentify import Deidentifier
    from models.patient.case import Case

#: UID root of objects this program creates (pydicom's registered root + our suffix).
UID_PREFIX = "1.2.826.0.1.3680043.8.498."

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"
#: Image storage SOP classes the series importer accepts, by modality.
IMAGE_SOP_CLASSES = {CT_IMAGE_STORAGE: "CT", MR_IMAGE_STORAGE: "MR",
                     "1.2.840.10008.5.1.4.1.1.128": "PT",
                     "1.2.840.10008.5.1.4.1.1.7": "OT"}

MANUFACTURER = "iort-guidance"
SOFTWARE_VERSION = "0.1.0"


def new_uid(*entropy: object) -> str:
    """A new DICOM UID under :data:`UID_PREFIX`.

    With ``entropy`` the UID is a deterministic hash of it (same inputs, same UID: used for
    the phantom so repeated runs write identical files); without, it is random.

    Examples
    --------
    >>> new_uid("phantom", 0) == new_uid("phantom", 0)
    True
    """
    if entropy:
        return generate_uid(prefix=UID_PREFIX, entropy_srcs=[repr(e) for e in entropy])
    return generate_uid(prefix=UID_PREFIX)


@dataclass(frozen=True)
class Identity:
    """Patient / study / frame-of-reference identity shared by all objects of a case.

    Build one from a case with :func:`identity_of`. Anonymised objects are written with
    these identifiers and de-identified as they are written (:func:`write_dataset` with a
    :class:`models.dicom.deidentify.Deidentifier`).
    """

    patient_id: str
    patient_name: str
    study_instance_uid: str
    frame_of_reference_uid: str
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_id: str = "1"
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    referring_physician_name: str = ""
    study_description: str = ""


_EXTRA_IDENTITY_FIELDS = ("patient_birth_date", "patient_sex", "study_id", "study_date",
                          "study_time", "accession_number", "referring_physician_name",
                          "study_description")


def identity_of(case: Case) -> Identity:
    """The :class:`Identity` of a case (its UIDs must be set, see :func:`ensure_uids`)."""
    if not case.study_instance_uid or not case.frame_of_reference_uid:
        raise InputError("case has no study / frame-of-reference UID yet: call ensure_uids(case)")
    ident = Identity(patient_id=case.patient_id, patient_name=case.patient_name,
                     study_instance_uid=case.study_instance_uid,
                     frame_of_reference_uid=case.frame_of_reference_uid,
                     **{k: str(v) for k, v in case.dicom_attributes.items()
                        if k in _EXTRA_IDENTITY_FIELDS})
    return ident


def ensure_uids(case: Case, *entropy: object) -> None:
    """Give a case study, series and frame-of-reference UIDs where they are empty.

    ``entropy`` makes them deterministic (see :func:`new_uid`).
    """
    if not case.study_instance_uid:
        case.study_instance_uid = new_uid("study", *entropy) if entropy else new_uid()
    if not case.series_instance_uid:
        case.series_instance_uid = new_uid("series", *entropy) if entropy else new_uid()
    if not case.frame_of_reference_uid:
        case.frame_of_reference_uid = new_uid("for", *entropy) if entropy else new_uid()


def ensure_study_date(case: Case) -> None:
    """Give a case a StudyDate/StudyTime (now) when it has none: every object written for it
    then carries the same (dciodvfy warns about objects without)."""
    if not case.dicom_attributes.get("study_date"):
        date, time = now_date_time()
        case.dicom_attributes.update(study_date=date, study_time=time[:6])


def now_date_time() -> tuple[str, str]:
    """Current local (DA, TM) strings, e.g. ``("20261123", "142501.000000")``."""
    now = _dt.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")


def new_dataset(sop_class_uid: str, sop_instance_uid: str, *, modality: str) -> Dataset:
    """An empty dataset with file meta (explicit VR little endian) and the SOP Common module.

    Parameters
    ----------
    sop_class_uid, sop_instance_uid : str
        SOP Class / Instance UID (also written as MediaStorage* in the file meta).
    modality : str
        Modality (CT, MR, RTSTRUCT, RTDOSE, RTPLAN).
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "IORT_" + SOFTWARE_VERSION.replace(".", "")
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    date, time = now_date_time()
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = time
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.Modality = modality
    return ds


def add_patient_study(ds: Dataset, identity: Identity) -> None:
    """Patient (C.7.1.1) and General Study (C.7.2.1) modules."""
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = identity.patient_birth_date
    ds.PatientSex = identity.patient_sex
    ds.StudyInstanceUID = identity.study_instance_uid
    ds.StudyDate = identity.study_date
    ds.StudyTime = identity.study_time
    ds.ReferringPhysicianName = identity.referring_physician_name
    ds.StudyID = identity.study_id
    ds.AccessionNumber = identity.accession_number
    if identity.study_description:
        ds.StudyDescription = identity.study_description


def add_series(ds: Dataset, series_instance_uid: str, *, series_number: int,
               description: str = "") -> None:
    """General Series (C.7.3.1) / RT Series (C.8.8.1) attributes (Modality set already)."""
    ds.SeriesInstanceUID = series_instance_uid
    ds.SeriesNumber = int(series_number)
    date, time = now_date_time()
    ds.SeriesDate = date
    ds.SeriesTime = time
    ds.OperatorsName = ""
    if description:
        ds.SeriesDescription = description


def add_frame_of_reference(ds: Dataset, identity: Identity) -> None:
    """Frame of Reference module (C.7.4.1)."""
    ds.FrameOfReferenceUID = identity.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""


def add_equipment(ds: Dataset) -> None:
    """General Equipment module (C.7.5.1), naming this program."""
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "IORT guidance"
    ds.SoftwareVersions = SOFTWARE_VERSION


def referenced_image_sequence(sop_class_uid: str, sop_instance_uids: list[str]) -> list[Dataset]:
    """Items of a ContourImageSequence / ReferencedImageSequence."""
    items = []
    for uid in sop_instance_uids:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class_uid
        item.ReferencedSOPInstanceUID = uid
        items.append(item)
    return items


def format_ds(value: float) -> str:
    """A float as a DICOM DS string: the most significant digits that fit 16 characters."""
    value = float(value)
    if value == 0.0:
        return "0"
    for digits in range(15, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise InputError(f"{value!r} cannot be written as a DICOM DS")


def set_ds_array(ds: Dataset, keyword: str, values: np.ndarray, *, decimals: int = 3) -> None:
    """Set a long DS multi-value (e.g. ContourData) fast, as one pre-formatted string.

    pydicom builds and validates one ``DSfloat`` per value (~30 us each), which makes a
    structure set with 10^5..10^6 coordinates take seconds to minutes. Here the values are
    formatted once with ``decimals`` places (each <= 16 characters, as DS requires) and
    stored as the element's backslash-joined text, which pydicom's writer emits unchanged.
    Reading the file back gives ordinary DS values.
    """
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import DataElement

    arr = np.asarray(values, dtype=np.float64).ravel()
    text = "\\".join(map(f"{{:.{decimals}f}}".format, arr.tolist()))
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise InputError(f"unknown DICOM keyword {keyword!r}")
    elem = DataElement(tag, "DS", None)
    elem._value = text  # written verbatim by pydicom.filewriter.write_number_string
    ds[tag] = elem


def write_dataset(ds: Dataset, path: str | Path, *,
                  deidentifier: Deidentifier | None = None) -> Path:
    """Write a dataset as a DICOM Part 10 file (preamble + file meta), owner-only (0600).

    With ``deidentifier`` a de-identified copy is written (``ds`` itself is not changed):
    the identifiers never reach the disk.
    """
    path = Path(path)
    if deidentifier is not None:
        ds = copy.deepcopy(ds)
        deidentifier.apply(ds)
    private_file(path)
    ds.save_as(path, enforce_file_format=True)
    return path


def read_dataset(path: str | Path, *, stop_before_pixels: bool = False) -> Dataset:
    """Read one file, turning every parse failure into :class:`models.base.errors.InputError`."""

    try:
        with warnings.catch_warnings():  # pydicom warns per odd value; the caller validates
            warnings.simplefilter("ignore")
            return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
    except Exception as exc:  # pydicom raises many types for damaged files
        raise InputError(f"{path}: not a readable DICOM file ({type(exc).__name__}: {exc})"
                         ) from exc
