"""A trainee's score, from what the session log recorded.

:func:`score_session` reads a rehearsal's session log and compares it with the scenario's
truth (the planned pose): the confirmed applicator pose against the plan, the coverage and
organ doses logged at confirm against the plan limits, the time to confirm, how often the
applicator was repositioned (settled doses before the confirm), the registration quality
and the warnings raised. Each component is kept (the debrief shows them) and turned into
points by the documented rules of :data:`RUBRIC`; the total is out of 100.

Scores are stored per trainee (:func:`record_score`, one JSON line per session in
``<sessions folder>/trainees/<name>.jsonl``, owner-only) so progress can be followed across
sessions (:func:`trainee_history`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from guidance.record.session_log import SessionLog, sessions_folder
from guidance.treatment.dose_check import PlanLimits
from guidance.treatment.plan_check import compare_to_plan
from models.base.errors import InputError

#: Points per component: (full points, value giving full points, value giving none).
#: Linear in between; "lower is better" when the first value is smaller than the second.
RUBRIC: dict[str, tuple[float, float, float]] = {
    "position_error_mm": (25.0, 1.0, 10.0),
    "angle_error_deg": (15.0, 1.0, 10.0),
    "target_v90_percent": (30.0, 98.0, 80.0),
    "organ_limit_violations": (15.0, 0.0, 2.0),
    "time_to_confirm_s": (5.0, 120.0, 600.0),
    "repositionings": (5.0, 1.0, 8.0),
    "registration_fre_mm": (5.0, 1.0, 3.0),
    "target_d90_percent_of_rx": (5.0, 100.0, 90.0),
    "registration_tre_mm": (5.0, 1.0, 3.0),
    "faults_noticed_percent": (10.0, 100.0, 0.0),
}
#: Components that count only when the session has them (a D90 logged at confirm, a
#: predicted TRE, an injected fault); without them the total is out of the others.
OPTIONAL_COMPONENTS = ("target_d90_percent_of_rx", "registration_tre_mm",
                       "faults_noticed_percent")
#: Session-log actions of a rehearsal: a fault injected, the trainee reporting a fault or
#: pausing (either within the fault's ``notice_within_s`` counts as noticing it).
FAULT_INJECTED, FAULT_REPORTED, PAUSED = "fault_injected", "fault_reported", "paused"
#: Session-log action of a simulated applicator starting to move after a rest; when a
#: session has them, repositionings = their number - 1 (the first is the approach).
APPLICATOR_MOVED = "applicator_moved"
#: Session-log action starting one trainee rehearsal (scenario, trainee, plan).
TRAINEE_SCENARIO = "trainee_scenario"
#: Seconds to notice a fault when its event does not say.
DEFAULT_NOTICE_WITHIN_S = 10.0


def _points(component: str, value: float | None) -> float:
    full, good, bad = RUBRIC[component]
    if value is None or not np.isfinite(value):
        return 0.0
    share = (value - bad) / (good - bad)
    return float(full * np.clip(share, 0.0, 1.0))


@dataclass(frozen=True)
class TraineeScore:
    """The components of one rehearsal and their points (see :data:`RUBRIC`).

    ``confirmed`` False (no confirm) scores only the registration.
    """

    session: str
    trainee: str
    confirmed: bool
    components: dict[str, float | None]
    points: dict[str, float]
    warnings: int
    when_unix_s: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total(self) -> float:
        """Points out of 100: the points over the full points of the components that
        apply (an optional component without a value does not)."""
        full = sum(RUBRIC[name][0] for name, value in self.components.items()
                   if value is not None or name not in OPTIONAL_COMPONENTS)
        return round(100.0 * sum(self.points.values()) / full, 1) if full else 0.0

    def lines(self) -> list[str]:
        """The debrief: one line per component."""
        out = [f"score {self.total:.0f} / 100" + ("" if self.confirmed else " (not confirmed)")]
        for name, value in self.components.items():
            shown = "—" if value is None else f"{value:.2f}"
            out.append(f"  {name:<24} {shown:>8}   {self.points.get(name, 0.0):5.1f} / "
                       f"{RUBRIC[name][0]:g}")
        out += [f"  note: {n}" for n in self.notes]
        return out


def _organ_violations(coverage: Mapping[str, Mapping[str, float]],
                      limits: PlanLimits | None) -> int:
    """Organs over their Dmax or V90 limit (each organ counts once)."""
    if limits is None:
        return 0
    count = 0
    for name, metrics in coverage.items():
        organ = limits.organ(name)
        if organ is None:
            continue
        over_v90 = organ.v90_max_percent is not None and \
            float(metrics.get("v90_percent", 0.0)) > organ.v90_max_percent
        if float(metrics.get("dmax_gy", 0.0)) > organ.dmax_gy or over_v90:
            count += 1
    return count


def _repositionings(events: list, until_unix_s: float) -> float:
    """Placements after the first before ``until``: motion bursts of a simulated
    applicator (:data:`APPLICATOR_MOVED`) in a trainee rehearsal, else settled doses."""
    before = [e for e in events if e.t_unix_s <= until_unix_s]
    actions = [e.payload.get("action") for e in before if e.kind == "action"]
    if APPLICATOR_MOVED in actions or TRAINEE_SCENARIO in actions:
        return float(max(actions.count(APPLICATOR_MOVED) - 1, 0))
    return float(sum(1 for e in before if e.kind == "dose"))


def faults_noticed(events: list) -> tuple[int, int]:
    """(noticed, injected): a fault is noticed when the trainee reported a fault or paused
    (not: resumed) within its ``notice_within_s`` (session-log actions
    :data:`FAULT_INJECTED`, :data:`FAULT_REPORTED`, :data:`PAUSED`)."""
    actions = [e for e in events if e.kind == "action"]
    faults = [e for e in actions if e.payload.get("action") == FAULT_INJECTED]
    reactions = [e.t_unix_s for e in actions
                 if e.payload.get("action") == FAULT_REPORTED
                 or (e.payload.get("action") == PAUSED and e.payload.get("on", True))]
    noticed = 0
    for fault in faults:
        window = float(fault.payload.get("notice_within_s", DEFAULT_NOTICE_WITHIN_S))
        if any(fault.t_unix_s <= t <= fault.t_unix_s + window for t in reactions):
            noticed += 1
    return noticed, len(faults)


def score_session(path: str | Path, planned_patient_from_applicator: np.ndarray, *,
                  trainee: str = "", target: str = "CTV",
                  limits: PlanLimits | None = None, since_seq: int = 0) -> TraineeScore:
    """Score the rehearsal recorded in the session log at ``path`` against the plan.

    ``since_seq``: only events from that sequence number on (one rehearsal of several in
    one session log, e.g. scenarios started one after the other in the monitor).
    """
    with SessionLog.open(path, readonly=True) as slog:
        events = [e for e in slog.events() if e.seq >= since_seq]
    if not events:
        raise InputError(f"session {path}: no events recorded; nothing to score")
    start = events[0].t_unix_s
    regs = [e for e in events if e.kind == "registration" and e.payload.get("accepted")]
    confirms = [e for e in events if e.kind == "confirmed_pose"]
    components: dict[str, float | None] = dict.fromkeys(RUBRIC)
    components["registration_fre_mm"] = regs[-1].payload.get("fre_mm") if regs else None
    components["registration_tre_mm"] = (regs[-1].payload.get("tre_predicted_mm")
                                         if regs else None)
    notes = []
    if confirms:
        first = confirms[0]
        pose = np.asarray(first.payload["patient_from_applicator"], float)
        dev = compare_to_plan(pose, planned_patient_from_applicator)
        coverage = first.payload.get("coverage", {})
        d90_gy = coverage.get(target, {}).get("d90_gy")
        rx_gy = first.payload.get("beam", {}).get("prescription_gy")
        noticed, injected = faults_noticed([e for e in events
                                            if e.t_unix_s <= first.t_unix_s])
        components.update(
            position_error_mm=dev.distance_mm, angle_error_deg=dev.angle_deg,
            target_v90_percent=coverage.get(target, {}).get("v90_percent"),
            target_d90_percent_of_rx=(100.0 * d90_gy / rx_gy if d90_gy is not None and rx_gy
                                      else None),
            faults_noticed_percent=100.0 * noticed / injected if injected else None,
            organ_limit_violations=float(_organ_violations(coverage, limits)),
            time_to_confirm_s=first.t_unix_s - start,
            repositionings=_repositionings(events, first.t_unix_s))
        if len(confirms) > 1:
            notes.append(f"{len(confirms)} confirms; the first is scored")
    else:
        notes.append("no pose was confirmed")
    points = {name: _points(name, value) for name, value in components.items()}
    if not confirms:
        points = {k: (v if k.startswith("registration_") else 0.0) for k, v in points.items()}
    return TraineeScore(session=Path(path).name, trainee=trainee, confirmed=bool(confirms),
                        components=components, points=points,
                        warnings=sum(1 for e in events if e.kind == "warning"),
                        when_unix_s=start, notes=tuple(notes))


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


def trainee_file(name: str, folder: str | Path | None = None) -> Path:
    """Where ``name``'s scores are kept; refuses names that are not plain words."""
    if not _NAME.match(name or ""):
        raise InputError(f"trainee name {name!r}: use letters, digits, space, '.', '_' or '-' "
                         "(at most 64)")
    base = Path(folder) if folder is not None else sessions_folder() / "trainees"
    return base / f"{name.strip().replace(' ', '_')}.jsonl"


def record_score(score: TraineeScore, *, folder: str | Path | None = None) -> Path:
    """Append ``score`` to its trainee's history (owner-only file); returns the file."""
    path = trainee_file(score.trainee, folder)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    line = json.dumps({**asdict(score), "total": score.total}, allow_nan=False)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(line + "\n")
    return path


def trainee_history(name: str, *, folder: str | Path | None = None) -> list[dict]:
    """Every recorded score of ``name``, oldest first (damaged lines are skipped and
    counted in the last entry's ``"skipped"``)."""
    path = trainee_file(name, folder)
    if not path.is_file():
        raise InputError(f"no scores for trainee {name!r} (looked in {path.parent})")
    out, skipped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            skipped += 1
    if skipped and out:
        out[-1]["skipped"] = skipped
    return sorted(out, key=lambda s: s.get("when_unix_s", 0.0))
