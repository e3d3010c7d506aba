"""Replay a recorded session: the same loop, the same dose engine, the logged numbers checked.

A session log (:mod:`guidance.record.session_log`) holds the tracking stream
(:mod:`guidance.record.tracking_record`: every frame's stamp, size and raw tool poses, the
registrations applied) and the events the team saw (doses, confirms with their coverage).
:func:`replay_session`:

1. feeds the tracking stream through a new
   :class:`~guidance.loop.guidance_loop.GuidanceLoop` (same options, same pose filter) and
   checks that every frame's ``patient_from_applicator`` is the recorded one, bit for bit;
2. for a session of ``iort demo`` (which computes the dose synchronously), re-runs the dose
   trigger (:func:`guidance.treatment.dose_service.dose_trigger`) on the replayed frames and
   checks that the dose was triggered at the same poses;
3. recomputes every logged dose and confirmed pose at the pose the engine computed it at
   (``dose_patient_from_applicator``) with the logged beam, through the same dose function
   and DVH rule (:func:`~guidance.treatment.dose_service.evaluate_dose`), and compares
   every logged coverage number exactly.

A damaged log (:func:`read_session`) is read as far as it is intact: the problems are
listed, and what was read is replayed.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from guidance.loop.guidance_loop import FrameProcessed, GuidanceLoop
from guidance.record.session_log import EVENT_KINDS, SessionEvent, SessionLog
from guidance.record.sqlite_salvage import salvage_table_rows
from guidance.record.tracking_record import ReplayDevice, ReplaySource, tracker_setup
from guidance.treatment.dose_service import (
    DEFAULT_MACHINE,
    HIDDEN_ROI_TYPES,
    BeamChoice,
    DoseScheduler,
    coverage_numbers,
    dose_trigger,
    electron_dose_function,
    evaluate_dose,
)
from models.base.errors import InputError
from models.evaluation.dvh import DVH, structure_bounds_mm
from models.patient.case import Case
from models.patient.volume import Volume

_BEAM_FIELDS = {f.name for f in fields(BeamChoice)}


# ---------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class SessionRead:
    """The events of a session log, and what could not be read of it."""

    path: Path
    meta: dict[str, str]
    events: list[SessionEvent]
    problems: list[str] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[SessionEvent]:
        return [e for e in self.events if e.kind == kind]


def read_session(path: str | Path) -> SessionRead:
    """Read a session log; a damaged one is salvaged as far as it is intact.

    Raises InputError naming the file when nothing at all can be read (not a session log,
    an empty or destroyed file).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"session log {path}: no such file; give the .sqlite file that "
                         "'iort run' or 'iort demo' wrote")
    try:
        with SessionLog.open(path, readonly=True) as slog:
            return SessionRead(path, slog.meta(), slog.events())
    except (InputError, sqlite3.Error, ValueError) as exc:
        first = str(exc)
    return _salvage(path, first)


def _salvage(path: Path, why: str) -> SessionRead:
    """The events still on disk of a log SQLite refuses, page by page."""
    text = why if why.startswith("session log") else f"session log {path.name}: {why}"
    problems = [f"{text} - replaying what is intact"]
    try:
        rows, damaged = salvage_table_rows(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"session log {path}: cannot be read at all ({exc}); it cannot be "
                         "replayed") from None
    found: dict[int, SessionEvent] = {}
    bad = 0
    for rowid, values in rows:
        if len(values) < 5 or not (isinstance(values[3], str) and isinstance(values[4], str)
                                   and all(isinstance(v, (int, float)) for v in values[1:3])):
            continue   # a row of another table (meta, sqlite_master)
        if values[3] not in EVENT_KINDS:
            continue
        try:
            found[rowid] = SessionEvent(rowid, float(values[1]), float(values[2]), values[3],
                                        json.loads(values[4]))
        except ValueError:
            bad += 1
    if not found:
        raise InputError(f"session log {path}: no event could be recovered ({why}); it "
                         "cannot be replayed")
    events = [found[k] for k in sorted(found)]
    missing = (events[-1].seq - len(events))
    if missing > 0:
        problems.append(f"{missing} event(s) between #1 and #{events[-1].seq} are lost")
    if damaged or bad:
        problems.append(f"{damaged + bad} damaged record(s) skipped")
    if events[-1].kind != "session_end":
        problems.append(f"the log ends at event #{events[-1].seq} ({events[-1].kind}) "
                        "without session_end: later events may be lost")
    start = next((e for e in events if e.kind == "session_start"), None)
    meta = {"case_id": str(start.payload.get("case_id", ""))} if start else {}
    return SessionRead(path, meta, events, problems)


