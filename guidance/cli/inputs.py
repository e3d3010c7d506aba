"""What the command line accepts as a case and as a transform file, read one way everywhere.

``iort run``, ``iort dose case`` and ``iort export`` take the same CASE argument and the
same kind of pose file, so a user learns it once and every command gives the same message
for the same mistake.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from guidance.treatment.dose_service import DEFAULT_MACHINE
from models.base.errors import InputError
from models.base.files import read_json_file
from models.base.validation import MAX_TRANSLATION_MM, as_transform
from models.patient.case import Case

#: The CASE value that selects the built-in phantom.
PHANTOM = "phantom"
#: What "have: ..." lists for a case without structures.
NO_STRUCTURES = "none (the case has no structures: import its RTSTRUCT with the CT)"


def load_case_spec(spec: str | Path) -> Case:
    """Load the case named on the command line.

    Parameters
    ----------
    spec : str or Path
        ``"phantom"`` (the built-in phantom, in memory), a case folder written by
        ``iort case import`` / :func:`models.patient.case_store.save_case` (has ``manifest.json``),
        or a DICOM folder (CT/MR series + RTSTRUCT, imported on the fly).

    Raises
    ------
    InputError
        If ``spec`` is none of these; the message says what would work.
    """
    if str(spec) == PHANTOM:
        from models.patient.phantom import make_phantom

        return make_phantom()
    path = Path(spec)
    if not path.is_dir():
        raise InputError(f"CASE {str(spec)!r}: not {PHANTOM!r} and not a folder; give a case "
                         "folder (iort case import) or a DICOM folder (CT series + RTSTRUCT)")
    from models.patient.case_store import MANIFEST, load_case

    if (path / MANIFEST).is_file():
        return load_case(path)
    from models.dicom.reader import read_case

    try:
        return read_case(path)
    except InputError as exc:
        raise InputError(f"CASE {path}: not a case folder (no {MANIFEST}) and not a usable "
                         f"DICOM folder: {exc}") from exc


def read_transform_file(path: str | Path, key: str, *, option: str) -> np.ndarray:
    """Read a rigid 4x4 transform from a file given with a command-line option.

    Accepted forms: JSON ``{"<key>": [[...], [...], [...], [0, 0, 0, 1]]}``, a bare JSON
    4x4 list, or a text file of 4 rows of 4 numbers.

    Parameters
    ----------
    path : str or Path
        The file.
    key : str
        Name of the transform, e.g. ``"patient_from_applicator"``.
    option : str
        The option that named the file (``"--pose"``), quoted in error messages.

    Raises
    ------
    InputError
        Unreadable file, wrong form, not 4x4, not rigid; the message names the option and
        file and shows the expected form.
    """
    path = Path(path)
    where = f"{option} {path}"
    expected = f'write {{"{key}": [[...], [...], [...], [0, 0, 0, 1]]}}'
    try:
        raw = read_json_file(path, what=option)
    except InputError as exc:
        if not isinstance(exc.__cause__, json.JSONDecodeError):
            raise
        try:  # not JSON: a text file of 4 rows
            matrix = np.loadtxt(path, dtype=np.float64, ndmin=2)
        except ValueError as text_exc:
            raise InputError(f"{where}: neither JSON nor a 4x4 text matrix ({text_exc}); "
                             f"{expected}") from text_exc
    else:
        if isinstance(raw, dict):
            if key not in raw:
                raise InputError(f"{where}: JSON object has no {key!r}; {expected}")
            raw = raw[key]
        try:
            matrix = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{where}: not a numeric 4x4 matrix ({exc}); {expected}") \
                from exc
    try:
        return as_transform(matrix, name=key, rigid=True,
                            max_translation_mm=MAX_TRANSLATION_MM)
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from exc


def add_beam_arguments(parser: argparse.ArgumentParser, *, machine_required: bool,
                       beam_required: bool = True) -> None:
    """``--machine``, ``--energy``, ``--applicator``, ``--bevel`` (one spelling everywhere);
    ``beam_required=False`` leaves energy and applicator to the command to check."""
    if machine_required:
        parser.add_argument("--machine", required=True, help="machine (e.g. liac, mobetron)")
    else:
        parser.add_argument("--machine", default=DEFAULT_MACHINE,
                            help=f"machine (default {DEFAULT_MACHINE})")
    parser.add_argument("--energy", type=float, required=beam_required, metavar="MEV",
                        help="nominal energy in MeV")
    parser.add_argument("--applicator", type=float, required=beam_required, metavar="MM",
                        help="applicator diameter in mm")
    parser.add_argument("--bevel", type=float, default=0.0, metavar="DEG",
                        help="bevel angle in degrees (default 0)")


def add_site_key_argument(parser: argparse.ArgumentParser) -> None:
    """``--site-key FILE``: the secret behind pseudonyms (anonymised exports, session logs)."""
    from models.base.pseudonyms import SITE_KEY_ENV

    parser.add_argument("--site-key", type=Path, metavar="FILE",
                        help="site key file behind the keyed pseudonyms and UIDs (default: "
                             f"${SITE_KEY_ENV}, else ~/.config/iort/site-key; created "
                             "owner-only on first use; keep it secret and backed up)")


def add_anonymise_arguments(parser: argparse.ArgumentParser) -> None:
    """``--anonymise`` and ``--site-key FILE`` for commands that write DICOM."""
    parser.add_argument("--anonymise", "--anonymize", action="store_true",
                        help="de-identify every file written (DICOM PS3.15 Basic Profile: "
                             "keyed pseudonym for patient name/ID, UIDs replaced "
                             "consistently, dates shifted by a keyed per-patient offset, "
                             "descriptions and names removed)")
    add_site_key_argument(parser)


def site_key(args: argparse.Namespace):
    """The :class:`models.base.pseudonyms.SiteKey` named by ``--site-key`` (or the default)."""
    from models.base.pseudonyms import SiteKey

    return SiteKey.load(getattr(args, "site_key", None))


def deidentifier(args: argparse.Namespace):
    """A :class:`models.dicom.deidentify.Deidentifier` when ``--anonymise`` was given."""
    if not getattr(args, "anonymise", False):
        return None
    from models.dicom.deidentify import Deidentifier

    return Deidentifier(site_key(args))


def case_label(case: Case, args: argparse.Namespace) -> str:
    """How a session log or report names the case: the keyed pseudonym of its patient ID,
    or -- with ``--log-identifiers`` -- the patient ID and the CASE argument as given."""
    if getattr(args, "log_identifiers", False):
        return f"{case.patient_id} ({args.case})"
    return site_key(args).pseudonym(case.patient_id, prefix="case-")
