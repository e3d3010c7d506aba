"""Scripted poses take the camera's path: source -> tracker device -> the real loop."""

from __future__ import annotations

import numpy as np

from guidance.loop.guidance_loop import ToolStateChanged
from guidance.monitor.feed import ScriptedFeed
from guidance.sim.scripted import DEFAULT_PATIENT_FROM_REFERENCE, ScriptedShot
from guidance.tracking.pose_filter import TrackingState
from models.base.transforms import invert_rigid
from tests.conftest import random_rigid


def test_scripted_feed_runs_the_loop_and_composes_through_the_reference(rng) -> None:
    camera_from_patient = random_rigid(rng, 300.0)
    plan = random_rigid(rng, 50.0)
    shots = [ScriptedShot(camera_from_patient, plan)] * 3 + \
        [ScriptedShot(camera_from_patient, plan, visible=("reference",))] * 2
    k = np.array([[600.0, 0, 160], [0, 600.0, 120], [0, 0, 1]])
    feed = ScriptedFeed(shots, k, np.zeros((240, 320, 3), np.uint8), fps=0)
    events = []
    feed.loop.subscribe(events.append)
    updates = []
    while (update := feed.read()) is not None:
        updates.append(update)
    assert [u.index for u in updates] == [0, 1, 2, 3, 4]
    first = updates[0]
    np.testing.assert_allclose(first.patient_from_applicator, plan, atol=1e-9)
    np.testing.assert_allclose(first.camera_from_patient, camera_from_patient, atol=1e-9)
    # the reference tool is a plate on the patient, not the patient frame itself
    np.testing.assert_allclose(first.camera_from_tools["reference"],
                               camera_from_patient @ DEFAULT_PATIENT_FROM_REFERENCE, atol=1e-9)
    assert not np.allclose(first.camera_from_tools["reference"], camera_from_patient)
    np.testing.assert_allclose(invert_rigid(first.result.tools["reference"].camera_from_tool)
                               @ first.camera_from_tools["applicator"],
                               invert_rigid(DEFAULT_PATIENT_FROM_REFERENCE) @ plan, atol=1e-9)
    # the applicator leaves the view: the loop's own filter holds it STALE, and says so
    assert updates[-1].tool_states["applicator"] is TrackingState.STALE
    assert updates[-1].result is feed.loop.last_result
    changes = [(e.tool, e.new) for e in events if isinstance(e, ToolStateChanged)]
    assert ("applicator", TrackingState.STALE) in changes


def test_unregistered_script_has_no_patient_poses(rng) -> None:
    shots = [ScriptedShot(random_rigid(rng, 300.0), random_rigid(rng, 50.0))]
    k = np.array([[600.0, 0, 160], [0, 600.0, 120], [0, 0, 1]])
    update = ScriptedFeed(shots, k, np.zeros((240, 320, 3), np.uint8), fps=0,
                          registered=False).read()
    assert update.tool_states["applicator"] is TrackingState.TRACKING
    assert update.camera_from_patient is None and update.patient_from_applicator is None
    assert not update.registered
