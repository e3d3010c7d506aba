"""``iort export CASE --out DIR``: the plan as DICOM-RT (RTSTRUCT, RTPLAN, RTDOSE).

All three objects carry the case's patient, study and the CT's Frame of Reference; the
RTSTRUCT references the CT series slice by slice, the RTPLAN references the RTSTRUCT and
the RTDOSE references the RTPLAN (DoseSummationType PLAN). ``--with-ct`` also writes the CT
series, so the folder is a complete package (recommended with ``--anonymise``).

``--anonymise`` de-identifies every object as it is written (DICOM PS3.15 Basic
Application Level Confidentiality Profile, :mod:`models.dicom.deidentify`): the patient's
name and ID become a keyed pseudonym, every UID is replaced consistently (the package's
references still resolve; the same ``--site-key`` gives the same UIDs in every export),
dates are shifted by a keyed per-patient number of days, descriptions and names of people
are removed. The key is the site key file (``--site-key``, ``$IORT_SITE_KEY`` or
``~/.config/iort/site-key``, created owner-only on first use).

Plan parameters come from, in order: the command-line options, the ``--plan`` JSON file,
the case's stored plan (``case.plan``), and -- for the built-in phantom only -- the
phantom's planned applicator pose with the demo's beam. Keys read from a plan dictionary::

    {"patient_from_applicator": [[4x4]], "machine": "liac", "energy_mev": 8,
     "applicator_diameter_mm": 70, "bevel_deg": 0, "prescription_gy": 10,
     "isodose_percent": 90}

The dose stored in the case is exported when it belongs to the stored plan (the plan has
``"mu"`` and no option changes it); otherwise it is computed for the planned pose with the
electron engine (its MU go into the RTPLAN), or refused with ``--no-compute``. The RTDOSE
is written on a grid of the CT's axes covering the dose. The export itself is
:mod:`models.dicom.rt_export`; this module parses, calls it and prints.

``--edited`` (the anatomy edits saved in the case folder) or ``--edits FILE`` (an edits
JSON file, or a session log whose anatomy edits are replayed) exports the intraoperative
anatomy instead (:mod:`models.dicom.derived`): the edited CT as a derived series referencing
the original, the RTSTRUCT of the structures where they are now, and the RTPLAN/RTDOSE
computed on the edited CT.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from guidance.cli.inputs import add_anonymise_arguments, deidentifier
from models.base.errors import InputError
from models.base.files import output_folder

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    parser = subparsers.add_parser(
        "export", help="write the plan as DICOM-RT (RTSTRUCT, RTPLAN, RTDOSE)",
        description="Export a case's structures, electron IORT plan and dose as "
                    "DICOM-RT referencing the CT's Frame of Reference and series.")
    parser.add_argument("case", metavar="CASE",
                        help="a case folder (iort case import), a DICOM folder or 'phantom'")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output folder (must be empty unless --force)")
    add_anonymise_arguments(parser)
    parser.add_argument("--with-ct", action="store_true",
                        help="also write the CT series (same UIDs), for a complete package "
                             "(always for the built-in phantom)")
    parser.add_argument("--machine-name", metavar="NAME",
                        help="the treatment machine's name in the RT Plan (the one the "
                             "record-and-verify system knows, up to 16 characters; default: "
                             "the beam data's machine, e.g. liac); also a plan-file key "
                             "'treatment_machine_name'")
    parser.add_argument("--force", action="store_true", help="write into a non-empty folder")
    parser.add_argument("--no-compute", action="store_true",
                        help="refuse instead of computing the dose when the case has none")
    parser.add_argument("--accept-estimated-mu", action="store_true",
                        help="write MU although the output factor is an estimate (the RT "
                             "Plan is labelled 'ESTIMATED MU'; not for treatment)")
    parser.add_argument("--plan", type=Path, metavar="FILE",
                        help="JSON with patient_from_applicator (4x4) and optionally the beam")
    parser.add_argument("--machine", help="accelerator beam data (default: the plan's; the "
                                          "phantom's plan is on liac, the default machine "
                                          "of every command)")
    parser.add_argument("--energy", type=float, help="electron energy (MeV)")
    parser.add_argument("--applicator", type=float, help="applicator diameter (mm)")
    parser.add_argument("--bevel", type=float, help="applicator bevel (deg)")
    parser.add_argument("--prescription", type=float, help="prescribed dose (Gy)")
    edited = parser.add_mutually_exclusive_group()
    edited.add_argument("--edited", action="store_true",
                        help="export the intraoperative anatomy saved in the case folder: "
                             "edited CT as a derived series, RTSTRUCT and RTDOSE on it")
    edited.add_argument("--edits", type=Path, metavar="FILE",
                        help="like --edited, with the edits from FILE (edits JSON, or a "
                             "session log whose anatomy edits are replayed)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the case, resolve the plan, write the DICOM-RT objects."""
    from guidance.cli.inputs import load_case_spec
    from models.dicom.rt_export import export_case, resolve_plan

    output_folder(args.out)
    deid = deidentifier(args)   # a bad key file is refused before any work
    case = load_case_spec(args.case)
    overrides = {"machine": args.machine, "energy_mev": args.energy,
                 "applicator_diameter_mm": args.applicator, "bevel_deg": args.bevel,
                 "prescription_gy": args.prescription,
                 "treatment_machine_name": args.machine_name}
    plan_file = _read_plan_file(args.plan) if args.plan is not None else None
    spec = resolve_plan(case, plan_file=plan_file, overrides=overrides)
    if args.edited or args.edits is not None:
        return _export_edited(args, case, spec, deid)
    # the built-in phantom exists as DICOM nowhere else: its CT series is always written
    with_ct = args.with_ct or args.case == "phantom"
    result = export_case(case, spec, args.out, deidentifier=deid,
                         with_ct=with_ct, force=args.force, compute=not args.no_compute,
                         accept_estimated_mu=args.accept_estimated_mu)
    print(f"exported {'anonymised ' if result.anonymised else ''}plan to {result.out_dir}: "
          f"{result.rtstruct.name}, {result.rtplan.name}, {result.rtdose.name}"
          f"{f', {result.ct_files} CT slices' if result.ct_files else ''}; "
          f"{spec.energy_mev:g} MeV, applicator {spec.applicator_diameter_mm:g} mm, "
          f"{result.mu:.1f} MU, {spec.prescription_gy:g} Gy to the "
          f"{spec.isodose_percent:g} % isodose, Dmax {result.dose_max_gy:.2f} Gy "
          f"({'computed for the planned pose' if result.dose_computed else 'stored dose'})")
    if result.anonymised and not result.ct_files:
        print("note: the anonymised objects reference the CT by its replaced UIDs; add "
              "--with-ct (same site key) to include that CT in the package")
    return 0