# ---------------------------------------------------------------------------- checking
@dataclass(frozen=True)
class NumberCheck:
    """One logged number and its replayed value."""

    seq: int
    kind: str
    key: str
    logged: float | None
    replayed: float | None

    @property
    def equal(self) -> bool:
        a, b = self.logged, self.replayed
        if a is None or b is None:   # the log stores NaN/inf as null
            return a is None and (b is None or not math.isfinite(b))
        return a == b


@dataclass
class ReplayResult:
    """What a replay reproduced.

    Attributes
    ----------
    frames : int
        Frames of the tracking stream fed through the loop.
    pose_mismatches : list of int
        Frame indices whose replayed applicator pose is not the recorded one.
    triggers_logged, triggers_replayed : list of (4, 4) arrays
        ``iort demo`` only: poses the dose was triggered at, logged and replayed.
    checks : list of NumberCheck
        Every logged coverage number of the doses and confirms, with its replayed value.
    problems : list of str
        What could not be read or replayed (the replay goes on).
    """

    frames: int = 0
    pose_mismatches: list[int] = field(default_factory=list)
    triggers_logged: list[np.ndarray] = field(default_factory=list)
    triggers_replayed: list[np.ndarray] = field(default_factory=list)
    checks: list[NumberCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    confirmed_dvhs: list[tuple[int, dict[str, DVH]]] = field(default_factory=list)

    @property
    def mismatches(self) -> list[NumberCheck]:
        return [c for c in self.checks if not c.equal]

    @property
    def triggers_match(self) -> bool:
        a, b = self.triggers_logged, self.triggers_replayed
        return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))

    @property
    def reproduced(self) -> bool:
        """Every pose, trigger and number reproduced, and nothing left unreadable."""
        return (not self.pose_mismatches and self.triggers_match and not self.mismatches
                and not self.problems)

    def summary(self) -> dict[str, Any]:
        return {"frames": self.frames, "pose_mismatches": len(self.pose_mismatches),
                "dose_triggers_logged": len(self.triggers_logged),
                "dose_triggers_replayed": len(self.triggers_replayed),
                "dose_triggers_match": self.triggers_match,
                "numbers_checked": len(self.checks),
                "numbers_different": len(self.mismatches),
                "differences": [{"event": c.seq, "kind": c.kind, "number": c.key,
                                 "logged": c.logged, "replayed": c.replayed}
                                for c in self.mismatches[:50]],
                "problems": list(self.problems), "reproduced": self.reproduced}


def beam_choice_of(beam: Mapping[str, Any]) -> BeamChoice:
    """The :class:`BeamChoice` of a logged beam payload (other keys ignored; the old
    ``applicator_mm`` key read as the diameter)."""
    values = {k: v for k, v in beam.items() if k in _BEAM_FIELDS}
    if "applicator_diameter_mm" not in values and "applicator_mm" in beam:
        values["applicator_diameter_mm"] = beam["applicator_mm"]
    return BeamChoice(**values)


