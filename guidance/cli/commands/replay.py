"""``iort replay SESSION``: re-run a recorded session and check every logged number.

The session's tracking stream goes through a new guidance loop (poses checked frame by
frame), the dose trigger of ``iort demo`` sessions is re-run, and every logged dose and
confirmed pose is recomputed with the same dose engine and DVH rule; every coverage number
must come out exactly as logged (see :mod:`guidance.record.replay`).

Exit codes: 0 everything reproduced; 3 the replay ran but something differs or part of
the log was unreadable (listed); 2 wrong input.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from guidance.cli.inputs import load_case_spec
from models.base.errors import InputError
from models.base.files import output_folder

#: Exit code of a replay that ran but did not reproduce everything.
NOT_REPRODUCED = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``replay`` subcommand."""
    parser = subparsers.add_parser(
        "replay", help="re-run a recorded session and check its logged numbers",
        description="Replay a session log through the same loop and dose engine: the "
                    "tracked poses frame by frame, the dose trigger of demo sessions, and "
                    "every logged coverage number (V90, D90, organ doses, MU) recomputed "
                    "and compared exactly. Exit 0 when everything is reproduced, 3 when "
                    "something differs or part of the log is unreadable.")
    parser.add_argument("session", type=Path, metavar="SESSION", help="a session log (.sqlite)")
    parser.add_argument("--case", metavar="CASE",
                        help="the session's case ('phantom', a case or DICOM folder); "
                             "default for an 'iort demo' session: its phantom, rebuilt")
    parser.add_argument("--speed", type=float, default=0.0, metavar="X",
                        help="pace of the tracking replay: 0 as fast as possible (default), "
                             "1 the recorded pace, 2 twice as fast")
    parser.add_argument("--headless", action="store_true",
                        help="no window: recheck the session and print what was reproduced "
                             "(default without a display)")
    parser.add_argument("--quit-after", type=float, metavar="S",
                        help="close the window after S seconds")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="write replay.json and the DVH of every confirmed pose "
                             "(dvh_confirm_<event>.png) here")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def _speed(value: float) -> float:
    if not 0.0 <= value <= 1000.0 or value != value:
        raise InputError(f"--speed {value}: must be between 0 (as fast as possible) and 1000")
    return value


