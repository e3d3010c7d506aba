"""What a recorded session says, as the content of its treatment record.

:func:`content_from_session` reads a session log (registrations, confirmations with their
beam and coverage, warnings, overrides) into a
:class:`~guidance.record.treatment_report.ReportContent`. With the case at hand
(``dose_fn``) the dose of the last confirmed pose is recomputed for the DVH, and the
recomputed coverage is checked against the logged one (the record says if they differ).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from guidance.record.screenshots import confirm_screenshots
from guidance.record.session_log import ChainCheck, SessionEvent, SessionLog
from guidance.record.treatment_report import CoverageRow, ReportContent
from guidance.treatment.dose_check import PlanLimits
from models.evaluation.dvh import DVH

#: Metrics tabulated for the target and for the other structures.
TARGET_METRICS = ("v90_percent", "d90_gy", "dmin_gy")
ORGAN_METRICS = ("dmax_gy", "d2_gy", "dmean_gy")

#: ``dvh_fn(patient_from_applicator, beam_payload) -> ({name: DVH}, beam extras)``: recomputes
#: the DVHs; the extras (machine, MU, output factor, ``mu_estimated``) join the beam table.
DvhFunction = Callable[[np.ndarray, Mapping[str, object]],
                       tuple[Mapping[str, DVH], Mapping[str, object]]]


def _time(event: SessionEvent) -> str:
    return _dt.datetime.fromtimestamp(event.t_unix_s, _dt.UTC).strftime("%H:%M:%S UTC")


def _registration(events: list[SessionEvent]) -> dict[str, object]:
    regs = [e for e in events if e.kind == "registration"]
    if not regs:
        return {}
    accepted = [e for e in regs if e.payload.get("accepted")]
    reg = (accepted or regs)[-1].payload
    out: dict[str, object] = {"method": reg.get("method"), "accepted": reg.get("accepted"),
                              "fre_mm": reg.get("fre_mm"),
                              "tre_predicted_mm": reg.get("tre_predicted_mm"),
                              "attempts": len(regs)}
    for name, value in sorted((reg.get("residuals_mm") or {}).items()):
        out[f"residual {name} (mm)"] = value
    return out


def _limit(name: str, metric: str, value: float, target: str, rx_gy: float | None,
           limits: PlanLimits | None) -> tuple[str, bool | None]:
    """(limit text, within it) of one number; ("", None) when no limit applies."""
    if limits is None:
        return "", None
    if name == target and metric == "v90_percent":
        return f">= {limits.v90_green_percent:g} %", value >= limits.v90_green_percent
    if name == target and metric == "d90_gy" and rx_gy:
        floor = rx_gy * limits.d90_green_percent_of_rx / 100.0
        return f">= {floor:.2f} Gy", value >= floor
    organ = limits.organ(name)
    if organ is not None and metric == "dmax_gy":
        return f"<= {organ.dmax_gy:g} Gy", value <= organ.dmax_gy
    return "", None


def coverage_rows(coverage: Mapping[str, Mapping[str, float]], target: str, *,
                  prescription_gy: float | None = None, limits: PlanLimits | None = None
                  ) -> list[CoverageRow]:
    """The coverage table: the target's V90, D90, Dmin, then each organ's Dmax, D2, Dmean,
    each against its limit when ``limits`` has one."""
    rows = []
    others = sorted(n for n in coverage if n != target)
    names = [target, *others] if target in coverage else others
    for name in names:
        metrics = TARGET_METRICS if name == target else ORGAN_METRICS
        for metric in metrics:
            value = coverage[name].get(metric)
            if value is not None:
                text, passed = _limit(name, metric, float(value), target, prescription_gy,
                                      limits)
                rows.append(CoverageRow(name, metric, float(value), text, passed))
    return rows


def _overrides(events: list[SessionEvent]) -> list[str]:
    out = []
    for e in events:
        reason = e.payload.get("override_reason") or e.payload.get("reason")
        if e.kind in ("action", "confirmed_pose") and reason:
            out.append(f"{_time(e)}: {e.payload.get('action', 'confirm')} — reason: {reason}")
    return out


def _warnings(events: list[SessionEvent]) -> list[str]:
    counts: dict[str, int] = {}
    for e in events:
        if e.kind == "warning":
            message = str(e.payload.get("message", ""))
            counts[message] = counts.get(message, 0) + 1
    return [m if n == 1 else f"{m} (x{n})" for m, n in counts.items()]


def anatomy_in_force(events: list[SessionEvent]) -> list[SessionEvent]:
    """The ``anatomy_edit`` records still in force at the end of the session: edits
    replayed in order with their ``anatomy_undo`` / ``anatomy_redo`` records."""
    done: list[SessionEvent] = []
    undone: list[SessionEvent] = []
    for e in events:
        if e.kind == "anatomy_edit":
            done.append(e)
            undone.clear()
        elif e.kind == "anatomy_undo" and done:
            undone.append(done.pop())
        elif e.kind == "anatomy_redo" and undone:
            done.append(undone.pop())
    return done


def edits_from_session(path: str | Path) -> list[dict[str, Any]]:
    """The edit JSON (:func:`models.patient.edits.edit_to_json`) of the anatomy edits in
    force at the end of a session log, for :meth:`models.patient.edits.EditList.from_json`."""
    with SessionLog.open(path, readonly=True) as slog:
        events = slog.events()
    return [dict(e.payload.get("edit", {})) for e in anatomy_in_force(events)]


def _anatomy(events: list[SessionEvent]) -> list[str]:
    """The edit list of the record ("BOWEL moved 35 mm, 4 deg, by tracked retractor,
    10:32:05 UTC")."""
    out = []
    for e in anatomy_in_force(events):
        how = e.payload.get("edit", {}).get("how", "")
        text = str(e.payload.get("description", ""))
        out.append(f"{text}, by {how}, {_time(e)}" if how else text)
    return out


def content_from_session(path: str | Path, *, target: str = "CTV",
                         dvh_fn: DvhFunction | None = None,
                         colors: Mapping[str, tuple[int, int, int]] | None = None,
                         patient: Mapping[str, str] | None = None,
                         limits: PlanLimits | None = None) -> ReportContent:
    """Report content of the session log at ``path``.

    Parameters
    ----------
    path : path-like
        A session log (read-only; a damaged log raises InputError naming it).
    target : str
        Target structure (first in the coverage table).
    dvh_fn : callable(patient_from_applicator, beam) -> ({name: DVH}, extras), optional
        Recomputes the DVHs (and MU) of the last confirmed pose (needs the case).
    colors : mapping name -> RGB, optional
        DVH curve colours.
    patient : mapping label -> text, optional
        Patient lines (name, ID) when the caller knows them; the log holds only the case
        identifier.
    limits : PlanLimits, optional
        Coverage and organ limits to judge the table against (their provenance is noted).
    """
    with SessionLog.open(path, readonly=True) as slog:   # refuses a broken hash chain
        meta = slog.meta()
        events = slog.events()
        chain = slog.verify()
    confirms = [e for e in events if e.kind == "confirmed_pose"]
    last = confirms[-1].payload if confirms else None
    logged_beam = dict(last["beam"]) if last else {}
    beam = {k: v for k, v in logged_beam.items() if "_from_" not in k}  # poses: not a table
    notes: list[str] = []
    rows = coverage_rows(last["coverage"], target, prescription_gy=beam.get("prescription_gy"),
                         limits=limits) if last else []
    if limits is not None and limits.provenance:
        notes.append(f"Limits: {limits.provenance}")
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if last is not None and dvh_fn is not None:
        dvhs, extras = dvh_fn(np.asarray(last["patient_from_applicator"], float), logged_beam)
        beam.update(extras)
        curves = {n: (d.dose_edges_gy, d.cumulative_percent) for n, d in dvhs.items()}
        notes += _recomputed_differs(last["coverage"], dvhs)
    elif last is not None:
        notes.append("DVH and monitor units not shown: give the case to recompute the "
                     "confirmed dose.")
    info = {"Case": meta.get("case_id", "") or "—", "Session": Path(path).name,
            "Log integrity": _integrity(chain),
            "Started": _dt.datetime.fromtimestamp(float(meta.get("created_unix_s", 0)),
                                                  _dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}
    mc_result, mc_note = mc_check_of(events, len(confirms))
    start = next((e for e in events if e.kind == "session_start"), None)
    planned = dict(start.payload.get("planned_beam") or {}) if start else {}
    if planned and start is not None and start.payload.get("machine"):
        planned.setdefault("machine", start.payload["machine"])
    return ReportContent(
        patient={**(patient or {}), **info}, beam=beam,
        planned_beam={k: v for k, v in planned.items() if k in beam},
        mu_estimated=bool(beam.get("mu_estimated", False)),
        confirmed=[{**{k: c.payload.get(k) for k in ("distance_to_plan_mm",
                                                      "angle_to_plan_deg", "user",
                                                      "override_reason")},
                    "time": _time(c)} for c in confirms],
        registration=_registration(events), dvh_curves=curves, dvh_colors=dict(colors or {}),
        prescription_gy=beam.get("prescription_gy"), coverage=rows,
        images=confirm_screenshots(Path(path), events),
        warnings=_warnings(events), overrides=_overrides(events), notes=notes,
        versions={"schema": meta.get("schema_version", "?")}, anatomy=_anatomy(events),
        mc_check=mc_result, mc_check_note=mc_note)


#: Session-log actions of the monitor's Monte Carlo check (guidance.monitor.mc_monitor).
MC_CHECK_ACTIONS = ("mc_check_started", "mc_check", "mc_check_failed", "mc_check_cancelled",
                    "mc_check_not_run")


def mc_check_of(events: list[SessionEvent], confirms: int) -> tuple[dict | None, str]:
    """The newest Monte Carlo check in a session: ``(result or None, note)``.

    The note says what a reader must know: no result (not run, failed, cancelled, or still
    running when the session ended), or a result that checks an earlier confirm than the
    last of the ``confirms``. ``(None, '')``: no check was asked for.
    """
    runs = [e for e in events if e.kind == "action" and e.payload.get("action") in
            MC_CHECK_ACTIONS]
    if not runs:
        return None, ""
    last = runs[-1].payload
    number = last.get("confirmed_number")
    action = last.get("action")
    result = None
    if action == "mc_check":
        result = {**dict(last.get("result") or {}), "confirmed_number": number}
        note = ""
    elif action == "mc_check_started":
        note = (f"The Monte Carlo check of confirm #{number} was started but the session "
                "ended before its result: no independent check is on record.")
    else:
        what = {"mc_check_failed": "failed", "mc_check_cancelled": "was cancelled",
                "mc_check_not_run": "was not run"}[action]
        note = (f"The Monte Carlo check of confirm #{number} {what}: "
                f"{last.get('reason', '')}. No independent check is on record.")
    if number is not None and number != confirms and confirms:
        note = (note + " " if note else "") + (
            f"This check is of confirm #{number}; the last confirm (#{confirms}) has none.")
    return result, note


def _integrity(check: ChainCheck) -> str:
    """The report's line on the log's hash chain."""
    if check.status == "intact":
        return f"hash chain intact ({check.records} records)"
    return "unchained (written before records were hash-chained; edits cannot be detected)"


def _recomputed_differs(logged: Mapping[str, Mapping[str, float]],
                        dvhs: Mapping[str, DVH]) -> list[str]:
    """Notes for every logged coverage number the recomputation does not reproduce."""
    out = []
    for name, dvh in dvhs.items():
        for metric in ("v90_percent", "dmax_gy"):
            was = logged.get(name, {}).get(metric)
            now = getattr(dvh.metrics, metric)
            if was is not None and not np.isclose(was, now, rtol=1e-6, atol=1e-6):
                out.append(f"recomputed {name} {metric} {now:.3f} differs from the logged "
                           f"{was:.3f}")
    return out
