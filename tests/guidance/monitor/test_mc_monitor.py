"""The monitor's Monte Carlo second check: started by Confirm, never waited for, its progress
and verdict in the snapshot, the session log and the treatment record."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from guidance.monitor.feed import ScriptedFeed
from guidance.monitor.logic import MonitorLogic
from guidance.monitor.mc_monitor import McCheckMonitor
from guidance.monitor.rehearsal import phantom_view, slab_dose
from guidance.record.session_log import SessionLog
from guidance.record.session_report import content_from_session
from guidance.record.treatment_report import write_pdf
from guidance.treatment.mc_runner import McProgress

#: A real result: the phantom plan's check (benchmarks/mc/phantom_check.py).
PHANTOM_RESULT = json.loads((Path(__file__).parents[2] / "data" / "mc" /
                             "mc_check_phantom.json").read_text())["runs"][0]


class FakeRunner:
    """Stands in for McCheckRunner: a slow start, then whatever the test hands it."""

    made: ClassVar[list[FakeRunner]] = []

    def __init__(self, case, spec, **options) -> None:
        self.case, self.spec, self.options = case, spec, options
        self.progress = McProgress(0.0)
        self.started = threading.Event()
        self.cancelled = self.closed = False
        self.start_error: Exception | None = None
        FakeRunner.made.append(self)

    def start(self) -> None:
        time.sleep(0.3)              # a spawned child reads the pickled case first
        if self.start_error is not None:
            raise self.start_error
        self.started.set()

    def poll(self) -> McProgress:
        return self.progress

    def cancel(self) -> None:
        self.cancelled = True

    def close(self, timeout_s: float = 30.0) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def view():
    return phantom_view()


def _actions(slog: SessionLog, prefix: str = "mc_check") -> list[dict]:
    return [e.payload for e in slog.events("action")
            if str(e.payload["action"]).startswith(prefix)]


def _wait(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_progress_then_verdict_recorded_once(view, tmp_path) -> None:
    from models.dicom.rt_export import resolve_plan

    FakeRunner.made.clear()
    slog = SessionLog.create(tmp_path / "s.sqlite")
    mc = McCheckMonitor(FakeRunner, session_log=slog, grid_mm=4.0)
    spec = resolve_plan(view.case)
    t0 = time.perf_counter()
    status = mc.start(view.case, spec, confirmed_seq=7, number=1, target="CTV")
    assert time.perf_counter() - t0 < 0.2          # the slow start is not waited for
    assert status.state == "starting" and not status.finished
    runner = FakeRunner.made[-1]
    assert runner.options == {"grid_mm": 4.0, "target": "CTV"}
    assert mc.poll().state == "starting"           # still starting: no poll of the child
    _wait(runner.started.is_set)
    runner.progress = McProgress(0.426)
    _wait(lambda: mc.poll().state == "running")
    assert mc.poll().line == "MC check of confirm #1: 43 %"
    runner.progress = McProgress(1.0, result=PHANTOM_RESULT)
    done = mc.poll()
    assert done.state == "disagree" and done.finished and done.color == "#ff6a6a"
    assert "DISAGREE" in done.line and "gamma 3%/2mm 79.4 %" in done.line
    assert done.line.splitlines()[1] == ("  gamma 2%/2mm 75.4 % < 80 %; CTV V90 differs by "
                                         "+7.4 points (limit 5) (+1 more)")
    assert mc.poll() is done                       # recorded once
    _wait(lambda: runner.closed)
    kinds = [a["action"] for a in _actions(slog)]
    assert kinds == ["mc_check_started", "mc_check"]
    started, result = _actions(slog)
    assert started["confirmed_seq"] == 7 and started["beam"]["energy_mev"] == 8.0
    assert result["result"]["gamma_3_2_percent"] == 79.36 and result["confirmed_number"] == 1
    slog.close()


def test_new_confirm_supersedes_and_failures_are_shown(view, tmp_path) -> None:
    from models.dicom.rt_export import resolve_plan

    FakeRunner.made.clear()
    slog = SessionLog.create(tmp_path / "s.sqlite")
    mc = McCheckMonitor(FakeRunner, session_log=slog)
    spec = resolve_plan(view.case)
    mc.start(view.case, spec, confirmed_seq=3, number=1)
    first = FakeRunner.made[-1]
    _wait(first.started.is_set)
    first.progress = McProgress(0.2)
    _wait(lambda: mc.poll().state == "running")
    mc.start(view.case, spec, confirmed_seq=9, number=2)
    _wait(lambda: first.closed)                    # the old child is stopped
    cancelled = [a for a in _actions(slog) if a["action"] == "mc_check_cancelled"]
    assert cancelled[0]["reason"] == "superseded by confirm #2"
    assert cancelled[0]["confirmed_number"] == 1
    second = FakeRunner.made[-1]
    _wait(second.started.is_set)
    second.progress = McProgress(0.3, error="no Monte Carlo medium for a 'gold' disc")
    _wait(lambda: mc.poll().finished)
    status = mc.poll()
    assert status.state == "failed" and "gold" in status.line and "#2" in status.line
    assert "gold" in slog.last("warning").payload["message"]
    # a start that raises (e.g. the case cannot be pickled) is a failure, not a crash
    FakeRunner.made.clear()
    broken = McCheckMonitor(lambda *a, **k: _raising_runner(*a, **k), session_log=slog)
    broken.start(view.case, spec, confirmed_seq=11, number=3)
    _wait(lambda: broken.poll().finished)
    assert broken.poll().state == "failed" and "did not start" in broken.poll().line
    # a child that never comes up (e.g. it died reading the case) fails after the timeout
    stuck = McCheckMonitor(lambda *a, **k: _hanging_runner(*a, **k), session_log=slog)
    stuck.start_timeout_s = 0.2
    stuck.start(view.case, spec, confirmed_seq=11, number=3)
    _wait(lambda: stuck.poll().finished)
    assert stuck.poll().state == "failed" and "did not start within 0.2 s" in stuck.poll().line
    _hanging_runner.release.set()
    # not installed / not applicable: said on screen and in the log, nothing started
    off = McCheckMonitor(FakeRunner, session_log=slog, unavailable="ompmc is not installed")
    assert off.start(view.case, spec, confirmed_seq=12, number=4).state == "unavailable"
    assert FakeRunner.made == [_raising_runner.last, _hanging_runner.last]
    assert _actions(slog)[-1]["reason"] == "ompmc is not installed"
    slog.close()


def _raising_runner(case, spec, **options) -> FakeRunner:
    runner = FakeRunner(case, spec, **options)
    runner.start_error = RuntimeError("cannot pickle 'Lock'")
    _raising_runner.last = runner
    return runner


def _hanging_runner(case, spec, **options) -> FakeRunner:
    runner = FakeRunner(case, spec, **options)
    runner.start = _hanging_runner.release.wait
    _hanging_runner.last = runner
    return runner


_hanging_runner.release = threading.Event()


def _confirmed_logic(view, tmp_path, beam_change=None, mc_factory=None):
    feed = ScriptedFeed(view.shots([(0.5, 0.0, 0.0)]), view.camera_matrix, view.background(),
                        fps=30.0, fre_mm=0.5, loop=True)
    slog = SessionLog.create(tmp_path / f"s{len(FakeRunner.made)}.sqlite", case_id="phantom")
    logic = MonitorLogic(view.case, view.plan, feed, dose_fn=slab_dose, session_log=slog,
                         mc_check=(mc_factory or (lambda log: McCheckMonitor(
                             FakeRunner, session_log=log)))(slog)).start()
    if beam_change is not None:
        logic.set_beam(replace(logic.beam, **beam_change))
    deadline = time.monotonic() + 20.0
    while True:
        snap = logic.poll()
        if snap.dose is not None and snap.dose.metrics_ready and snap.overlay_ok and \
                snap.dose.beam == logic.beam:
            break
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert snap.mc_check is None                   # nothing before the first confirm
    result = logic.confirm(override_reason="test")
    assert result.accepted
    return logic, slog, result, snap


def test_confirm_starts_the_check_of_the_confirmed_plan(view, tmp_path) -> None:
    FakeRunner.made.clear()
    logic, slog, result, snap = _confirmed_logic(
        view, tmp_path, beam_change={"disc": "lead", "disc_diameter_mm": 90.0})
    try:
        runner = FakeRunner.made[-1]
        spec = runner.spec
        np.testing.assert_allclose(spec.patient_from_applicator, snap.applicator_pose)
        assert (spec.energy_mev, spec.applicator_diameter_mm) == (
            logic.beam.energy_mev, logic.beam.applicator_diameter_mm)
        assert runner.options["target"] == "CTV"
        disc = runner.options["disc"]                # the selector's disc, in both engines
        assert (disc.material, disc.diameter_mm) == ("lead", 90.0)
        _wait(runner.started.is_set)
        runner.progress = McProgress(0.5)
        _wait(lambda: logic.poll().mc_check.state == "running")
        assert logic.snapshot().mc_check.fraction == 0.5   # the query shows it too
        runner.progress = McProgress(1.0, result=PHANTOM_RESULT)
        _wait(lambda: logic.poll().mc_check.finished)
        assert _actions(slog)[-1]["confirmed_seq"] == result.seq
        # a kV applicator: the check says why it does not run
        logic.set_beam(replace(logic.beam, kv_diameter_mm=40.0, disc="none"))
        logic._start_mc_check(snap.applicator_pose, 99)
        assert "kV applicator" in logic.poll().mc_check.line
    finally:
        logic.close()
        slog.close()


def test_treatment_record_shows_the_check(view, tmp_path) -> None:
    FakeRunner.made.clear()
    logic, slog, _, _ = _confirmed_logic(view, tmp_path)
    runner = FakeRunner.made[-1]
    try:
        _wait(runner.started.is_set)
        path = slog.path
        logic.poll()
        # the session ends before the result: the record says there is no check
        slog.close()
        content = content_from_session(path)
        assert content.mc_check is None and "ended before its result" in content.mc_check_note
    finally:
        logic.mc_check = None
        logic.close()
    with SessionLog.open(path) as slog2:
        slog2.log_action("mc_check", confirmed_seq=None, confirmed_number=1,
                         result=PHANTOM_RESULT)
    content = content_from_session(path)
    assert content.mc_check["verdict"] == "disagree" and content.mc_check_note == ""
    pdf = write_pdf(content, tmp_path / "record.pdf")
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    for words in ("Independent Monte Carlo check", "DISAGREE", "gamma 3%/2mm pass (%)",
                  "79.4", "CTV D90 (Gy)", "9.90", "10.04", "1798597 histories",
                  "fitted for 70 mm 0 deg", "CAVITY Dmax differs"):
        assert words in text, words


def test_real_monte_carlo_check_from_confirm(view, tmp_path) -> None:
    """ompmc in a child process on the confirmed pose (4 mm voxels, 40 000 histories)."""
    from models.dose.montecarlo.engine import ompmc_available

    if not ompmc_available():
        pytest.skip("ompmc not installed")
    logic, slog, _, _ = _confirmed_logic(
        view, tmp_path, mc_factory=lambda log: McCheckMonitor(session_log=log, grid_mm=4.0,
                                                              histories=40_000))
    try:
        t0 = time.monotonic()
        states = set()
        while not logic.poll().mc_check.finished:
            states.add(logic.snapshot().mc_check.state)
            assert time.monotonic() - t0 < 400.0, "Monte Carlo check did not finish"
            time.sleep(0.2)
        status = logic.snapshot().mc_check
        assert status.state in ("agree", "disagree", "inconclusive"), status.line
        assert 40_000 <= status.result["histories"] < 50_000   # whole batches
        assert "running" in states and status.line.startswith("MC check of confirm #1: ")
        assert 0.0 <= status.result["gamma_3_2_percent"] <= 100.0
        kinds = [a["action"] for a in _actions(slog)]
        assert kinds == ["mc_check_started", "mc_check"]
        assert _actions(slog)[-1]["result"] == json.loads(json.dumps(status.result))
    finally:
        logic.close()
        slog.close()
