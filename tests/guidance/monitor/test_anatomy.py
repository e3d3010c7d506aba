"""The OR's anatomy editor: edits checked, derived, logged, saved and handed to the dose."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from guidance.monitor.anatomy import AnatomyEditor, drag_retraction, rotate_retraction
from guidance.record.session_log import SessionLog
from models.base.errors import InputError
from models.base.transforms import angle_between_transforms_deg


class _Dose:
    """Stands in for the dose service: records what it was told."""

    def __init__(self) -> None:
        self.cases = []

    def set_case(self, case, *, preoperative=None) -> bool:
        self.cases.append((case, preoperative))
        return True


def _move(case, mm=(0.0, -21.0, 28.0), deg=4.0) -> np.ndarray:
    c = case.centroid_lps("BOWEL")
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("y", deg, degrees=True).as_matrix()
    m[:3, 3] = c - m[:3, :3] @ c + np.asarray(mm)
    return m


def test_an_edit_reaches_the_log_the_case_folder_and_the_dose(coarse_phantom, tmp_path) -> None:
    from models.patient.case_store import load_edits, save_case

    case = coarse_phantom
    folder = save_case(case, tmp_path / "case")
    dose = _Dose()
    with SessionLog.create(tmp_path / "s.sqlite") as session:
        editor = AnatomyEditor(case, session_log=session, dose_service=dose, case_dir=folder,
                               who="surgeon")
        edited = editor.retract("BOWEL", _move(case), how="pointer sweep")
        assert editor.descriptions() == ["BOWEL moved 35 mm, 4 deg"]
        assert dose.cases[-1] == (edited, case)
        assert len(load_edits(folder)) == 1
        # refused: nothing applied, logged or saved
        far = np.eye(4)
        far[2, 3] = 1000.0
        with pytest.raises(InputError, match="outside the CT"):
            editor.retract("BOWEL", far)
        assert len(editor.edits) == 1 and len(dose.cases) == 1
        editor.undo()
        assert len(load_edits(folder)) == 0
        np.testing.assert_array_equal(editor.case.ct.array, case.ct.array)
        np.testing.assert_array_equal(editor.case.structures["BOWEL"].mask,
                                      case.structures["BOWEL"].mask)
        editor.redo()
    back = SessionLog.open(tmp_path / "s.sqlite", readonly=True)
    kinds = [e.kind for e in back.events() if e.kind.startswith("anatomy")]
    assert kinds == ["anatomy_edit", "anatomy_undo", "anatomy_redo"]
    logged = back.last("anatomy_edit").payload
    assert logged["edit"]["how"] == "pointer sweep" and logged["edit"]["who"] == "surgeon"
    assert logged["description"] == "BOWEL moved 35 mm, 4 deg"
    back.close()


def test_a_preview_moves_the_organ_without_recording_it(coarse_phantom) -> None:
    case = coarse_phantom
    editor = AnatomyEditor(case)
    first = _move(case, (0.0, -10.0, 0.0), 0.0)
    editor.retract("BOWEL", first)
    second = _move(case, (0.0, 0.0, 15.0), 3.0)
    editor.preview("BOWEL", second)
    assert editor.previewing and len(editor.edits) == 1
    np.testing.assert_allclose(editor.retraction_of("BOWEL"), second @ first, atol=1e-12)
    [outline] = editor.outlines()
    assert outline.structure == "BOWEL"
    editor.cancel_preview()
    np.testing.assert_allclose(editor.retraction_of("BOWEL"), first, atol=1e-12)
    editor.preview("BOWEL", second)
    editor.commit_preview(how="tracked retractor")
    assert not editor.previewing and len(editor.edits) == 2
    assert next(reversed(list(editor.edits))).provenance.how == "tracked retractor"


def test_drag_and_rotate_in_the_view_plane() -> None:
    right, up = np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])
    start = np.eye(4)
    start[:3, 3] = (1.0, 2.0, 3.0)
    dragged = drag_retraction(start, right, up, 10.0, -4.0)
    np.testing.assert_allclose(dragged[:3, 3], (1.0 - 4.0, 2.0, 3.0 + 10.0))
    centre = np.array([5.0, 5.0, 5.0])
    turned = rotate_retraction(dragged, centre, np.array([0.0, 2.0, 0.0]), 12.0)
    assert angle_between_transforms_deg(turned, dragged) == pytest.approx(12.0, abs=1e-9)
    # the centre of rotation stays where it is
    rel = turned @ np.linalg.inv(dragged)
    np.testing.assert_allclose(rel[:3, :3] @ centre + rel[:3, 3], centre, atol=1e-9)
    with pytest.raises(InputError, match="axis_lps must be a non-zero direction"):
        rotate_retraction(dragged, centre, np.zeros(3), 5.0)


def test_the_monitor_shows_the_retracted_organ_solid_and_its_old_place_dashed(tmp_path) -> None:
    from guidance.monitor.anatomy import attach_anatomy
    from guidance.monitor.feed import ScriptedFeed
    from guidance.monitor.logic import MonitorLogic
    from guidance.monitor.rehearsal import phantom_view, slab_dose
    from guidance.render.slices import render_slice

    view = phantom_view()
    feed = ScriptedFeed(view.shots([(0.0, 0.0, 0.0)] * 5), view.camera_matrix,
                        view.background(), fps=30.0, fre_mm=0.5, tre_mm=0.9, loop=True)
    logic = MonitorLogic(view.case, view.plan, feed, dose_fn=slab_dose)
    try:
        editor = attach_anatomy(logic)
        case = logic.case
        before_pts = np.asarray(logic.scene.items["BOWEL"].mesh.points).copy()
        move = _move(case)
        editor.retract("BOWEL", move)
        # the scene mesh moved rigidly, a dashed outline stays at the preoperative place
        now = np.asarray(logic.scene.items["BOWEL"].mesh.points)
        np.testing.assert_allclose(now, before_pts @ move[:3, :3].T + move[:3, 3], atol=1e-3)
        dashed = logic.scene.items["BOWEL:preoperative"].mesh
        assert dashed.n_lines > 20 and dashed.n_cells == dashed.n_lines
        lo = np.asarray(dashed.bounds)[::2]
        assert np.all(lo >= before_pts.min(axis=0) - 2.0)     # at the old place
        # the logic's case is the edited one; the slices get solid + dashed bowel outlines
        assert logic.case is editor.case
        outlines = logic.slice_outlines()
        assert outlines["BOWEL:preoperative"].dashed and not outlines["BOWEL"].dashed
        centre = case.centroid_lps("BOWEL") + np.array([6.0, -16.0, 0.0])
        image = render_slice(logic.case.ct, "axial", centre, outlines=outlines,
                             size_px=200, pixel_mm=1.0)
        bowel_rgb = np.array(case.structures["BOWEL"].color_rgb)

        def drawn(outline) -> np.ndarray:
            return np.all(render_slice(logic.case.ct, "axial", centre, outlines={"x": outline},
                                       size_px=200, pixel_mm=1.0).rgb == bowel_rgb, axis=2)
        from guidance.render.slices import Outline

        old_mask = case.structures["BOWEL"].mask
        dashes = drawn(outlines["BOWEL:preoperative"])
        full = drawn(Outline(old_mask, case.structures["BOWEL"].color_rgb))
        now_solid = drawn(outlines["BOWEL"])
        # the dashed line is the old outline with gaps (4 px on, 3 off), the solid one is
        # elsewhere (the bowel moved 35 mm)
        assert full.sum() > 100 and (dashes & ~full).sum() == 0
        assert 0.45 < dashes.sum() / full.sum() < 0.7
        assert (now_solid & full).sum() < 0.2 * now_solid.sum()
        assert image.rgb.shape == (200, 200, 3)
        # undo: everything back, the dashed outline gone
        editor.undo()
        np.testing.assert_allclose(np.asarray(logic.scene.items["BOWEL"].mesh.points),
                                   before_pts, atol=1e-3)
        assert "BOWEL:preoperative" not in logic.scene.items
        assert "BOWEL:preoperative" not in logic.slice_outlines()
    finally:
        logic.close()


def test_a_refused_sweep_is_one_message_and_nothing_applied(coarse_phantom, rng) -> None:
    from guidance.registration.retraction import fit_retraction
    from tests.guidance.registration.test_retraction import _bowel_move, _exposed_sweep

    case = coarse_phantom
    dose = _Dose()
    editor = AnatomyEditor(case, dose_service=dose)
    editor.retract("BOWEL", _move(case, (0.0, -10.0, 0.0), 0.0))    # an earlier rough move
    move = _bowel_move(case)
    few = fit_retraction(case, "BOWEL", _exposed_sweep(case, "BOWEL", move, rng, n=40))
    with pytest.raises(InputError, match=r"^pointer sweep of BOWEL not applied: 40 sweep "
                                         r"points, need 50"):
        editor.retract_from_sweep(few)
    assert len(editor.edits) == 1 and len(dose.cases) == 1
    fit = fit_retraction(case, "BOWEL", _exposed_sweep(case, "BOWEL", move, rng))
    editor.retract_from_sweep(fit)
    # the organ ends where the sweep found it, whatever the earlier move
    np.testing.assert_allclose(editor.retraction_of("BOWEL"), fit.patient_from_retracted,
                               atol=1e-9)
    assert next(reversed(list(editor.edits))).provenance.how.startswith(
        "pointer sweep (300 points")


def _frame_with_retractor(camera_from_patient, patient_from_retractor, *, tracked=True):
    """A monitor frame as the loop gives it: the retractor seen by the camera."""
    from types import SimpleNamespace

    from guidance.loop.guidance_loop import ToolStatus
    from guidance.tracking.pose_filter import TrackingState

    state = TrackingState.TRACKING if tracked else TrackingState.STALE
    tools = {"retractor": ToolStatus(state, camera_from_patient @ patient_from_retractor, 0.0)}
    return SimpleNamespace(result=SimpleNamespace(camera_from_patient=camera_from_patient,
                                                  tools=tools))


def test_the_live_retractor_moves_the_organ_only_while_grabbed_and_tracked(
        coarse_phantom, rng, tmp_path) -> None:
    from guidance.monitor.anatomy import RetractorFollower
    from tests.conftest import random_rigid

    case = coarse_phantom
    with SessionLog.create(tmp_path / "s.sqlite") as session:
        editor = AnatomyEditor(case, session_log=session)
        follower = RetractorFollower(editor)
        camera = random_rigid(rng, 300.0)
        blade = random_rigid(rng, 50.0)
        with pytest.raises(InputError, match="retractor is not tracked"):
            follower.grab("BOWEL", _frame_with_retractor(camera, blade, tracked=False))
        follower.grab("BOWEL", _frame_with_retractor(camera, blade))
        pull = _move(case)                              # the blade pulls 35 mm, 4 deg
        assert follower.update(_frame_with_retractor(camera, pull @ blade))
        np.testing.assert_allclose(editor.retraction_of("BOWEL"), pull, atol=1e-9)
        assert editor.previewing and len(editor.edits) == 0
        # a held (STALE) pose does not move it
        assert not follower.update(_frame_with_retractor(camera, blade, tracked=False))
        np.testing.assert_allclose(editor.retraction_of("BOWEL"), pull, atol=1e-9)
        follower.release()
        assert len(editor.edits) == 1 and not editor.previewing
        assert next(iter(editor.edits)).provenance.how == "tracked retractor"
        assert not follower.update(_frame_with_retractor(camera, blade))   # released
        np.testing.assert_allclose(editor.retraction_of("BOWEL"), pull, atol=1e-9)
    with SessionLog.open(tmp_path / "s.sqlite", readonly=True) as back:
        actions = [e.payload["action"] for e in back.events("action")]
    assert actions == ["retractor_grab", "retractor_release"]


def test_iort_run_shows_and_saves_the_edits_of_a_case_folder(tmp_path) -> None:
    """``iort run CASE`` on a case folder: its saved edits are applied from the start and
    a new one is saved there (a folder that cannot take it: a warning, the edit stays)."""
    from guidance.cli.commands.run import _attach_anatomy
    from guidance.monitor.feed import ScriptedFeed
    from guidance.monitor.logic import MonitorLogic
    from guidance.monitor.rehearsal import phantom_view, slab_dose
    from models.patient.case_store import load_edits, save_case, save_edits
    from models.patient.edits import EditList, Retraction

    view = phantom_view()
    folder = save_case(view.case, tmp_path / "case")
    first = _move(view.case, (0.0, -10.0, 0.0), 0.0)
    save_edits(folder, EditList([Retraction("BOWEL", first)]))
    feed = ScriptedFeed(view.shots([(0.0, 0.0, 0.0)] * 3), view.camera_matrix,
                        view.background(), fps=30.0, fre_mm=0.5, tre_mm=0.9, loop=True)
    with SessionLog.create(tmp_path / "s.sqlite") as session:
        logic = MonitorLogic(view.case, view.plan, feed, dose_fn=slab_dose,
                             session_log=session)
        try:
            _attach_anatomy(logic, str(folder))
            editor = logic.anatomy
            np.testing.assert_allclose(editor.retraction_of("BOWEL"), first, atol=1e-12)
            assert "BOWEL:preoperative" in logic.scene.items      # shown from the start
            editor.retract("STOMACH", _move(view.case, (0.0, -5.0, 0.0), 0.0))
            assert len(load_edits(folder)) == 2
            (folder / "edits.json").write_text("damaged")       # the folder breaks
            editor.undo()
            assert len(editor.edits) == 1                        # the live anatomy goes on
        finally:
            logic.close()
    with SessionLog.open(tmp_path / "s.sqlite", readonly=True) as back:
        assert any("not saved in the case folder" in e.payload["message"]
                   for e in back.events("warning"))