class LoggedDose:
    """Recomputes a logged dose (a ``dose`` or ``confirmed_pose`` event) on the case.

    The one rule for recomputing what the monitor or the demo logged: the beam payload
    gives the :class:`BeamChoice` and the machine; the pose is the one the engine computed
    at (``dose_patient_from_applicator``; else the event's pose); the DVHs follow
    :func:`evaluate_dose` on the structures the monitor evaluates. Results are cached per
    (pose, beam), each on a fresh engine (no reuse of a neighbouring pose).
    """

    def __init__(self, case: Case, *, default_machine: str = DEFAULT_MACHINE,
                 grid_mm: float = 2.0) -> None:
        self.case = case
        self.default_machine = default_machine
        self.grid_mm = float(grid_mm)
        self.bounds = {n: structure_bounds_mm(case.ct, s.mask)
                       for n, s in case.structures.items() if s.roi_type not in HIDDEN_ROI_TYPES}
        self._cache: dict[tuple, tuple[Any, BeamChoice]] = {}

    @staticmethod
    def pose_of(payload: Mapping[str, Any]) -> np.ndarray | None:
        beam = payload.get("beam") or {}
        value = next((v for v in (beam.get("dose_patient_from_applicator"),
                                  payload.get("patient_from_applicator"),
                                  beam.get("patient_from_applicator")) if v is not None), None)
        if value is None:
            return None
        m = np.asarray(value, dtype=np.float64)
        return m.reshape(4, 4) if m.size == 16 and np.all(np.isfinite(m)) else None

    def choice_of(self, beam: Mapping[str, Any]) -> tuple[BeamChoice, str]:
        return beam_choice_of(beam), str(beam.get("machine") or self.default_machine)

    def dose(self, pose: np.ndarray, beam: Mapping[str, Any]):
        """The engine's result (dose, MU, ...) for a logged pose and beam payload."""
        choice, machine = self.choice_of(beam)
        key = (pose.tobytes(), choice, machine)
        hit = self._cache.get(key)
        if hit is None:
            result = electron_dose_function(machine, grid_mm=self.grid_mm)(self.case, pose,
                                                                           choice)
            hit = self._cache[key] = (result, choice)
        return hit[0]

    def dvhs(self, pose: np.ndarray, beam: Mapping[str, Any]
             ) -> tuple[dict[str, DVH], tuple[str, ...]]:
        choice, _ = self.choice_of(beam)
        return self.evaluate(self.dose(pose, beam).dose, choice)

    def evaluate(self, dose: Volume, choice: BeamChoice, names: Sequence[str] | None = None
                 ) -> tuple[dict[str, DVH], tuple[str, ...]]:
        """DVHs of ``dose`` by the monitor's rule, for ``names`` (default: every organ and
        target the monitor evaluates); and the names outside the dose grid."""
        bounds = self.bounds if names is None else {n: self.bounds[n] for n in names
                                                    if n in self.bounds}
        return evaluate_dose(self.case, dose, choice, bounds)


def replay_session(read: SessionRead, case: Case | None, *, speed: float = 0.0,
                   grid_mm: float | None = None,
                   on_confirm: Callable[[SessionEvent, dict[str, DVH]], None] | None = None,
                   sleep: Callable[[float], None] = time.sleep) -> ReplayResult:
    """Replay ``read`` (see the module docstring); ``case`` is needed for the dose checks.

    Parameters
    ----------
    speed : float
        0 replays as fast as possible; 1 at the recorded pace (frame stamps); 2 twice as fast.
    grid_mm : float, optional
        Dose grid of the recomputation (default: the one the session logged, else 2 mm).
    on_confirm : callable(event, dvhs), optional
        Called with the recomputed DVHs of every confirmed pose (e.g. to draw them).
    """
    result = ReplayResult(problems=list(read.problems))
    _replay_tracking(read, result, speed=speed, sleep=sleep)
    if case is None:
        if read.of_kind("dose") or read.of_kind("confirmed_pose"):
            result.problems.append("doses not rechecked: give the case (--case)")
        return result
    start = read.of_kind("session_start")
    meta = start[0].payload if start else {}
    grid = float(grid_mm if grid_mm is not None else meta.get("dose_grid_mm") or 2.0)
    machine = str(meta.get("machine") or DEFAULT_MACHINE)
    doses = LoggedDose(case, default_machine=machine, grid_mm=grid)
    so_far: list[SessionEvent] = []
    for event in read.events:
        so_far.append(event)
        if event.kind in ANATOMY_KINDS:
            # the dose after an edit is the dose on the edited anatomy
            edited = _edited_case(case, so_far, result)
            doses = LoggedDose(edited, default_machine=machine, grid_mm=grid)
        elif event.kind in ("dose", "confirmed_pose"):
            _check_dose_event(event, doses, result, on_confirm)
    return result


#: Session-log kinds that change the anatomy the dose is computed on.
ANATOMY_KINDS = ("anatomy_edit", "anatomy_undo", "anatomy_redo")