def _read_plan_file(path: Path) -> dict[str, Any]:
    from models.dicom.rt_export import read_plan_file

    return read_plan_file(path)


def _read_edits(args: argparse.Namespace):
    """The anatomy edits ``--edited`` / ``--edits`` name (an EditList)."""
    from models.patient.edits import EditList

    if args.edited:
        from models.patient.case_store import MANIFEST, load_edits

        if not (Path(args.case) / MANIFEST).is_file():
            raise InputError(f"--edited: {args.case} is not a case folder (the edits are "
                             "saved in one); give the edits with --edits FILE")
        return load_edits(args.case)
    path = args.edits
    if path.suffix in (".sqlite", ".db"):
        from guidance.record.session_report import edits_from_session

        return EditList.from_json(edits_from_session(path), source=f"--edits {path}")
    from models.base.files import read_json_file

    data = read_json_file(path, what="--edits")
    if isinstance(data, dict) and data.get("format") == "iort-edits":
        data = data.get("edits")
    return EditList.from_json(data, source=f"--edits {path}")


def _export_edited(args: argparse.Namespace, case, spec, deid) -> int:
    """The intraoperative anatomy as DICOM (derived CT, RTSTRUCT, RTPLAN, RTDOSE)."""
    from models.dicom.derived import export_edited_case

    if args.no_compute:
        raise InputError("--no-compute: the dose of an edited anatomy is always computed on "
                         "the edited CT; drop --no-compute")
    edits = _read_edits(args)
    result = export_edited_case(case, edits, spec, args.out, deidentifier=deid,
                                with_ct=args.with_ct, force=args.force,
                                accept_estimated_mu=args.accept_estimated_mu)
    print(f"exported {'anonymised ' if args.anonymise else ''}intraoperative anatomy to "
          f"{result.out_dir}: {result.derived_files} edited CT slices (derived series), "
          f"{result.rtstruct.name}, {result.rtplan.name}, {result.rtdose.name}"
          f"{f', {result.original_files} original CT slices' if result.original_files else ''}"
          f"; {len(edits)} edit(s); {result.mu:.1f} MU, Dmax {result.dose_max_gy:.2f} Gy "
          "on the edited CT")
    return 0
