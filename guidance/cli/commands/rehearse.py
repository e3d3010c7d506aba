"""``iort rehearse``: a trainee rehearses a scenario on the phantom and is scored.

* with a display: the OR monitor in trainee mode (F3 shows/hides the trainee panel: scenario
  picker, hints, faults, debrief after confirm);
* ``--headless --script FILE.json``: the script's timed commands drive the simulated
  applicator through the same loop and dose engine.

Either prints the (last) debrief and, with ``--out DIR``, writes ``DIR/score.json`` (the
session log goes there too).

The score is added to the trainee's history (``iort trainee progress NAME``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from guidance.cli.inputs import PHANTOM
from models.base.errors import InputError
from models.base.files import output_folder


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``rehearse`` subcommand."""
    parser = subparsers.add_parser(
        "rehearse", help="trainee rehearsal of a scenario on the phantom, scored",
        description="Rehearse an IORT scenario on the built-in phantom with a simulated "
                    "applicator; the score goes to the trainee's history. With a display "
                    "the OR monitor opens in trainee mode; --headless runs a script.")
    parser.add_argument("case", metavar="CASE", nargs="?", default=PHANTOM,
                        help="the built-in phantom (scenarios are defined on it; default)")
    from guidance.monitor.trainee_scenario import scenario_names

    parser.add_argument("--trainee", required=True, metavar="NAME",
                        help="who rehearses: the score goes to this trainee's history")
    parser.add_argument("--scenario", required=True, metavar="S",
                        help="a shipped scenario (" + ", ".join(scenario_names())
                             + ") or a scenario .json file")
    parser.add_argument("--headless", action="store_true",
                        help="no window: run --script and print the score")
    parser.add_argument("--script", type=Path, metavar="FILE.json",
                        help="timed commands driving the applicator (docs/trainee.md)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="write score.json and the session log here")
    parser.add_argument("--scores", type=Path, metavar="DIR",
                        help="folder of trainee histories (default: <sessions>/trainees)")
    parser.add_argument("--session-log", type=Path, metavar="FILE",
                        help="session log file (default: in --out, else the sessions folder)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the simulated pointer noise (default 0)")
    parser.add_argument("--quit-after", type=float, metavar="S",
                        help="close the window after S seconds (smoke tests)")
    parser.set_defaults(func=run)


def _check(args: argparse.Namespace):
    """Every input checked before anything is created; returns (scenario, script)."""
    from guidance.monitor.trainee_scenario import load_scenario
    from guidance.monitor.trainee_script import load_script
    from guidance.record.score import trainee_file

    if args.case != PHANTOM:
        raise InputError(f"CASE {args.case!r}: scenarios are defined on the built-in phantom; "
                         f"use {PHANTOM!r} (or leave CASE out)")
    trainee_file(args.trainee, args.scores)
    scenario = load_scenario(args.scenario)
    script = None
    if args.headless:
        if args.script is None:
            raise InputError("--headless needs --script FILE.json (timed commands driving "
                             "the applicator; see docs/trainee.md)")
        script = load_script(args.script)
    elif not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise InputError("iort rehearse needs a display (X server); without one use "
                         "--headless --script FILE.json")
    if args.out is not None:
        output_folder(args.out)
    return scenario, script


def _report(debrief, out: Path | None) -> None:
    """Print the debrief; write ``out/score.json`` (score, debrief rows, truth)."""
    print("\n".join(debrief.lines()))
    if out is not None:
        path = out / "score.json"
        path.write_text(json.dumps(debrief.to_dict(), indent=2, allow_nan=False),
                        encoding="utf-8")
        print(f"wrote {path}")


def run(args: argparse.Namespace) -> int:
    """Rehearse; returns 0 once the score is recorded (pass or fail)."""
    scenario, script = _check(args)
    from guidance.monitor.trainee import TraineeSession
    from guidance.monitor.trainee_script import run_script
    from guidance.record.session_log import SessionLog, session_log_path

    log_path = session_log_path(args.session_log, folder=args.out)
    session_log = SessionLog.create(log_path, case_id=PHANTOM,
                                    metadata={"trainee": args.trainee,
                                              "scenario": scenario.name})
    print(f"session log: {log_path}")
    session = None
    code: int | None = None
    try:
        session = TraineeSession(scenario, trainee=args.trainee, session_log=session_log,
                                 seed=args.seed, scores_folder=args.scores)
        # the first dose computation compiles the kernel: before the clock starts
        session.dose_fn(session.case, session.plan, scenario.beam())
        session.start()
        if script is not None:
            _report(run_script(session, script), args.out)
            code = 0
        else:
            from guidance.monitor.qt.trainee_panel import attach_trainee_mode
            from guidance.monitor.qt.window import INTERRUPTED, run_window

            code = run_window(session.logic, quit_after_s=args.quit_after,
                              setup=lambda window: attach_trainee_mode(window, session))
            if code == INTERRUPTED:
                print("iort: interrupted", file=sys.stderr)
            if session.debrief is not None:
                _report(session.debrief, args.out)
    finally:
        if session is not None:
            session.close()
        session_log.close(exit_code=code)
    return code