def _edited_case(case: Case, events: Sequence[SessionEvent], result: ReplayResult) -> Case:
    """``case`` with the anatomy edits in force after ``events`` (the same derivation as
    the live monitor: :meth:`models.patient.edits.EditList.apply` of the original)."""
    from guidance.record.session_report import anatomy_in_force
    from models.patient.edits import EditList

    in_force = anatomy_in_force(list(events))
    try:
        edits = EditList.from_json([dict(e.payload.get("edit", {})) for e in in_force],
                                   source=f"session log event #{events[-1].seq}")
        return edits.apply(case)
    except InputError as exc:
        result.problems.append(f"anatomy edits up to event #{events[-1].seq} not applied "
                               f"({exc}); later doses are rechecked on the anatomy before")
        return case


@dataclass
class ReplayLoop:
    """A guidance loop over a session's recorded tracking stream (see :func:`replay_loop`)."""

    loop: GuidanceLoop
    records: list[dict[str, Any]]
    camera_matrix: np.ndarray
    problems: list[str]


def replay_loop(read: SessionRead, *, speed: float = 0.0,
                sleep: Callable[[float], None] = time.sleep) -> ReplayLoop:
    """A new :class:`GuidanceLoop` fed with the session's frames, registrations applied in
    stream order (the monitor shows a replay through this loop).

    Raises InputError when the session holds no tracking stream.
    """
    setups = read.of_kind("tracker")
    if not setups:
        raise InputError(f"session log {read.path.name} holds no tracking stream (recorded "
                         "by an older version, or the session never ran a loop): only its "
                         "numbers can be rechecked (--headless)")
    options, geometry, names, is_camera = tracker_setup(setups[0])
    holder = ReplayResult()
    records = _frame_records(read.of_kind("frames"), holder)
    device = ReplayDevice(records, geometry, names, is_camera)
    loop_box: list[GuidanceLoop] = []

    def apply(record: Mapping[str, Any]) -> None:
        if "reg" in record and loop_box:
            reg = record["reg"]
            loop_box[0].set_registration(
                None if reg is None else np.asarray(reg, dtype=np.float64).reshape(4, 4),
                fre_mm=record.get("fre"), method=str(record.get("method", "replayed")))

    payload = setups[0].payload
    k = payload.get("camera_matrix")
    camera_matrix = np.eye(3) if k is None else np.asarray(k, dtype=np.float64).reshape(3, 3)
    video = payload.get("video")
    source = ReplaySource(records, on_record=apply, pace=_pacer(speed, sleep),
                          video=None if not video else _inside(read.path.parent, str(video)))
    loop = GuidanceLoop(source, (), camera_matrix, device=device, options=options)
    size = payload.get("calibrated_size_px")
    if size:
        loop.calibrated_size_px = (int(size[0]), int(size[1]))
    loop_box.append(loop)
    return ReplayLoop(loop, records, camera_matrix, holder.problems)


def _inside(folder: Path, name: str) -> Path | None:
    """``folder / name`` if it stays inside ``folder`` (a log cannot point elsewhere)."""
    path = (folder / name).resolve()
    return path if path.is_relative_to(folder.resolve()) else None


def _replay_tracking(read: SessionRead, result: ReplayResult, *, speed: float,
                     sleep: Callable[[float], None]) -> None:
    if not read.of_kind("tracker"):
        if read.of_kind("frames"):
            result.problems.append("frames recorded without their tracker set-up; tracking "
                                   "not replayed")
        return
    try:
        replay = replay_loop(read, speed=speed, sleep=sleep)
    except InputError as exc:
        result.problems.append(str(exc))
        return
    result.problems.extend(replay.problems)
    loop, records = replay.loop, replay.records
    by_index = {int(r["i"]): r for r in records if "i" in r}
    is_demo = read.meta.get("program") == "iort demo" or any(
        e.payload.get("program") == "iort demo" for e in read.of_kind("session_start"))
    scheduler = DoseScheduler()
    beam = _demo_beam(read) if is_demo else None

    def on_event(event: object) -> None:
        if not isinstance(event, FrameProcessed):
            return
        frame_result = event.result
        result.frames += 1
        recorded = by_index.get(frame_result.frame.index, {})
        if "app" in recorded and not _same_pose(recorded["app"],
                                                frame_result.patient_from_applicator):
            result.pose_mismatches.append(frame_result.frame.index)
        if beam is not None:
            pose = dose_trigger(scheduler, frame_result, beam)
            if pose is not None:
                result.triggers_replayed.append(pose)

    loop.subscribe(on_event)
    loop.run()
    if is_demo:
        for event in read.of_kind("dose"):
            pose = event.payload.get("beam", {}).get("patient_from_applicator")
            if pose is not None:
                result.triggers_logged.append(np.asarray(pose, dtype=np.float64).reshape(4, 4))


