"""Guided pointer registration: samples refused, skip/redo, truth transform, log, prompts."""

from __future__ import annotations

import numpy as np
import pytest

from guidance.frames.base import Frame
from guidance.loop.guidance_loop import FrameResult, ToolStatus
from guidance.record.session_log import SessionLog
from guidance.registration.decision import RegistrationThresholds
from guidance.registration.guided import GuidedRegistration
from guidance.registration.tre import predict_tre_mm
from guidance.tracking.pose_filter import TrackingState
from models.base.transforms import invert_rigid, transform_from_rotvec

FIDS = {"FID1": np.array([-80.0, -100, 50]), "FID2": np.array([75.0, -98, 60]),
        "FID3": np.array([-70.0, -95, -60]), "FID4": np.array([80.0, -97, -55]),
        "FID5": np.array([0.0, -105, 80])}
TARGET = np.array([0.0, -20.0, 0.0])
TRUTH = transform_from_rotvec([0.2, -0.4, 0.1], [30.0, -50.0, 12.0])  # patient_from_reference
T, U = TrackingState.TRACKING, TrackingState.UNTRACKED


class FakeLoop:
    """Records what the registration hands to the loop."""

    def __init__(self) -> None:
        self.patient_from_reference = None
        self.registration_fre_mm = None
        self.calls = 0

    def set_registration(self, patient_from_reference, *, fre_mm=None, method="") -> None:
        self.patient_from_reference = patient_from_reference
        self.registration_fre_mm = fre_mm
        self.calls += 1


