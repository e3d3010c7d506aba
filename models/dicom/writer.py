"""Write a whole case as DICOM: image series (one file per slice) + RTSTRUCT."""

from __future__ import annotations

import logging
from pathlib import Path

from models.base.errors import InputError
from models.dicom.common import ensure_study_date, ensure_uids, identity_of, new_uid
from models.dicom.image_writer import write_image_series
from models.dicom.rtstruct import write_rtstruct
from models.patient.case import Case
from models.patient.phantom import DEFAULT_SPACING_MM, make_phantom

log = logging.getLogger(__name__)

#: File name of the structure set inside a written case folder.
RTSTRUCT_FILE = "RS.dcm"


def prepare_output_dir(out_dir: str | Path, *, force: bool) -> Path:
    """Create ``out_dir``; refuse a non-empty one unless ``force``.

    With ``force`` the ``*.dcm`` files already there are removed (nothing else is touched),
    so an old slice cannot end up mixed into the new series.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise InputError(f"--out {out}: folder is not empty; choose an empty folder or "
                             "pass --force to overwrite")
        for old in out.glob("*.dcm"):
            old.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_case(case: Case, out_dir: str | Path, *, force: bool = False,
               progress: bool = False, series_description: str = "",
               structure_set_label: str = "IORT", anonymise: bool = False) -> Path:
    """Write ``case`` as a CT (or MR) series plus an RTSTRUCT into ``out_dir``.

    Missing UIDs are created (deterministically from the patient id and grid, so writing
    the same phantom twice gives identical UIDs) and stored on ``case``, as are the slice
    instance UIDs.

    Parameters
    ----------
    case : Case
        The case; its UIDs/``image_instance_uids`` are filled in if empty.
    out_dir : str or Path
        Target folder (see :func:`prepare_output_dir`).
    force : bool
        Allow a non-empty folder.
    progress : bool
        Progress bar while writing slices.
    series_description, structure_set_label : str
        Descriptive texts.
    anonymise : bool
        Replace patient identifiers in the written files.

    Returns
    -------
    Path
        ``out_dir``.
    """
    out = prepare_output_dir(out_dir, force=force)
    ensure_uids(case, case.patient_id, case.ct.shape, case.ct.patient_from_voxel.tolist())
    ensure_study_date(case)
    identity = identity_of(case, anonymise=anonymise)
    case.image_instance_uids = write_image_series(
        case.ct, out, identity, series_instance_uid=case.series_instance_uid,
        modality=case.modality, instance_uids=case.image_instance_uids or None,
        series_description=series_description, progress=progress)
    write_rtstruct(case, out / RTSTRUCT_FILE, label=structure_set_label,
                   series_instance_uid=new_uid("rtstruct-series", case.series_instance_uid),
                   sop_instance_uid=new_uid("rtstruct", case.series_instance_uid),
                   anonymise=anonymise)
    log.info("wrote case %s to %s", case.patient_id, out)
    return out


def write_phantom(out_dir: str | Path, *, spacing_mm: tuple[float, float, float] =
                  DEFAULT_SPACING_MM, seed: int = 0, force: bool = False,
                  progress: bool = False) -> Path:
    """Write the phantom as real DICOM (CT series, one file per slice, + RTSTRUCT).

    Parameters
    ----------
    out_dir : str or Path
        Target folder; must be empty or absent unless ``force``.
    spacing_mm, seed
        As :func:`make_phantom`.
    force : bool
        Allow writing into a non-empty folder (previous DICOM files of ours are replaced).
    progress : bool
        Show a progress bar.

    Returns
    -------
    Path
        The folder written.
    """
    prepare_output_dir(out_dir, force=force)  # refuse early, before building the phantom
    case = make_phantom(spacing_mm=spacing_mm, seed=seed)
    return write_case(case, out_dir, force=True, progress=progress,
                      series_description="IORT phantom CT",
                      structure_set_label="IORT phantom")
