"""Write a whole case as DICOM: image series (one file per slice) + RTSTRUCT."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from models.base.errors import InputError
from models.base.files import replacing_folder
from models.dicom.common import ensure_study_date, ensure_uids, identity_of, new_uid
from models.dicom.image_writer import write_image_series
from models.dicom.rtstruct import write_rtstruct
from models.patient.case import Case
from models.patient.phantom import DEFAULT_SPACING_MM, make_phantom

if TYPE_CHECKING:  # pragma: no cover
    from models.dicom.deidentify import Deidentifier

log = logging.getLogger(__name__)

#: File name of the structure set inside a written case folder.
RTSTRUCT_FILE = "RS.dcm"


def prepare_output_dir(out_dir: str | Path, *, force: bool) -> Path:
    """Check a DICOM output folder: refuse a file, or a non-empty folder unless ``force``.

    Nothing is created or removed here: :func:`dicom_output` writes the new content.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InputError(f"--out {out}: folder is not empty; choose an empty folder or "
                         "pass --force to overwrite")
    return out


def _not_dicom(entry: Path) -> bool:
    return entry.suffix.lower() != ".dcm"


@contextmanager
def dicom_output(out_dir: str | Path, *, force: bool) -> Iterator[Path]:
    """Yield a staging folder for a DICOM output folder, swapped in whole at the end.

    The folder is checked with :func:`prepare_output_dir`. The files are written to an
    owner-only sibling folder, then replace the old folder in one step
    (:func:`models.base.files.replacing_folder`): the old ``*.dcm`` files go (an old slice
    never ends up mixed into the new series), anything else in it is kept, and a kill at
    any moment leaves the old folder or the new one, never a mix.
    """
    out = prepare_output_dir(out_dir, force=force)
    with replacing_folder(out, keep=_not_dicom) as staging:
        yield staging


def write_case(case: Case, out_dir: str | Path, *, force: bool = False,
               progress: bool = False, series_description: str = "",
               structure_set_label: str = "IORT",
               deidentifier: Deidentifier | None = None) -> Path:
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
    deidentifier : models.dicom.deidentify.Deidentifier, optional
        Write the files de-identified (PS3.15 Basic Profile; keyed UIDs and pseudonyms).

    Returns
    -------
    Path
        ``out_dir``.
    """
    ensure_uids(case, case.patient_id, case.ct.shape, case.ct.patient_from_voxel.tolist())
    ensure_study_date(case)
    identity = identity_of(case)
    with dicom_output(out_dir, force=force) as staging:
        case.image_instance_uids = write_image_series(
            case.ct, staging, identity, series_instance_uid=case.series_instance_uid,
            modality=case.modality, instance_uids=case.image_instance_uids or None,
            series_description=series_description, progress=progress,
            deidentifier=deidentifier)
        write_rtstruct(case, staging / RTSTRUCT_FILE, label=structure_set_label,
                       series_instance_uid=new_uid("rtstruct-series",
                                                   case.series_instance_uid),
                       sop_instance_uid=new_uid("rtstruct", case.series_instance_uid),
                       deidentifier=deidentifier)
    log.info("wrote a case to %s", out_dir)
    return Path(out_dir)


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


def load_phantom_case(dicom_dir: str | Path, *,
                      spacing_mm: tuple[float, float, float] = DEFAULT_SPACING_MM,
                      seed: int = 0, progress: bool = False) -> Case:
    """Write the phantom as DICOM into ``dicom_dir`` and import it like a clinical case
    (what ``iort demo`` works on, and what a replay of a demo session rebuilds)."""
    from models.dicom.reader import read_case

    write_phantom(dicom_dir, spacing_mm=spacing_mm, seed=seed, force=True, progress=progress)
    return read_case(dicom_dir, progress=progress)
