"""The live dose service: when a dose is recomputed, and the worker that computes it."""

from __future__ import annotations

import time

import numpy as np
import pytest

from guidance.treatment.dose_service import (
    BeamChoice,
    DoseScheduler,
    DoseService,
    electron_dose_function,
)
from models.base.transforms import transform_difference, transform_from_rotvec
from models.dose.water import water_phantom, water_pose
from models.patient.case import Case


def test_pose_change_known_motion_uses_the_shared_formula() -> None:
    a = transform_from_rotvec([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    b = transform_from_rotvec([0.0, np.radians(3.0), 0.0], [3.0, 4.0, 0.0])
    move, turn = transform_difference(b, a)
    assert move == pytest.approx(5.0, abs=1e-12) and turn == pytest.approx(3.0, abs=1e-9)


def test_dose_scheduler_latest_wins() -> None:
    sched = DoseScheduler(min_move_mm=1.0, min_turn_deg=1.0)
    p0 = np.eye(4)
    params = (9.0, 60.0)
    assert sched.offer(p0, params)           # first pose: compute
    p1 = p0.copy()
    p1[0, 3] = 5.0
    p2 = p0.copy()
    p2[0, 3] = 10.0
    assert not sched.offer(p1, params)       # busy: remembered
    assert not sched.offer(p2, params)       # newer replaces it
    nxt = sched.finished()
    assert nxt is not None and nxt[0][0, 3] == 10.0 and sched.busy
    assert sched.finished() is None and not sched.busy
    small = p2.copy()
    small[0, 3] += 0.5
    assert not sched.offer(small, params)    # below threshold: no recompute
    assert sched.offer(small, (12.0, 60.0))  # energy changed: recompute
    sched.finished()
    sched.invalidate()
    assert sched.offer(small, (12.0, 60.0))


def at(x_mm: float) -> np.ndarray:
    """The applicator's pose ``x_mm`` along x from the origin."""
    pose = np.eye(4)
    pose[0, 3] = x_mm
    return pose


def test_dose_scheduler_paces_a_moving_pose_and_starts_a_resting_one_at_once() -> None:
    sched = DoseScheduler(min_interval_s=0.25)
    params = (9.0, 60.0)

    assert sched.offer(at(0.0), params, now_s=10.0)
    assert not sched.started_moving                          # the first pose: full model
    assert sched.finished() is None                         # done after 50 ms
    # carried on, 2 mm a frame: nothing starts before 0.25 s after the last start
    for k, t in enumerate((10.05, 10.083, 10.116, 10.15, 10.183, 10.216), start=1):
        assert not sched.offer(at(2.0 * k), params, now_s=t)
        assert sched.due(t) is None
    assert sched.has_pending
    nxt = sched.due(10.25)                                  # its turn: the newest pose
    assert nxt is not None and nxt[0][0, 3] == 12.0 and sched.busy
    assert sched.started_moving                              # a preview will do
    sched.finished()
    assert not sched.offer(at(14.0), params, now_s=10.30)   # moving again: paced
    # it stops: the same pose offered again starts at once, 20 ms later, not at 10.50
    assert sched.offer(at(14.0), params, now_s=10.32)
    assert not sched.started_moving                          # at rest: the full model
    sched.finished()
    # after a pause the applicator is moved again: its first pose is motion, a preview
    assert sched.offer(at(20.0), params, now_s=11.0) and sched.started_moving
    sched.finished()
    sched.computed_preview = True
    assert sched.offer(at(20.2), params, now_s=11.5)          # within 1 mm: the full one
    assert not sched.started_moving and not sched.computed_preview
    sched.finished()
    sched.computed_preview = True                            # ...or, with no pose offered,
    assert sched.due(11.6) is None and sched.due(11.8)[0][0, 3] == 20.2   # after the pace
    sched.finished()
    # a beam change is not motion: it starts as soon as the worker is free
    assert sched.offer(at(14.0), (12.0, 60.0), now_s=10.33)
    # without pacing (the default) every free moment starts the newest pose
    free = DoseScheduler()
    assert free.offer(at(0.0), params, now_s=0.0)
    free.finished()
    assert free.offer(at(5.0), params, now_s=0.001)


def test_a_pose_resting_while_the_preview_computes_starts_when_the_preview_ends() -> None:
    """The applicator stops while the preview of its last moving pose computes: the full
    model for where it rests starts the moment the worker is free, not a pacing interval
    after the preview started (that wait was up to 0.25 s of latency at every stop)."""
    sched = DoseScheduler(min_interval_s=0.25)
    params = (12.0, 120.0)

    assert sched.offer(at(0.0), params, now_s=10.0)
    sched.finished()
    assert sched.offer(at(6.0), params, now_s=10.5) and sched.started_moving   # the preview
    assert not sched.offer(at(8.0), params, now_s=10.52)     # it stops at 8 mm: waits
    assert sched.due(10.54) is None                          # (moving, paced: not yet)
    assert not sched.offer(at(8.05), params, now_s=10.55)    # the same pose again: rests
    nxt = sched.finished()                                   # the preview ends at 10.56
    assert nxt is not None and nxt[0][0, 3] == 8.05 and sched.busy
    assert not sched.started_moving                          # the full model
    # a pose still moving when the worker frees up keeps its pace
    moving = DoseScheduler(min_interval_s=0.25)
    t0 = time.monotonic() - 1.0       # finished() reads the clock itself
    assert moving.offer(at(0.0), params, now_s=t0)
    moving.finished()
    assert moving.offer(at(6.0), params, now_s=t0 + 0.99) and moving.started_moving
    assert not moving.offer(at(8.0), params, now_s=t0 + 0.995)
    assert moving.finished() is None and moving.has_pending
    assert moving.due(t0 + 1.1) is None and moving.due(t0 + 1.25) is not None


def test_the_pose_a_preview_was_started_for_seen_again_rests_there() -> None:
    """The monitor offers a pose per drawn AR frame, ~80 ms apart while it renders: waiting
    for the same pose twice after the preview cost up to a frame and a pacing interval
    before the full model started. The preview's own pose is the first sighting."""
    params = (12.0, 120.0)
    for during_preview in (True, False):
        sched = DoseScheduler(min_interval_s=0.25)
        t0 = time.monotonic()             # finished() reads the clock itself
        assert sched.offer(at(0.0), params, now_s=t0 - 1.0)
        sched.finished()
        assert sched.offer(at(6.0), params, now_s=t0) and sched.started_moving  # preview
        if during_preview:                # the applicator is still there: full next
            assert not sched.offer(at(6.1), params, now_s=t0 + 0.03)
            sched.computed_preview = True     # (the service marks the preview done)
            nxt = sched.finished()
        else:
            sched.computed_preview = True
            assert sched.finished() is None
            nxt = (at(6.1), params) if sched.offer(at(6.1), params, now_s=t0 + 0.05) \
                else None
        assert nxt is not None and nxt[0][0, 3] == 6.1 and not sched.started_moving
        sched.finished()
    # a pose that moved on from the preview's is still paced, and a full model's pose
    # offered again is not a reason to start anything
    sched = DoseScheduler(min_interval_s=0.25)
    assert sched.offer(at(0.0), params, now_s=t0 - 1.0)
    sched.finished()
    assert sched.offer(at(6.0), params, now_s=t0) and sched.started_moving
    sched.computed_preview = True
    sched.finished()
    assert not sched.offer(at(8.0), params, now_s=t0 + 0.05)
    full = DoseScheduler(min_interval_s=0.25)
    assert full.offer(at(0.0), params, now_s=t0) and not full.offer(at(0.1), params,
                                                                      now_s=t0 + 0.05)
    assert not full.has_pending


def test_a_full_dose_for_a_pose_left_behind_is_cancelled_a_preview_is_not() -> None:
    """The full model of the first pose (~0.3 s for a large beveled beam) was still running
    when the applicator came to rest after a short move, doubling the wait for its dose."""
    sched = DoseScheduler(min_interval_s=0.25)
    params = (12.0, 120.0)
    t0 = time.monotonic()             # finished() reads the clock itself
    assert sched.offer(at(0.0), params, now_s=t0) and not sched.started_moving  # full
    assert not sched.offer(at(0.5), params, now_s=t0 + 0.03)     # within 1 mm: kept
    assert not sched.cancel_requested
    assert not sched.offer(at(2.0), params, now_s=t0 + 0.06) and sched.cancel_requested
    nxt = sched.finished()   # the worker stops it; the moved pose follows, paced
    assert not sched.cancel_requested and not sched.busy
    assert nxt is None and sched.due(t0 + 0.26) is not None and sched.started_moving
    assert not sched.offer(at(4.0), params, now_s=t0 + 0.3)     # moving on during a preview
    assert not sched.cancel_requested
    sched.finished()
    # a new beam while the full model computes: the old beam's dose is not wanted either
    assert sched.offer(at(4.0), params, now_s=t0 + 1.0) and not sched.started_moving
    assert not sched.offer(at(4.0), (12.0, 100.0), now_s=t0 + 1.01) and sched.cancel_requested


def test_the_service_stops_a_cancelled_computation_and_publishes_the_new_pose() -> None:
    """A dose function calling :func:`models.base.cancel.checkpoint` between its stages is
    stopped there: nothing is published for the old pose, it is not a failure, and the new
    pose's dose follows at once instead of after the old one's 3 s."""
    from models.base.cancel import checkpoint

    case = Case(ct=water_phantom(half_width_mm=20.0, depth_mm=20.0, spacing_mm=4.0),
                structures={}, patient_id="water")
    started = []

    def slow_for_the_first(case, pose, beam, *, model="full"):
        started.append((float(pose[0, 3]), model))
        for _ in range(300 if len(started) == 1 else 1):
            checkpoint("the next stage")
            time.sleep(0.01)
        return case.ct

    slow_for_the_first.supports_preview = True
    seen = []
    service = DoseService(case, slow_for_the_first, preview_while_moving=True,
                          scheduler=DoseScheduler(min_interval_s=0.0))
    service.listeners.append(lambda: seen.append(service.latest()[1]))
    try:
        t0 = time.monotonic()
        service.request(at(0.0), BeamChoice())
        while not started:
            time.sleep(0.005)
        service.request(at(5.0), BeamChoice())
        update = _wait_for(service, lambda u: u.patient_from_applicator[0, 3] == 5.0,
                           timeout_s=10.0)
        waited_s = time.monotonic() - t0
    finally:
        service.close()
    assert started[0] == (0.0, "full") and started[1] == (5.0, "preview")
    assert service.cancelled == 1 and service.failures == 0
    assert waited_s < 1.5 and update.model == "preview"
    assert all(u.patient_from_applicator[0, 3] != 0.0 for u in seen)


def test_refining_is_true_while_the_full_model_computes_not_a_preview() -> None:
    """The monitor's views wait for the full model's dose while ``refining`` (they would
    only redraw a small move or a preview): it holds during the full model's computation
    and not during a preview's, nor when idle."""
    case = Case(ct=water_phantom(half_width_mm=20.0, depth_mm=20.0, spacing_mm=4.0),
                structures={}, patient_id="water")
    holder = {}
    inside = []

    def recording(case, pose, beam, *, model="full"):
        inside.append((float(pose[0, 3]), model, holder["service"].refining))
        time.sleep(0.05)
        return case.ct

    recording.supports_preview = True
    service = DoseService(case, recording, preview_while_moving=True,
                          scheduler=DoseScheduler(min_interval_s=0.0))
    holder["service"] = service
    try:
        assert not service.refining
        service.request(at(0.0), BeamChoice())          # the first pose: the full model
        _wait_for(service, lambda u: u.patient_from_applicator[0, 3] == 0.0)
        service.request(at(5.0), BeamChoice())          # moved: a preview
        _wait_for(service, lambda u: u.patient_from_applicator[0, 3] == 5.0)
        service.request(at(5.0), BeamChoice())          # rests: the full model follows
        _wait_for(service, lambda u: u.model == "full"
                  and u.patient_from_applicator[0, 3] == 5.0)
        deadline = time.monotonic() + 5.0
        while service.busy and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not service.refining
    finally:
        service.close()
    assert inside == [(0.0, "full", True), (5.0, "preview", False), (5.0, "full", True)]


@pytest.fixture(scope="module")
def water_case() -> Case:
    return Case(ct=water_phantom(half_width_mm=60.0, depth_mm=80.0, spacing_mm=2.0),
                structures={}, patient_id="water")


def _wait_for(service: DoseService, predicate, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _, update = service.latest()
        if update is not None and predicate(update):
            return update
        time.sleep(0.01)
    raise AssertionError("dose not published in time")


def test_latest_request_wins_and_request_does_not_block(water_case) -> None:
    beam = BeamChoice(energy_mev=9.0, applicator_diameter_mm=60.0)
    service = DoseService(water_case, electron_dose_function("mobetron", grid_mm=3.0))
    try:
        poses = []
        start = time.perf_counter()
        for dx in (0.0, 5.0, 10.0, 15.0):
            pose = water_pose(0.0)
            pose[0, 3] = dx
            poses.append(pose)
            service.request(pose, beam)
        request_s = time.perf_counter() - start
        update = _wait_for(service, lambda u: u.patient_from_applicator[0, 3] == 15.0)
        assert request_s < 0.05   # four requests while the first computes
        np.testing.assert_allclose(update.patient_from_applicator, poses[-1])
        assert float(update.dose.array.max()) > 0.0
        assert update.isodose_mesh is None    # no surface builder given
    finally:
        service.close()


def test_a_moving_applicator_gets_the_preview_and_the_resting_one_the_full_model(
        water_case) -> None:
    """The real engine: doses for poses that came while the applicator moved use the preview
    model (and get no DVH); where it rests, the full model follows at once, with DVH, and is
    the same dose as a direct full computation."""
    from models.beams.library import ElectronBeam
    from models.dose.engine import ElectronDoseEngine

    engine_fn = electron_dose_function("liac", grid_mm=3.0)
    models = []

    def recording(case, pose, beam, *, model="full"):
        models.append(model)
        return engine_fn(case, pose, beam, model=model)

    recording.supports_preview = True
    beam = BeamChoice(energy_mev=8.0, applicator_diameter_mm=70.0)
    engine_fn(water_case, water_pose(0.0), beam)   # JIT warm-up outside the timing
    seen = []
    service = DoseService(water_case, recording, preview_while_moving=True,
                          scheduler=DoseScheduler(min_interval_s=0.05))
    service.listeners.append(lambda: seen.append(service.latest()[1]))
    try:
        for k in range(30):   # carried 1.5 mm a frame at 30 frames/s...
            pose = water_pose(0.0)
            pose[0, 3] = 1.5 * k
            service.request(pose, beam)
            time.sleep(1.0 / 30.0)
        for _ in range(10):   # ...then held still
            service.request(pose, beam)
            time.sleep(1.0 / 30.0)
        final = _wait_for(service, lambda u: u.metrics_ready
                          and u.patient_from_applicator[0, 3] == 1.5 * 29, timeout_s=30.0)
    finally:
        service.close()
    assert "preview" in models and models.count("full") >= 1
    previews = [u for u in seen if u.model == "preview"]
    assert previews and not any(u.metrics_ready for u in previews)
    assert final.model == "full"
    direct = ElectronDoseEngine(water_case.ct, grid_mm=3.0).compute(
        pose, ElectronBeam("liac", 8.0, 70.0), prescription_gy=beam.prescription_gy)
    np.testing.assert_allclose(final.dose.array, direct.dose.array, rtol=1e-6, atol=1e-9)
    # a dose function without a preview is never asked for one
    plain = DoseService(water_case, lambda case, pose, beam: case.ct,
                        preview_while_moving=True)
    assert not plain.preview_while_moving
    plain.close()


def test_a_failing_engine_is_counted_and_the_service_keeps_running(water_case) -> None:
    calls = []

    def flaky(case, pose, beam):
        calls.append(pose)
        if len(calls) == 1:
            raise RuntimeError("engine failed")
        return case.ct

    service = DoseService(water_case, flaky)
    try:
        beam = BeamChoice()
        service.request(water_pose(0.0), beam)
        deadline = time.monotonic() + 10.0
        while service.failures == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert service.failures == 1 and "engine failed" in service.last_error
        moved = water_pose(0.0)
        moved[0, 3] = 5.0
        while service.busy and time.monotonic() < deadline:
            time.sleep(0.01)
        assert service.request(moved, beam)
        _wait_for(service, lambda u: u.patient_from_applicator[0, 3] == 5.0, timeout_s=10.0)
    finally:
        service.close()


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_a_non_finite_dose_is_never_published(water_case, bad_value) -> None:
    from models.patient.volume import Volume

    def poisoned(case, pose, beam):
        values = np.ones(case.ct.shape, np.float32)
        values[1, 2, 3] = bad_value
        return Volume(values, case.ct.patient_from_voxel)

    service = DoseService(water_case, poisoned)
    try:
        service.request(water_pose(0.0), BeamChoice())
        deadline = time.monotonic() + 10.0
        while service.failures == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert service.failures == 1
        assert "1 NaN/infinite voxel(s)" in service.last_error
        assert service.latest() == (0, None)
    finally:
        service.close()


def test_an_edited_anatomy_is_computed_at_once_with_the_preoperative_doses_alongside(
        coarse_phantom) -> None:
    """Bowel moved under the applicator: the service recomputes for the last pose on the
    edited case and reports the bowel where it is now and where the CT saw it."""
    from models.patient.edits import EditList, Retraction
    from models.patient.phantom import planned_patient_from_applicator

    case = coarse_phantom
    plan = planned_patient_from_applicator(case)
    goal = plan[:3, :3] @ np.array([0.0, 0.0, 15.0]) + plan[:3, 3]
    move = np.eye(4)
    move[:3, 3] = goal - case.centroid_lps("BOWEL")
    edited = EditList([Retraction("BOWEL", move)]).apply(case)
    beam = BeamChoice(energy_mev=8.0, applicator_diameter_mm=70.0)
    service = DoseService(case, electron_dose_function("liac"), structures=["CTV", "BOWEL"])
    try:
        service.request(plan, beam)
        first = _wait_for(service, lambda u: u.metrics_ready)
        assert first.anatomy_version == 0 and first.metrics_preoperative == {}
        assert service.set_case(edited, preoperative=case)     # recomputed without a move
        update = _wait_for(service, lambda u: u.metrics_ready and u.anatomy_version == 1)
    finally:
        service.close()
    np.testing.assert_allclose(update.patient_from_applicator, plan)
    assert update.metrics["BOWEL"].dmax_gy > 8.0                # now under the applicator
    assert update.metrics_preoperative["BOWEL"].dmax_gy == pytest.approx(
        first.metrics["BOWEL"].dmax_gy, abs=0.5)               # where the CT saw it: ~0
    assert first.metrics["BOWEL"].dmax_gy < 1.0
