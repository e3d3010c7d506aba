"""``iort report SESSION --pdf OUT.pdf``: the treatment record of a recorded session.

Reads the session log (registration, confirmations with beam and coverage, warnings,
overrides). With ``--case`` the dose of the last confirmed pose is recomputed for the DVH
(and checked against the logged coverage).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from guidance.cli.inputs import load_case_spec
from models.base.errors import InputError
from models.base.files import output_file


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand."""
    parser = subparsers.add_parser(
        "report", help="treatment record (PDF) of a recorded session",
        description="Write the treatment record of a session log as PDF: case, beam and MU, "
                    "confirmed pose, registration, DVH and coverage, warnings and overrides, "
                    "signature block.")
    parser.add_argument("session", type=Path, metavar="SESSION", help="a session log (.sqlite)")
    parser.add_argument("--pdf", type=Path, required=True, metavar="OUT.pdf",
                        help="the PDF to write")
    parser.add_argument("--case", metavar="CASE",
                        help="the session's case ('phantom', a case or DICOM folder): "
                             "recomputes the confirmed dose for the DVH")
    parser.add_argument("--machine", default="liac",
                        help="machine of the session's beam when the log does not name it "
                             "(default liac)")
    parser.add_argument("--target", default="CTV", metavar="NAME",
                        help="target structure (default CTV)")
    parser.add_argument("--identifiers", action="store_true",
                        help="print the patient's name and ID (from --case) in the record; "
                             "by default it names the case only by the log's pseudonym")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read the session, optionally recompute the DVH, write the PDF."""
    from guidance.record.session_report import content_from_session
    from guidance.record.treatment_report import person_name, write_pdf

    output_file(args.pdf, what="--pdf", suffixes=(".pdf",))
    if not args.session.is_file():
        raise InputError(f"SESSION {args.session}: file not found; give a session log "
                         f"written by iort run or iort demo")
    dvh_fn = colors = patient = None
    if args.case is not None:
        case = load_case_spec(args.case)
        dvh_fn = _dvh_function(case, args.machine)
        colors = {n: s.color_rgb for n, s in case.structures.items()}
        if args.identifiers:
            patient = {"Patient": person_name(case.patient_name),
                       "Patient ID": case.patient_id or "—"}
    from guidance.treatment.dose_check import load_plan_limits

    content = content_from_session(args.session, target=args.target, dvh_fn=dvh_fn,
                                   colors=colors, patient=patient, limits=load_plan_limits())
    write_pdf(content, args.pdf)
    for note in content.notes:
        print(note)
    print(f"wrote {args.pdf}")
    return 0


def _dvh_function(case, default_machine: str):
    """Recompute a confirmed pose's DVHs the way the monitor computed them (the replay's
    rule: :class:`guidance.record.replay.LoggedDose`)."""
    from guidance.record.replay import LoggedDose

    doses = LoggedDose(case, default_machine=default_machine)

    def dvh_fn(pose, beam):
        computed_at = LoggedDose.pose_of({"beam": beam, "patient_from_applicator": pose})
        result = doses.dose(computed_at, beam)
        _, machine = doses.choice_of(beam)
        extras = {"machine": machine, "mu": round(float(result.mu), 1),
                  "output_factor": round(float(result.output_factor), 4),
                  "mu_estimated": bool(result.mu_estimated)}
        return doses.dvhs(computed_at, beam)[0], extras

    return dvh_fn
