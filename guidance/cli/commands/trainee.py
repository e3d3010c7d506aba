"""``iort trainee``: score a rehearsal and follow a trainee's progress.

* ``iort trainee score SESSION --trainee NAME [--case phantom | --plan FILE]`` — scores the
  session log against the plan (an ``iort rehearse`` log: its last scenario's plan, target
  and limits; else the phantom's planned pose), prints the debrief and adds the score to
  the trainee's history;
* ``iort trainee progress NAME [--png FILE]`` — every recorded score, oldest first, and a
  plot of the totals.
"""

from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path

from guidance.cli.inputs import PHANTOM, load_case_spec, read_transform_file
from models.base.errors import InputError
from models.base.files import output_file


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``trainee`` subcommand with ``score`` and ``progress``."""
    parser = subparsers.add_parser("trainee", help="score rehearsals, follow progress",
                                   description="Trainee scores from rehearsal session logs.")
    sub = parser.add_subparsers(dest="trainee_command", metavar="ACTION")
    sub.required = True
    score = sub.add_parser("score", help="score one rehearsal and record it",
                           description="Score a session log against the plan and add it "
                                       "to the trainee's history.")
    score.add_argument("session", type=Path, metavar="SESSION")
    score.add_argument("--trainee", required=True, metavar="NAME")
    score.add_argument("--plan", type=Path, metavar="FILE",
                       help="JSON with the planned 'patient_from_applicator' (default: the "
                            "rehearsed scenario's plan, else the phantom's planned pose)")
    score.add_argument("--target", default="CTV", metavar="NAME")
    score.add_argument("--scores", type=Path, metavar="DIR",
                       help="folder of trainee histories (default: <sessions>/trainees)")
    score.set_defaults(func=run_score)
    progress = sub.add_parser("progress", help="a trainee's scores across sessions",
                              description="Print every recorded score and plot the totals.")
    progress.add_argument("name", metavar="NAME")
    progress.add_argument("--png", type=Path, metavar="FILE", help="write the plot (PNG)")
    progress.add_argument("--scores", type=Path, metavar="DIR",
                          help="folder of trainee histories (default: <sessions>/trainees)")
    progress.set_defaults(func=run_progress)


def run_score(args: argparse.Namespace) -> int:
    """Score, print the debrief, record."""
    from guidance.record.score import record_score, score_session, trainee_file
    from guidance.treatment.dose_check import load_plan_limits

    trainee_file(args.trainee, args.scores)      # a bad name is refused before the work
    if not args.session.is_file():
        raise InputError(f"SESSION {args.session}: file not found")
    rehearsal = _last_rehearsal(args.session)
    target, limits, since = args.target, load_plan_limits(), 0
    if args.plan is not None:
        plan = read_transform_file(args.plan, "patient_from_applicator", option="--plan")
    elif rehearsal is not None:
        # a trainee rehearsal: its scenario's plan, target and limits, from its start
        from guidance.monitor.trainee_scenario import load_scenario

        plan = rehearsal.transform("plan")
        scenario = load_scenario(rehearsal.payload.get("scenario", ""))
        target, limits, since = scenario.target_name, scenario.limits(), rehearsal.seq
    else:
        from models.patient.phantom import planned_patient_from_applicator

        plan = planned_patient_from_applicator(load_case_spec(PHANTOM))
    score = score_session(args.session, plan, trainee=args.trainee, target=target,
                          limits=limits, since_seq=since)
    print("\n".join(score.lines()))
    print(f"recorded in {record_score(score, folder=args.scores)}")
    return 0


def _last_rehearsal(path: Path):
    """The last trainee-scenario start recorded in a session log (None: not a rehearsal)."""
    from guidance.record.score import TRAINEE_SCENARIO
    from guidance.record.session_log import SessionLog

    with SessionLog.open(path, readonly=True) as slog:
        starts = [e for e in slog.events("action")
                  if e.payload.get("action") == TRAINEE_SCENARIO and "plan" in e.payload]
    return starts[-1] if starts else None


def run_progress(args: argparse.Namespace) -> int:
    """Print the history and optionally plot it."""
    from guidance.record.score import trainee_history

    if args.png is not None:
        output_file(args.png, what="--png", suffixes=(".png",))
    history = trainee_history(args.name, folder=args.scores)
    print(f"{'#':>3}  {'date':<16} {'total':>6}  {'pos mm':>7} {'ang deg':>7} {'V90 %':>6}  "
          "session")
    for n, s in enumerate(history, 1):
        c = s.get("components", {})
        when = _dt.datetime.fromtimestamp(s.get("when_unix_s", 0.0)).strftime("%Y-%m-%d %H:%M")
        print(f"{n:>3}  {when:<16} {s.get('total', 0.0):6.1f}  "
              f"{_num(c.get('position_error_mm')):>7} {_num(c.get('angle_error_deg')):>7} "
              f"{_num(c.get('target_v90_percent')):>6}  {s.get('session', '')}")
    if args.png is not None:
        import cv2

        from guidance.render.plots import render_progress_plot

        rgb = render_progress_plot([float(s.get("total", 0.0)) for s in history])
        if not cv2.imwrite(str(args.png), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise InputError(f"--png {args.png}: cannot write the file")
        print(f"wrote {args.png}")
    return 0


def _num(value) -> str:
    return "—" if value is None else f"{float(value):.1f}"
