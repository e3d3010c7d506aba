"""Read a clinical (or phantom) DICOM folder into a :class:`models.patient.case.Case`.

The same path serves the built-in phantom and a clinic's export: scan the folder tree,
pick the image series, build the volume (:mod:`models.dicom.series`), then read the
structure set that belongs to it (same frame of reference; the newest if several) with
:func:`models.dicom.rtstruct.read_rtstruct`.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from models.base.errors import InputError
from models.dicom.common import read_dataset
from models.dicom.rtstruct import check_structure_set_header, read_rtstruct
from models.dicom.series import read_series, scan_folder, select_series
from models.patient.case import Case

log = logging.getLogger(__name__)

_IDENTITY_KEYWORDS = {"patient_birth_date": "PatientBirthDate", "patient_sex": "PatientSex",
                      "study_id": "StudyID", "study_date": "StudyDate",
                      "study_time": "StudyTime", "accession_number": "AccessionNumber",
                      "referring_physician_name": "ReferringPhysicianName",
                      "study_description": "StudyDescription"}


def read_case(root: str | Path, *, series_uid: str | None = None, resample: bool = False,
              progress: bool = False) -> Case:
    """Import a DICOM folder tree as a case.

    Parameters
    ----------
    root : str or Path
        Folder (searched recursively) with one image series (or name it with
        ``series_uid``) and optionally RTSTRUCT files.
    series_uid : str, optional
        SeriesInstanceUID to import when the folder holds several series.
    resample : bool
        Interpolate non-uniform slice spacing instead of rejecting the series.
    progress : bool
        Show progress bars.

    Returns
    -------
    Case
        CT/MR volume, structures and fiducials of the matching structure set (none if
        there is no RTSTRUCT for this frame of reference), DICOM identity and slice UIDs.

    Raises
    ------
    InputError
        Anything wrong with the files, naming file, tag and reason.
    """
    root = Path(root)
    try:
        with warnings.catch_warnings():  # odd values are checked by us, not warned about
            warnings.simplefilter("ignore")
            return _read_case(root, series_uid, resample, progress)
    except InputError:
        raise
    except Exception as exc:  # last line of defence against malformed files
        raise InputError(f"{root}: could not import ({type(exc).__name__}: {exc}); run with "
                         "--debug for details") from exc


def _read_case(root: Path, series_uid: str | None, resample: bool, progress: bool) -> Case:
    scan = scan_folder(root, progress=progress)
    series = read_series(select_series(scan, root, series_uid), resample=resample,
                         progress=progress)
    first = series.first

    def text(keyword: str) -> str:
        try:
            value = first.get(keyword, "")
        except Exception:  # a garbled optional attribute is dropped, not fatal
            return ""
        return "" if value is None else str(value)

    case = Case(ct=series.volume, patient_id=text("PatientID"),
                patient_name=text("PatientName"), study_instance_uid=series.study_uid,
                series_instance_uid=series.series_uid,
                frame_of_reference_uid=series.frame_of_reference_uid,
                modality=series.modality,
                image_instance_uids=series.instance_uids if all(series.instance_uids) else [],
                dicom_attributes={k: text(v) for k, v in _IDENTITY_KEYWORDS.items()})
    candidates = []
    for path in scan.structure_sets:
        ds = read_dataset(path)
        try:  # pydicom parses sequences lazily: damage shows up only on access
            check_structure_set_header(ds, str(path))
            frames = getattr(ds, "ReferencedFrameOfReferenceSequence", None) or []
            frame = str(getattr(frames[0], "FrameOfReferenceUID", "")) if frames else ""
        except InputError:
            raise
        except Exception as exc:  # malformed attributes surface as many exception types
            raise InputError(f"{path}: malformed RTSTRUCT ({type(exc).__name__}: {exc})"
                             ) from exc
        if series.frame_of_reference_uid and frame and frame != series.frame_of_reference_uid:
            log.warning("%s: structure set is for another frame of reference; ignored", path)
            continue
        stamp = f"{ds.get('StructureSetDate', '')}{ds.get('StructureSetTime', '')}"
        candidates.append((stamp, str(path), ds))
    if candidates:
        candidates.sort(key=lambda c: (c[0], c[1]))
        if len(candidates) > 1:
            log.warning("%d structure sets match; using the newest, %s", len(candidates),
                        candidates[-1][1])
        structure_set = read_rtstruct(candidates[-1][2], series.volume)
        for structure in structure_set.structures.values():
            case.add_structure(structure)
        case.fiducials_lps.update(structure_set.fiducials_lps)
    elif scan.structure_sets:
        raise InputError(f"{root}: no structure set matches the frame of reference "
                         f"{series.frame_of_reference_uid} of series {series.series_uid}")
    return case