def run(args: argparse.Namespace) -> int:
    """Read the session, replay it, print (and write) what was reproduced."""
    from guidance.record.replay import case_check, read_session, replay_session

    speed = _speed(args.speed)
    out = output_folder(args.out, what="--out") if args.out is not None else None
    read = read_session(args.session)
    for problem in read.problems:
        print(f"iort replay: {problem}")
    case = _case(args, read)
    if case is not None:
        wrong = case_check(read, case)
        if wrong:
            raise InputError(f"--case: {wrong}")
    if not args.headless and os.environ.get("DISPLAY"):
        if case is None:
            raise InputError("--case: the monitor needs the session's case to show a replay")
        if out is not None or args.json:
            raise InputError("--out and --json are for --headless replays")
        return _in_monitor(read, case, speed=speed or 1.0, quit_after_s=args.quit_after)
    on_confirm = _dvh_writer(out, case) if out is not None and case is not None else None
    result = replay_session(read, case, speed=speed, on_confirm=on_confirm)
    summary = result.summary()
    if out is not None:
        (out / "replay.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print(summary, read.path.name)
    return 0 if result.reproduced else NOT_REPRODUCED


def replay_monitor_logic(read, case, *, speed: float):
    """Monitor logic over a new loop fed with the session's recorded frames: the same
    views, the same dose service (computing live), nothing recorded (no session log, so
    Confirm is refused). Started by the caller."""
    import numpy as np

    from guidance.monitor.feed import LoopFeed
    from guidance.monitor.logic import MonitorLogic
    from guidance.record.replay import LoggedDose, replay_loop
    from guidance.treatment.dose_service import (
        DEFAULT_MACHINE,
        BeamChoice,
        beam_options,
        electron_dose_function,
    )

    start = read.of_kind("session_start")
    meta = start[0].payload if start else {}
    replay = replay_loop(read, speed=speed)
    plan = meta.get("plan_patient_from_applicator")
    if plan is None:
        from models.patient.phantom import planned_patient_from_applicator

        plan = planned_patient_from_applicator(case)
    machine = str(meta.get("machine") or DEFAULT_MACHINE)
    planned = meta.get("planned_beam")
    doses = LoggedDose(case, default_machine=machine)
    planned_beam = doses.choice_of(planned)[0] if isinstance(planned, dict) else BeamChoice()
    logged = read.of_kind("dose")
    beam = doses.choice_of(logged[0].payload.get("beam") or {})[0] if logged else planned_beam
    feed = LoopFeed(replay.loop, replay.camera_matrix)
    return MonitorLogic(case, np.asarray(plan, dtype=np.float64).reshape(4, 4), feed,
                        dose_fn=electron_dose_function(machine), beam=beam,
                        planned_beam=planned_beam, machine=machine,
                        beam_options=beam_options(machine),
                        plan_name=f"replay of {read.path.name}")


def _in_monitor(read, case, *, speed: float, quit_after_s: float | None) -> int:
    import sys

    from guidance.monitor.qt.window import INTERRUPTED, run_window

    logic = replay_monitor_logic(read, case, speed=speed)
    print(f"replaying {read.path.name} at {speed:g}x in the monitor (Confirm is off)")
    try:
        logic.start()
        code = run_window(logic, quit_after_s=quit_after_s)
    finally:
        logic.close()
    if code == INTERRUPTED:
        print("iort: interrupted", file=sys.stderr)
        return code
    return 0


def _case(args: argparse.Namespace, read):
    if args.case is not None:
        return load_case_spec(args.case)
    start = read.of_kind("session_start")
    meta = start[0].payload if start else {}
    if meta.get("program") != "iort demo":
        if read.of_kind("dose") or read.of_kind("confirmed_pose"):
            print("iort replay: no --case: the tracking is replayed, the doses are not "
                  "rechecked")
        return None
    from models.dicom.writer import load_phantom_case

    try:
        spacing = tuple(float(v) for v in meta["phantom_spacing_mm"])
        seed = int(meta.get("seed", 0))
    except (KeyError, TypeError, ValueError):
        raise InputError(f"SESSION {read.path.name}: a demo session without its phantom's "
                         "settings; give --case") from None
    with tempfile.TemporaryDirectory(prefix="iort-replay-") as folder:
        return load_phantom_case(Path(folder), spacing_mm=spacing, seed=seed)  # type: ignore[arg-type]


def _dvh_writer(out: Path, case):
    import cv2

    from guidance.render.plots import PRINT, render_dvh_plot

    colors = {n: s.color_rgb for n, s in case.structures.items()}

    def write(event, dvhs) -> None:
        beam = event.payload.get("beam") or {}
        image = render_dvh_plot({n: (d.dose_edges_gy, d.cumulative_percent)
                                 for n, d in dvhs.items()}, colors, size=(900, 560),
                                prescription_gy=beam.get("prescription_gy"), legend=True,
                                style=PRINT)
        cv2.imwrite(str(out / f"dvh_confirm_{event.seq}.png"),
                    cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return write


def _print(summary: dict, name: str) -> None:
    print(f"replayed {name}: {summary['frames']} frames, "
          f"{summary['pose_mismatches']} pose differences; "
          f"dose triggers {summary['dose_triggers_replayed']} of "
          f"{summary['dose_triggers_logged']} logged"
          f"{'' if summary['dose_triggers_match'] else ' (DIFFERENT)'}; "
          f"{summary['numbers_checked']} logged numbers checked, "
          f"{summary['numbers_different']} different")
    for diff in summary["differences"]:
        print(f"  event {diff['event']} ({diff['kind']}) {diff['number']}: logged "
              f"{diff['logged']}, replayed {diff['replayed']}")
    for problem in summary["problems"]:
        print(f"  not replayed: {problem}")
    print("reproduced" if summary["reproduced"] else "NOT reproduced")
