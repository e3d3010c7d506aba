"""Trainee scripts: timed commands driving a :class:`~guidance.monitor.trainee.TraineeSession`
(``iort rehearse --headless --script FILE.json`` and tests). The file format is
:class:`ScriptFile`, checked like every input file."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from guidance.monitor.trainee import Debrief, TraineeSession
from guidance.monitor.trainee_drive import ROLL_DIRECTIONS
from guidance.monitor.trainee_scenario import (
    ANATOMICAL_DIRECTIONS_LPS,
    FAULT_KINDS,
    Direction,
    FaultKind,
)
from models.base.errors import InputError
from models.base.files import read_json_file
from models.base.schema import FileSchema, bounded, check_file

log = logging.getLogger(__name__)

#: A script's confirm waits until the applicator rested this long (s): the frame confirmed
#: then shows it where it stopped.
STILL_BEFORE_CONFIRM_S = 0.15


class ScriptCommand(FileSchema):
    """One timed command of a trainee script (``t_s`` after the start)."""

    t_s: float = bounded(0.0, 3600.0, "command time after the start (s)", low_inclusive=True)
    do: Literal["hold", "step", "fault", "report_fault", "pause", "confirm"]
    motion: Literal["translate", "tilt", "roll"] = "translate"
    toward: Direction | Literal["clockwise", "counterclockwise"] | None = None
    for_s: float = bounded(0.0, 600.0, "hold duration (s)", default=1.0)
    amount: float = bounded(0.0, 200.0, "step size (mm or deg)", default=1.0)
    kind: FaultKind | None = None
    magnitude: float | None = bounded(0.0, 100.0, "fault size (mm)", default=None)
    duration_s: float = bounded(0.0, 600.0, "fault duration (s)", default=2.0)


class ScriptFile(FileSchema):
    """``--script FILE.json``: ``{"commands": [{"t_s": 0.5, "do": "hold", "motion":
    "translate", "toward": "cranial", "for_s": 0.8}, ..., {"t_s": 5, "do": "confirm"}]}``."""

    commands: tuple[ScriptCommand, ...] = Field(min_length=1)
    confirm_timeout_s: float = bounded(0.0, 600.0, "wait for a confirmable dose (s)",
                                       default=30.0)


def load_script(path: str | Path) -> ScriptFile:
    """Read and check a trainee script (one line naming file and field when wrong)."""
    data = read_json_file(path, what="trainee script")
    script = check_file(ScriptFile, data, source=f"trainee script {Path(path).name}")
    for n, c in enumerate(script.commands):
        if c.do in ("hold", "step"):
            rolling = c.motion == "roll"
            if c.toward is None or rolling != (c.toward in ROLL_DIRECTIONS):
                names = ROLL_DIRECTIONS if rolling else tuple(ANATOMICAL_DIRECTIONS_LPS)
                raise InputError(f"trainee script {Path(path).name}: field "
                                 f"commands[{n}].toward {c.toward!r} does not go with "
                                 f"{c.do} {c.motion}; one of: {', '.join(names)}")
        if c.do == "fault" and c.kind is None:
            raise InputError(f"trainee script {Path(path).name}: field commands[{n}].kind is "
                             f"needed for 'fault'; one of: {', '.join(FAULT_KINDS)}")
    return script


def _do(session: TraineeSession, c: ScriptCommand) -> None:
    if c.do == "hold":
        session.hold(c.motion, c.toward, for_s=c.for_s)
    elif c.do == "step":
        session.step(c.motion, c.toward, c.amount)
    elif c.do == "fault":
        session.inject(c.kind, magnitude=c.magnitude, duration_s=c.duration_s)
    elif c.do == "report_fault":
        session.report_fault()
    elif c.do == "pause":
        session.pause()


def run_script(session: TraineeSession, script: ScriptFile, *, poll_s: float = 0.01
               ) -> Debrief:
    """Run ``script`` through a started session in real time; returns the debrief (of an
    unconfirmed session when no confirm got through within ``confirm_timeout_s``)."""
    commands = sorted(script.commands, key=lambda c: c.t_s)
    t0 = session.clock()
    confirm_since: float | None = None
    still_since: float | None = None
    while True:
        now = session.clock()
        session.tick()
        snap = session.logic.poll()
        while commands and commands[0].t_s <= now - t0 and confirm_since is None:
            command = commands.pop(0)
            if command.do == "confirm":
                confirm_since = now
            else:
                _do(session, command)
        moving = session.driver.moving
        still_since = None if moving else (still_since if still_since is not None else now)
        # confirm once the frames show the applicator at rest with the dose of that pose
        ready = confirm_since is not None and still_since is not None \
            and now - still_since > STILL_BEFORE_CONFIRM_S and session.ready_to_confirm(snap)
        if ready:
            if session.confirm().accepted:
                return session.debrief
            if now - confirm_since > script.confirm_timeout_s:
                log.warning("no confirm within %g s", script.confirm_timeout_s)
                return session.finish()
        if not commands and confirm_since is None:
            last = max((c.t_s + (c.for_s if c.do == "hold" else 0.0)
                        for c in script.commands), default=0.0)
            if now - t0 > last + script.confirm_timeout_s:
                return session.finish()
        time.sleep(poll_s)