def _frame_records(batches: Sequence[SessionEvent], result: ReplayResult
                   ) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for batch in batches:
        got = batch.payload.get("records")
        if isinstance(got, list):
            records.extend(r for r in got if isinstance(r, dict))
        else:
            result.problems.append(f"event #{batch.seq} (frames) holds no records; skipped")
    return records


def _same_pose(recorded: Sequence[float] | None, replayed: np.ndarray | None) -> bool:
    if recorded is None or replayed is None:
        return recorded is None and replayed is None
    return bool(np.array_equal(np.asarray(recorded, dtype=np.float64).reshape(4, 4), replayed))


def _demo_beam(read: SessionRead) -> BeamChoice | None:
    """The beam the demo's dose trigger compared (its first logged dose's beam)."""
    doses = read.of_kind("dose")
    if not doses:
        return None
    try:
        return beam_choice_of(doses[0].payload.get("beam", {}))
    except (TypeError, InputError):
        return None


def _pacer(speed: float, sleep: Callable[[float], None]) -> Callable[[float], None] | None:
    if not speed > 0:
        return None
    origin: list[float] = []

    def pace(t_s: float) -> None:
        if not math.isfinite(t_s):
            return
        now = time.monotonic()
        if not origin:
            origin.extend((t_s, now))
            return
        wait = origin[1] + (t_s - origin[0]) / speed - now
        if wait > 0:
            sleep(min(wait, 5.0))
    return pace


def _check_dose_event(event: SessionEvent, doses: LoggedDose, result: ReplayResult,
                      on_confirm: Callable[[SessionEvent, dict[str, DVH]], None] | None) -> None:
    payload = event.payload
    beam = payload.get("beam") or {}
    coverage = payload.get("coverage") or {}
    pose = LoggedDose.pose_of(payload)
    if pose is None:
        result.problems.append(f"event #{event.seq} ({event.kind}) has no usable pose; "
                               "its numbers are not rechecked")
        return
    try:
        dose = doses.dose(pose, beam)
        structures = {n: v for n, v in coverage.items() if isinstance(v, Mapping)}
        dvhs: dict[str, DVH] = {}
        if structures or event.kind == "confirmed_pose":
            dvhs, outside = doses.dvhs(pose, beam)
            replayed = coverage_numbers({n: d.metrics for n, d in dvhs.items()}, outside)
            for name, numbers in structures.items():
                for key, logged in numbers.items():
                    value = replayed.get(name, {}).get(key)
                    result.checks.append(NumberCheck(event.seq, event.kind, f"{name}.{key}",
                                                     logged, value))
        for key, attr in (("dmax_gy", "dmax_gy"), ("mu", "mu"),
                          ("prescription_gy", "prescription_gy")):
            if key in coverage and not isinstance(coverage[key], Mapping):
                result.checks.append(NumberCheck(event.seq, event.kind, key, coverage[key],
                                                 float(getattr(dose, attr))))
    except (InputError, TypeError, ValueError) as exc:
        result.problems.append(f"event #{event.seq} ({event.kind}): not recomputed ({exc})")
        return
    if event.kind == "confirmed_pose":
        result.confirmed_dvhs.append((event.seq, dvhs))
        if on_confirm is not None:
            on_confirm(event, dvhs)


def case_check(read: SessionRead, case: Case) -> str | None:
    """Why ``case`` is not the one the session was recorded on (None: it is, or unknown)."""
    start = read.of_kind("session_start")
    want = start[0].payload.get("ct_sha256") if start else None
    if not want:
        return None
    have = case.ct.digest_sha256()
    if have != want:
        return (f"the case's CT (SHA-256 {have[:12]}...) is not the one session "
                f"{read.path.name} was recorded on ({str(want)[:12]}...); give that case")
    return None


def structures_of(events: Sequence[SessionEvent]) -> list[str]:
    """Structures named in the logged coverage (for plots and tables)."""
    names: dict[str, None] = {}
    for e in events:
        for name, value in (e.payload.get("coverage") or {}).items():
            if isinstance(value, Mapping):
                names[name] = None
    return list(names)