def tip_of(name: str, offset=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Noise-free pointer tip (reference frame) on fiducial ``name``."""
    ref_from_patient = invert_rigid(TRUTH)
    return ref_from_patient[:3, :3] @ FIDS[name] + ref_from_patient[:3, 3] + np.asarray(offset)


def frame_result(tip: np.ndarray | None, index: int = 0, *, pointer=T, reference=T
                 ) -> FrameResult:
    """A FrameResult as the loop makes it (a tip only when both tools are TRACKING)."""
    tools = {name: ToolStatus(state, np.eye(4) if state is T else None, 0.0)
             for name, state in (("pointer", pointer), ("reference", reference))}
    both = pointer is T and reference is T
    return FrameResult(frame=Frame(np.zeros((4, 4, 3), np.uint8), index / 30.0, "cam", index),
                       tools=tools, camera_from_patient=None, patient_from_applicator=None,
                       pointer_tip_reference_mm=tip if both else None,
                       pointer_tip_patient_mm=None, latency_s=0.0, n_markers=0)


def touch(reg: GuidedRegistration, name: str, n: int = 3, offset=(0.0, 0.0, 0.0)) -> None:
    assert reg.capture()
    for i in range(n):
        reg(frame_result(tip_of(name, offset), i))


@pytest.fixture
def slog(tmp_path):
    log = SessionLog.create(tmp_path / "s.sqlite")
    yield log
    log.close()


def make(slog=None, **kw) -> tuple[GuidedRegistration, FakeLoop]:
    loop = FakeLoop()
    kw.setdefault("samples_per_fiducial", 3)
    return GuidedRegistration(loop, FIDS, target_lps=TARGET, session_log=slog, **kw), loop


def test_all_fiducials_give_the_truth_and_are_logged(slog) -> None:
    reg, loop = make(slog)
    assert reg.prompt() == "REGISTRATION: touch FID1 with the pointer, press Space " \
                           "(0/5 collected)"
    reg(frame_result(tip_of("FID1")))   # no Space pressed: frames are ignored
    assert reg.state().samples == 0
    for i, name in enumerate(FIDS):
        assert reg.state().current == name
        assert reg.capture()
        reg(frame_result(tip_of(name), 0))
        assert reg.prompt().startswith(f"REGISTRATION: hold the pointer still on {name} "
                                       f"(1/3 samples) ({i}/5 collected)")
        reg(frame_result(tip_of(name), 1))
        reg(frame_result(tip_of(name), 2))
    # the last fiducial registers by itself
    assert reg.finished and loop.calls == 1 and reg.state().phase == "accepted"
    np.testing.assert_allclose(loop.patient_from_reference, TRUTH, atol=1e-6)
    np.testing.assert_allclose(reg.result.patient_from_reference, TRUTH, atol=1e-6)
    assert reg.result.fre_mm < 1e-6 and loop.registration_fre_mm == reg.result.fre_mm
    assert reg.prompt() == ""
    lines = reg.report_lines()
    assert lines[0].startswith("registration accepted: FRE 0.00 mm, predicted TRE at target")
    assert lines[1] == ("residuals: FID1 0.00 mm, FID2 0.00 mm, FID3 0.00 mm, FID4 0.00 mm, "
                        "FID5 0.00 mm")
    event = slog.last("registration")
    assert event.payload["accepted"] is True and event.payload["n_points"] == 5
    assert event.payload["method"] == "paired_point_guided"
    np.testing.assert_allclose(event.transform("patient_from_reference"), TRUTH, atol=1e-6)
    assert set(event.payload["residuals_mm"]) == set(FIDS)
    actions = [e.payload["action"] for e in slog.events("action")]
    assert actions.count("registration_capture") == 5
    assert actions.count("registration_fiducial") == 5
    assert not reg.capture() and not reg.skip() and not reg.redo()   # over


def test_samples_refused_when_untracked_or_moving(slog) -> None:
    reg, _ = make(slog, max_spread_mm=1.5)
    assert reg.capture()
    reg(frame_result(tip_of("FID1"), 0))
    reg(frame_result(tip_of("FID1"), 1, pointer=U))
    state = reg.state()
    assert state.phase == "collecting" and state.samples == 0 and state.collected == ()
    assert state.message == "FID1: not tracked (pointer untracked) - press Space again"
    assert reg.prompt().startswith(state.message + " | REGISTRATION: touch FID1")
    assert reg.capture()
    reg(frame_result(tip_of("FID1"), 2, reference=TrackingState.STALE))
    assert reg.state().message == "FID1: not tracked (reference stale) - press Space again"
    # the tip slides 2 mm: refused; 1 mm: accepted
    assert reg.capture()
    reg(frame_result(tip_of("FID1"), 3))
    reg(frame_result(tip_of("FID1", (2.0, 0.0, 0.0)), 4))
    assert "pointer moved 2.0 mm (limit 1.5 mm)" in reg.state().message
    assert reg.state().collected == ()
    touch(reg, "FID1", offset=(0.0, 0.0, 0.0))
    assert reg.state().collected == ("FID1",) and reg.state().message == ""
    warnings = [e.payload["message"] for e in slog.events("warning")]
    assert len(warnings) == 3 and all(w.startswith("registration sample refused") for w in
                                      warnings)


def test_skip_redo_and_accept_with_enter(slog) -> None:
    reg, loop = make(slog, thresholds=RegistrationThresholds(min_fiducials=3))
    assert not reg.accept()   # nothing collected
    assert reg.state().message == "only 0 fiducials collected: touch at least 3"
    touch(reg, "FID1")
    assert reg.skip() and reg.state().current == "FID3"   # FID2 skipped
    touch(reg, "FID3", offset=(0.0, 0.0, 0.0))
    # Backspace takes back FID3 (collected), then the skip of FID2
    assert reg.redo() and reg.state().current == "FID3"
    assert reg.redo() and reg.state().current == "FID2" and reg.state().skipped == ()
    touch(reg, "FID2")
    # a capture in progress is cancelled by Backspace
    assert reg.capture()
    reg(frame_result(tip_of("FID3")))
    assert reg.redo() and reg.state().samples == 0 and reg.state().current == "FID3"
    touch(reg, "FID3")
    assert reg.prompt() == ("REGISTRATION: touch FID4 with the pointer, press Space "
                            "(3/5 collected) - Enter to register now")
    assert reg.accept() and loop.calls == 1
    np.testing.assert_allclose(loop.patient_from_reference, TRUTH, atol=1e-6)
    assert reg.result.names == ("FID1", "FID2", "FID3")
    fids = np.array([FIDS[n] for n in ("FID1", "FID2", "FID3")])
    assert reg.result.predicted_tre_mm == pytest.approx(
        float(predict_tre_mm(fids, TARGET, reg.result.fle_mm)[0]))
    actions = [e.payload["action"] for e in slog.events("action")]
    assert {"registration_skip", "registration_redo", "registration_accept"} <= set(actions)


def test_refused_registration_is_not_used(slog) -> None:
    # default thresholds: at least 4 fiducials; FID2 touched 4 mm off -> large residual
    reg, loop = make(slog, thresholds=RegistrationThresholds(max_fre_mm=0.5))
    touch(reg, "FID1")
    touch(reg, "FID2", offset=(4.0, 0.0, 0.0))
    touch(reg, "FID3")
    assert not reg.accept()
    assert loop.calls == 0 and reg.result is None and reg.state().phase == "refused"
    text = reg.prompt()
    assert text.startswith("REGISTRATION REFUSED: only 3 fiducials (at least 4 required)")
    assert "FRE" in text and "exceeds 0.50 mm" in text and "Backspace" in text
    assert reg.report_lines()[0].startswith("registration REFUSED: FRE")
    assert slog.last("registration").payload["accepted"] is False
    assert slog.last("warning").payload["message"].startswith("registration refused")
    # redo FID3, touch FID3, FID4 and FID5 well: all five -> still refused (FID2 is off)
    assert reg.redo() and reg.state().phase == "collecting"
    for name in ("FID3", "FID4", "FID5"):
        touch(reg, name)
    assert reg.state().phase == "refused" and loop.calls == 0
    # back to FID2: take back FID5, FID4, FID3 and FID2
    for _ in range(4):
        assert reg.redo()
    for name in ("FID2", "FID3", "FID4", "FID5"):
        touch(reg, name)
    assert reg.finished and loop.calls == 1
    np.testing.assert_allclose(loop.patient_from_reference, TRUTH, atol=1e-6)


def test_all_skipped_but_two_asks_to_go_back() -> None:
    reg, loop = make()
    touch(reg, "FID1")
    touch(reg, "FID2")
    for _ in range(3):
        assert reg.skip()
    assert loop.calls == 0 and reg.state().current is None
    assert reg.prompt() == ("REGISTRATION: only 2 fiducials collected (3 needed) - "
                            "Backspace to go back")
    assert not reg.capture()


def test_needs_three_fiducials() -> None:
    with pytest.raises(ValueError, match=">= 3 fiducials"):
        GuidedRegistration(FakeLoop(), {"A": np.zeros(3), "B": np.ones(3)},
                           target_lps=np.zeros(3))


def test_collinear_fiducials_are_refused_with_a_message(slog) -> None:
    line = {f"L{i}": np.array([10.0 * i, 0.0, 0.0]) for i in range(3)}
    loop = FakeLoop()
    reg = GuidedRegistration(loop, line, target_lps=TARGET, samples_per_fiducial=1,
                             session_log=slog)
    ref_from_patient = invert_rigid(TRUTH)
    for point in line.values():
        assert reg.capture()
        reg(frame_result(ref_from_patient[:3, :3] @ point + ref_from_patient[:3, 3]))
    assert loop.calls == 0 and reg.result is None
    assert "registration not possible" in reg.state().message
    assert reg.prompt().startswith("REGISTRATION: registration not possible: ")
    assert reg.prompt().endswith("Backspace to go back")
    assert "collinear" in slog.last("warning").payload["message"]


class _Tracker:
    """External-tracker stand-in: reference fixed, pointer tip on ``touching`` (or absent)."""

    tool_names = ("reference", "pointer")

    def __init__(self, tracker_from_reference: np.ndarray) -> None:
        self.tracker_from_reference = tracker_from_reference
        self.touching: str | None = "FID1"

    def poll(self, max_age_s=None) -> dict:
        from guidance.tracking.external import TrackerPose

        poses = {"reference": TrackerPose("reference", self.tracker_from_reference, 0.0, 0.0)}
        if self.touching is not None:
            tip = np.eye(4)
            tip[:3, 3] = (self.tracker_from_reference @ np.append(tip_of(self.touching), 1))[:3]
            poses["pointer"] = TrackerPose("pointer", tip, 0.0, 0.0)
        return poses


def test_through_the_real_loop() -> None:
    """GuidanceLoop (external-tracker poses) -> guided registration -> the loop's own
    registration maps the pointer tip onto each fiducial."""
    from guidance.frames import ListSource
    from guidance.loop.guidance_loop import GuidanceLoop

    tracker = _Tracker(transform_from_rotvec([0.1, 0.5, -0.3], [200.0, -40.0, 900.0]))
    loop = GuidanceLoop(ListSource([np.zeros((48, 64, 3), np.uint8)] * 200), {},
                        np.eye(3), tool_poses=tracker)
    reg = GuidedRegistration(loop, FIDS, target_lps=TARGET, samples_per_fiducial=3)
    loop.source.open()

    def frames(n: int) -> None:
        for _ in range(n):
            result = loop.step()
            assert result is not None and result is not False
            reg(result)

    frames(2)
    tracker.touching = None            # pointer out of view until it is stale
    assert reg.capture()
    frames(10)
    assert "not tracked (pointer" in reg.state().message
    for name in FIDS:
        tracker.touching = name
        frames(2)
        assert reg.capture()
        frames(3)
    assert reg.finished
    np.testing.assert_allclose(loop.patient_from_reference, TRUTH, atol=1e-6)
    tracker.touching = "FID4"
    result = loop.step()
    np.testing.assert_allclose(result.pointer_tip_patient_mm, FIDS["FID4"], atol=1e-6)
    loop.source.close()
