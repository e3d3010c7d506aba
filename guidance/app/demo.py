"""``iort demo``: the whole guidance loop on the built-in phantom, with known truth.

Steps (each the same code a clinical case uses):

1. write the phantom as real DICOM (CT series + RTSTRUCT) and import it back;
2. simulate the procedure (:mod:`guidance.sim.scenario`): the pointer touches each skin
   fiducial, the tracked retractor pulls the small bowel out of the field (grab, pull,
   release: the bowel follows the tracked retractor and the edit is recorded), then the
   applicator settles on the tumour bed, seen by a hand-held camera;
3. run the :class:`~guidance.loop.guidance_loop.GuidanceLoop` on those frames: marker detection,
tool
   poses, pose filtering; collect the fiducials and register (Arun/Umeyama), report FRE;
4. compute the electron dose whenever the tracked applicator moved (pencil beam on the CT
   as edited: the bowel where the retractor left it), organ doses beside those of the
   preoperative positions;
5. draw target, organs, applicator and the prescription isodose over the undistorted video
   from the tracked camera pose;
6. write ``overlay_NNNN.png``, ``demo.mp4``, ``summary.json`` and ``report.html``.

Everything is compared with the simulation's truth: TRE at the target centroid, applicator
position/angle error, and the run's timings go into ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from calibration.undistort import undistorter_for
from guidance.loop.guidance_loop import FrameResult, GuidanceLoop, LoopOptions
from guidance.monitor.anatomy import AnatomyEditor
from guidance.record.replay import LoggedDose
from guidance.record.report import write_report
from guidance.record.session_log import SessionLog, session_log_path
from guidance.record.session_report import coverage_rows
from guidance.record.tracking_record import TrackingRecorder, record_tracking
from guidance.record.treatment_report import (
    ReportContent,
    person_name,
    write_pdf,
)
from guidance.registration.fiducials import FiducialRegistration
from guidance.registration.pointer import PointerRegistration
from guidance.registration.retraction import RetractorCoupling
from guidance.render.overlay import OverlayRenderer, OverlayStatus
from guidance.render.scene import (
    STYLE_ISODOSE,
    SceneItem,
    isodose_surface,
)
from guidance.render.scene_builder import build_scene
from guidance.sim.scenario import Scenario, ScenarioOptions, default_camera
from guidance.tracking.pose_filter import TrackingState
from guidance.treatment.dose_check import load_plan_limits
from guidance.treatment.dose_service import (
    DEFAULT_MACHINE,
    BeamChoice,
    DoseFunction,
    DoseScheduler,
    coverage_numbers,
    dose_trigger,
    electron_dose_function,
)
from models.base.errors import IortError
from models.base.files import write_private_text
from models.base.pseudonyms import SiteKey
from models.base.transforms import apply_transform, invert_rigid, transform_difference
from models.beams.library import ElectronBeam
from models.dicom.writer import load_phantom_case
from models.dose.electron import DoseResult
from models.dose.engine import warm_up
from models.evaluation.dvh import DVH
from models.patient.case import Case
from models.patient.phantom import DEFAULT_SPACING_MM

log = logging.getLogger(__name__)

#: Structures drawn over the video (besides the target): the organs at risk near the field.
OVERLAY_ORGANS: tuple[str, ...] = ("PANCREAS", "BOWEL", "STOMACH")
#: Organs whose doses the report lists.
REPORT_ORGANS: tuple[str, ...] = ("PANCREAS", "BOWEL", "STOMACH", "KIDNEY_L", "KIDNEY_R",
                                  "SPINE", "LIVER")
TARGET = "CTV"
#: Triangle budget per structure in the live overlay.
OVERLAY_TRIANGLES = 6_000


@dataclass(frozen=True)
class DemoOptions:
    """Settings of ``iort demo``.

    Attributes
    ----------
    out_dir : Path
        Where the images, video, summary and report go.
    frames : int
        Frames of the simulated procedure.
    spacing_mm : (float, float, float)
        CT voxel size of the phantom (column, row, slice).
    seed : int
        Seed of the phantom and of the simulation.
    machine, energy_mev, applicator_mm, bevel_deg : beam choice
    prescription_gy : float
        Dose at the prescription isodose (90 %).
    dose_grid_mm : float
        Dose grid spacing.
    video : bool
        Write ``demo.mp4``.
    progress : bool
        Show progress bars on the long steps.
    field : {"plain", "realistic"}
        How the simulated camera renders the field (:class:`ScenarioOptions`).
    """

    out_dir: Path = Path("demo_out")
    frames: int = 60
    spacing_mm: tuple[float, float, float] = DEFAULT_SPACING_MM
    seed: int = 0
    machine: str = DEFAULT_MACHINE
    energy_mev: float = 8.0
    applicator_mm: float = 70.0
    bevel_deg: float = 0.0
    prescription_gy: float = 10.0
    dose_grid_mm: float = 2.0
    video: bool = True
    progress: bool = True
    field: str = "plain"


@dataclass
class _Track:
    """What the demo accumulates frame by frame."""

    applicator_errors_mm: list[float] = field(default_factory=list)
    applicator_errors_deg: list[float] = field(default_factory=list)
    dose: DoseResult | None = None
    dose_pose: np.ndarray | None = None
    dose_ms: list[float] = field(default_factory=list)
    dose_failures: list[str] = field(default_factory=list)
    overlay_frames: int = 0
    target_errors_px: list[float] = field(default_factory=list)
    stale_frames: int = 0
    warnings: list[str] = field(default_factory=list)
    #: The retracted organ's centre: tracked (retractor) against the simulation's truth (mm).
    organ_follow_errors_mm: list[float] = field(default_factory=list)
    retractor_errors_mm: list[float] = field(default_factory=list)
    retraction_error_mm: float | None = None
    retraction_error_deg: float | None = None


@dataclass
class DemoResult:
    """Outputs of a demo run: the summary (also in ``summary.json``) and the files written."""

    summary: dict
    out_dir: Path
    images: list[Path]
    video: Path | None
    report: Path


def _registration_error_mm(estimate: np.ndarray, truth: np.ndarray, point_lps: np.ndarray
                           ) -> float:
    """Distance (mm) between a patient point mapped through the estimated and true
    ``patient_from_reference`` (the TRE at that point)."""
    through_truth = apply_transform(invert_rigid(truth), point_lps)
    return float(np.linalg.norm(apply_transform(estimate, through_truth) - point_lps))


def _banner(scenario: Scenario, result: FrameResult, track: _Track, beam: ElectronBeam,
            registration: PointerRegistration) -> OverlayStatus:
    index = result.frame.index
    if registration.result is None:
        name = scenario.fiducial_at(index)
        done = len(registration.collector.collected())
        total = len(scenario.fiducial_names)
        text = (f"REGISTRATION  pointer on {name}  ({done}/{total} collected)" if name
                else f"REGISTRATION incomplete ({done}/{total} fiducials)")
        return OverlayStatus(tracking_ok=True, banner=text)
    ref_state = result.state("reference")
    if result.camera_from_patient is None or ref_state is not TrackingState.TRACKING:
        return OverlayStatus(tracking_ok=False,
                             banner=f"REFERENCE {ref_state.name} - overlay hidden")
    text = f"FRE {registration.result.fre_mm:.2f} mm"
    app_state = result.state("applicator")
    if app_state is not TrackingState.TRACKING:
        text += f" | applicator {app_state.name}"
    if track.dose is not None:
        text += (f" | {beam.machine.upper()} {beam.energy_mev:g} MeV, "
                 f"{beam.applicator_diameter_mm:g} mm | Rx {track.dose.prescription_gy:g} Gy"
                 f" @ {track.dose.isodose_percent:g} %")
    return OverlayStatus(tracking_ok=True, banner=text)


@dataclass
class _Run:
    """Everything one demo run wires together (built by :func:`_prepare`)."""

    case: Case
    beam: ElectronBeam
    target_lps: np.ndarray
    calibration: object
    scenario: Scenario
    dose_fn: DoseFunction
    choice: BeamChoice
    scene: object
    renderer: OverlayRenderer
    undistorter: object
    loop: GuidanceLoop
    session_path: Path
    session_log: SessionLog
    registration: PointerRegistration
    recorder: TrackingRecorder
    anatomy: AnatomyEditor
    coupling: RetractorCoupling | None = None
    grab_truth: np.ndarray | None = None      # the organ's true move when it was grabbed
    doses: DoseScheduler = field(default_factory=DoseScheduler)  # recompute after 1 mm/1 deg
    track: _Track = field(default_factory=_Track)
    images: list[Path] = field(default_factory=list)


def run_demo(options: DemoOptions) -> DemoResult:
    """Run the demo end to end and write its outputs (see the module docstring)."""
    start = time.perf_counter()
    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("overlay_*.png"):
        old.unlink()
    run = _prepare(options, out)
    writer = _video_writer(out / "demo.mp4") if options.video else None
    loop_start = time.perf_counter()
    try:
        _run_frames(run, options, out, writer)
        run.recorder.flush()
        dvhs = _dvhs(run, run.anatomy.case)   # on the anatomy as it is now (edited)
        _log_final_pose(run, dvhs)
    finally:
        run.loop.source.close()
        run.renderer.close()
        run.session_log.close()
        if writer is not None:
            writer.close()
    return _write_outputs(run, options, out, dvhs, loop_s=time.perf_counter() - loop_start,
                          start=start)


def _prepare(options: DemoOptions, out: Path) -> _Run:
    """Phantom as DICOM and back, camera, scenario, warm dose kernels, views, loop, log."""
    beam = ElectronBeam(options.machine, options.energy_mev, options.applicator_mm,
                        options.bevel_deg)
    case = load_phantom_case(out / "dicom", spacing_mm=options.spacing_mm, seed=options.seed,
                             progress=options.progress)
    target_lps = case.centroid_lps(TARGET)
    calibration = default_camera()
    scenario = Scenario(case, calibration, ScenarioOptions(frames=options.frames,
                                                           seed=options.seed,
                                                           field=options.field),
                        applicator_diameter_mm=options.applicator_mm)
    # compile/load the dose kernels before the loop needs them
    dose_fn = electron_dose_function(options.machine, grid_mm=options.dose_grid_mm)
    choice = BeamChoice(energy_mev=options.energy_mev,
                        applicator_diameter_mm=options.applicator_mm,
                        bevel_deg=options.bevel_deg, prescription_gy=options.prescription_gy)
    log.info("dose kernels warm in %.1f s", warm_up())
    scene = build_scene(case, applicator_diameter_mm=beam.applicator_diameter_mm,
                        bevel_deg=beam.bevel_deg, target=TARGET, organs=OVERLAY_ORGANS,
                        max_triangles=OVERLAY_TRIANGLES)
    renderer = OverlayRenderer(scene, calibration.camera_matrix, calibration.image_size)
    loop = GuidanceLoop(scenario.source(), scenario.tools, calibration.camera_matrix,
                        calibration.dist_coeffs, options=LoopOptions())
    # a new log per run: earlier sessions in the same folder are never overwritten
    session_path = session_log_path(folder=out)
    session_log = SessionLog.create(session_path,
                                    case_id=SiteKey.load().pseudonym(case.patient_id,
                                                                     prefix="case-"),
                                    metadata={"program": "iort demo", "seed": str(options.seed),
                                              "phantom_spacing_mm": list(options.spacing_mm),
                                              "machine": options.machine,
                                              "dose_grid_mm": options.dose_grid_mm,
                                              "ct_sha256": case.ct.digest_sha256(),
                                              "plan_patient_from_applicator":
                                                  scenario.planned_patient_from_applicator,
                                              "planned_beam": asdict(choice)})
    recorder = record_tracking(loop, session_log)
    registration = PointerRegistration(
        loop, {n: case.fiducials_lps[n] for n in scenario.fiducial_names},
        scenario.fiducial_at, target_lps=target_lps,
        samples_per_fiducial=scenario.frames_per_fiducial,
        give_up=lambda i: scenario.phase_at(i) != "registration", session_log=session_log)
    anatomy = AnatomyEditor(case, session_log=session_log, who="surgeon (simulated)")
    return _Run(case, beam, target_lps, calibration, scenario, dose_fn, choice, scene,
                renderer, undistorter_for(calibration), loop, session_path, session_log,
                registration, recorder, anatomy)


def _run_frames(run: _Run, options: DemoOptions, out: Path, writer) -> None:
    """Every frame of the scenario through the loop, the dose and the overlay."""
    from tqdm import tqdm

    run.loop.source.open()
    bar = tqdm(total=options.frames, desc="guidance loop", unit="frame",
               disable=not options.progress)
    while (result := run.loop.step()) is not False:
        bar.update(1)
        if result is None:
            continue
        composed = _one_frame(run, options, result)
        path = out / f"overlay_{result.frame.index:04d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(composed, cv2.COLOR_RGB2BGR))
        run.images.append(path)
        if writer is not None:
            writer.append_data(composed)
    bar.close()


def _one_frame(run: _Run, options: DemoOptions, result: FrameResult) -> np.ndarray:
    """Registration, dose, truth comparison and the composed overlay (RGB) of one frame."""
    index, track, scene = result.frame.index, run.track, run.scene
    run.registration(result)
    _retraction_step(run, result)
    pose = result.patient_from_applicator
    trigger = dose_trigger(run.doses, result, run.choice)
    if trigger is not None:
        _update_dose(run, trigger)
    truth_app = run.scenario.patient_from_applicator_at(index)
    if truth_app is not None and pose is not None:
        err_mm, err_deg = transform_difference(pose, truth_app)
        track.applicator_errors_mm.append(err_mm)
        track.applicator_errors_deg.append(err_deg)
    applicator = scene.items["applicator"]
    applicator.visible = pose is not None
    if applicator.visible:
        scene.set_pose("applicator", pose)
    status = _banner(run.scenario, result, track, run.beam, run.registration)
    track.stale_frames += int(not status.tracking_ok)
    video_rgb = cv2.cvtColor(run.undistorter.undistort(result.frame.image), cv2.COLOR_BGR2RGB)
    camera_from_patient = result.camera_from_patient  # None until registered
    composed = run.renderer.render(video_rgb, camera_from_patient, status)
    if camera_from_patient is not None and status.tracking_ok:
        track.overlay_frames += 1
        track.target_errors_px.append(_target_error_px(
            run.calibration.camera_matrix, camera_from_patient,
            result.frame.truth.camera_from_patient, run.target_lps))
    return composed


def _retraction_step(run: _Run, result: FrameResult) -> None:
    """The retraction phase: grab at the first tracked frame, the organ follows the tracked
    retractor (a preview), release freezes it as an edit; errors against the truth."""
    scenario, index, track = run.scenario, result.frame.index, run.track
    if scenario.phase_at(index) != "retraction":
        return
    name = scenario.options.retraction_structure
    pose = run.loop.patient_from_tool(result, "retractor")
    truth = scenario.patient_from_retractor_at(index)
    centre = run.case.centroid_lps(name)
    if pose is not None and truth is not None:
        track.retractor_errors_mm.append(float(np.linalg.norm(
            apply_transform(pose @ invert_rigid(truth), centre[None])[0] - centre)))
    if run.coupling is None and pose is not None:
        run.coupling = RetractorCoupling(name)
        run.coupling.grab(pose)
        run.session_log.log_action("retractor_grab", structure=name)
        run.grab_truth = scenario.patient_from_retracted_at(index)
    if run.coupling is None:
        return
    if run.coupling.coupled:
        moved = run.coupling.follow(pose)
        try:
            run.anatomy.preview(name, moved)
        except IortError as exc:
            log.warning("retraction preview refused: %s", exc)
        want = scenario.patient_from_retracted_at(index) @ invert_rigid(run.grab_truth)
        track.organ_follow_errors_mm.append(float(np.linalg.norm(
            apply_transform(moved @ invert_rigid(want), centre[None])[0] - centre)))
    if scenario.retraction_event_at(index) == "release" and run.coupling.coupled:
        edit = run.coupling.release(who=run.anatomy.who)
        try:
            run.anatomy.add(edit)
        except IortError as exc:
            track.warnings.append(f"retraction not applied: {exc}")
            run.session_log.log_warning(f"retraction not applied: {exc}", source="anatomy")
            run.anatomy.cancel_preview()
            return
        run.session_log.log_action("retractor_release", structure=name)
        want = scenario.patient_from_retracted_at(index)
        track.retraction_error_mm, track.retraction_error_deg = transform_difference(
            run.anatomy.retraction_of(name), want)
        # the dose follows the edited anatomy (the dose function keeps an engine per CT)
        run.doses.invalidate()
    _show_retraction(run, name)


def _show_retraction(run: _Run, name: str) -> None:
    """The retracted organ where it is now in the overlay (its mesh moved rigidly)."""
    if name in run.scene.items:
        run.scene.set_pose(name, run.anatomy.retraction_of(name))


def _write_outputs(run: _Run, options: DemoOptions, out: Path, dvhs: dict[str, DVH], *,
                   loop_s: float,
                   start: float) -> DemoResult:
    """summary.json and report.html from what the run tracked."""
    track = run.track
    if run.registration.result is None:
        outcome = run.registration.outcome
        why = ("; ".join(outcome.reasons) if outcome is not None
               else "fewer than 3 fiducials collected")
        track.warnings.append(f"registration not used ({why}): no overlay was drawn")
    summary = _summary(options, run.case, run.beam, run.scenario, track,
                       run.registration.result, run.loop, loop_s, time.perf_counter() - start,
                       run.target_lps)
    # organ doses where the preoperative CT saw them, beside where they are now
    moved = {o.structure for o in run.anatomy.outlines()}
    before = ({n: d for n, d in _dvhs(run, run.case).items() if n in moved}
              if track.dose is not None and moved else {})
    summary.update(_anatomy_summary(run, dvhs, before))
    if track.dose is not None:
        summary["dose.target_v90_percent"] = dvhs[TARGET].metrics.v90_percent
        summary["dose.target_d90_gy"] = dvhs[TARGET].metrics.d90_gy
        summary["dose.mu"] = track.dose.mu
    summary["timing.wall_s"] = time.perf_counter() - start
    summary["session_log"] = run.session_path.name
    write_private_text(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    colors = {name: s.color_rgb for name, s in run.case.structures.items()}
    report = write_report(out / "report.html", summary=summary, dvhs=dvhs, images=run.images,
                          warnings=track.warnings, colors=colors,
                          anatomy=_edit_lines(run), preoperative=before)
    write_pdf(_record(run, summary, dvhs, colors, before), out / "report.pdf")
    return DemoResult(summary=summary, out_dir=out, images=run.images,
                      video=(out / "demo.mp4") if options.video else None, report=report)

def _edit_lines(run: _Run) -> list[str]:
    """The edit list as the reports print it ("BOWEL moved 35 mm, 4 deg, by tracked
    retractor")."""
    return [f"{text}, by {edit.provenance.how}"
            for text, edit in zip(run.anatomy.descriptions(), run.anatomy.edits, strict=True)]


def _anatomy_summary(run: _Run, dvhs: dict[str, DVH], before: dict[str, DVH]) -> dict:
    """summary.json keys of the retraction step, against the simulation's truth."""
    track = run.track
    out: dict = {"anatomy.edits": _edit_lines(run), "anatomy.edit_count": len(run.anatomy.edits)}
    if track.organ_follow_errors_mm:
        out["anatomy.follow_error_max_mm"] = float(np.max(track.organ_follow_errors_mm))
        out["anatomy.retractor_error_max_mm"] = (float(np.max(track.retractor_errors_mm))
                                                 if track.retractor_errors_mm else None)
    if track.retraction_error_mm is not None:
        out["anatomy.retraction_error_mm"] = track.retraction_error_mm
        out["anatomy.retraction_error_deg"] = track.retraction_error_deg
    for name in before:
        # (an organ moved entirely out of the dose grid has no DVH: 0 Gy, evaluate_dose's rule)
        out[f"anatomy.{name}_dmax_gy"] = dvhs[name].metrics.dmax_gy if name in dvhs else 0.0
        out[f"anatomy.{name}_preoperative_dmax_gy"] = before[name].metrics.dmax_gy
    return out


def _record(run: _Run, summary: dict, dvhs: dict[str, DVH],
            colors: dict[str, tuple[int, int, int]],
            before: dict[str, DVH] | None = None) -> ReportContent:
    """The demo's treatment record (report.pdf): the numbers it has in hand."""
    dose = run.track.dose
    beam: dict[str, object] = {"machine": run.beam.machine, "energy_mev": run.beam.energy_mev,
                               "applicator_diameter_mm": run.beam.applicator_diameter_mm,
                               "bevel_deg": run.beam.bevel_deg,
                               "prescription_gy": summary["beam.prescription_gy"]}
    if dose is not None:
        beam.update(mu=round(float(dose.mu), 1), output_factor=round(dose.output_factor, 4))
    limits = load_plan_limits()
    rows = coverage_rows({n: asdict(d.metrics) for n, d in dvhs.items()}, TARGET,
                         prescription_gy=float(summary["beam.prescription_gy"]), limits=limits)
    shown = run.images[:: max(1, len(run.images) // 4)][:4]
    return ReportContent(
        title="IORT guidance demo — treatment record (simulated)",
        patient={"Patient": person_name(run.case.patient_name),
                 "Patient ID": run.case.patient_id or "—",
                 "Session": run.session_path.name},
        beam=beam, mu_estimated=bool(dose is not None and dose.mu_estimated),
        confirmed=[{"time": "end of run",
                    "distance_to_plan_mm": summary.get("applicator.position_error_mm"),
                    "angle_to_plan_deg": summary.get("applicator.angle_error_deg"),
                    "user": "simulated"}] if dose is not None else [],
        registration={k.split(".", 1)[1]: v for k, v in summary.items()
                      if k.startswith("registration.")},
        dvh_curves={n: (d.dose_edges_gy, d.cumulative_percent) for n, d in dvhs.items()},
        dvh_colors=colors, prescription_gy=float(summary["beam.prescription_gy"]),
        coverage=rows, images=shown, warnings=list(run.track.warnings),
        anatomy=_edit_lines(run),
        anatomy_doses=[(n, dvhs[n].metrics.dmax_gy, b.metrics.dmax_gy)
                       for n, b in (before or {}).items() if n in dvhs],
        notes=["Simulated procedure on the built-in phantom: the pose errors are against the "
               "simulation's truth. Not a clinical record.", f"Limits: {limits.provenance}"],
        versions={k: str(v) for k, v in summary.get("versions", {}).items()})


def _target_error_px(camera_matrix: np.ndarray, camera_from_patient: np.ndarray,
                     true_camera_from_patient: np.ndarray, point_lps: np.ndarray) -> float:
    """Pixel distance between where the overlay draws a CT point (tracked pose) and where
    the point really is in the undistorted image (true pose)."""
    pixels = [cv2.projectPoints(point_lps[None], cv2.Rodrigues(pose[:3, :3])[0], pose[:3, 3],
                                camera_matrix, None)[0].reshape(2)
              for pose in (camera_from_patient, true_camera_from_patient)]
    return float(np.linalg.norm(pixels[0] - pixels[1]))


def _logged_beam(run: _Run, computed_from: np.ndarray) -> dict:
    """The beam as the session log records it (what a replay recomputes)."""
    return {**asdict(run.choice), "machine": run.beam.machine,
            "dose_patient_from_applicator": computed_from}


def _update_dose(run: _Run, patient_from_applicator: np.ndarray) -> None:
    track = run.track
    try:
        dose = run.dose_fn(run.anatomy.case, patient_from_applicator, run.choice)
    except IortError as exc:
        track.dose_failures.append(str(exc))
        log.warning("dose not computed: %s", exc)
        run.session_log.log_warning(f"dose not computed: {exc}", source="dose")
        return
    track.dose = dose
    track.dose_pose = patient_from_applicator
    track.dose_ms.append(dose.compute_ms)
    run.session_log.log_dose(
        beam={**_logged_beam(run, dose.patient_from_applicator),
              "patient_from_applicator": patient_from_applicator},
        coverage={"prescription_gy": dose.prescription_gy, "dmax_gy": dose.dmax_gy,
                  "mu": dose.mu},
        compute_ms=dose.compute_ms)
    run.scene.add(SceneItem("isodose", isodose_surface(dose.dose, dose.prescription_gy),
                            STYLE_ISODOSE["color"], STYLE_ISODOSE["opacity"]))


def _dvhs(run: _Run, case: Case) -> dict[str, DVH]:
    """DVHs of the last dose on ``case`` (the edited anatomy, or the preoperative one to
    compare): the monitor's rule, the same numbers a replay recomputes."""
    dose = run.track.dose
    if dose is None:
        return {}
    names = [n for n in (TARGET, *REPORT_ORGANS)
             if n in case.structures and case.structures[n].mask.any()]
    dvhs, _ = LoggedDose(case, default_machine=run.beam.machine).evaluate(
        dose.dose, run.choice, names)
    return dvhs


def _log_final_pose(run: _Run, dvhs: dict[str, DVH]) -> None:
    """The simulated procedure ends with the applicator placed: recorded as confirmed."""
    dose = run.track.dose
    if dose is None or run.track.dose_pose is None:
        return
    run.session_log.log_confirmed_pose(
        patient_from_applicator=run.track.dose_pose,
        beam=_logged_beam(run, dose.patient_from_applicator),
        coverage=coverage_numbers({n: d.metrics for n, d in dvhs.items()}),
        distance_to_plan_mm=_median(run.track.applicator_errors_mm),
        angle_to_plan_deg=_median(run.track.applicator_errors_deg), user="simulated")


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def _summary(options: DemoOptions, case: Case, beam: ElectronBeam, scenario: Scenario,
             track: _Track, reg: FiducialRegistration | None, loop: GuidanceLoop,
             loop_s: float, wall_s: float, target_lps: np.ndarray) -> dict:
    summary: dict = {
        "registration.fre_mm": reg.fre_mm if reg else None,
        "registration.tre_mm": (_registration_error_mm(reg.patient_from_reference,
                                                       scenario.patient_from_reference,
                                                       target_lps) if reg else None),
        "registration.tre_predicted_mm": reg.predicted_tre_mm if reg else None,
        "registration.fiducials": len(reg.names) if reg else 0,
        "applicator.position_error_mm": (float(np.median(track.applicator_errors_mm))
                                         if track.applicator_errors_mm else None),
        "applicator.angle_error_deg": (float(np.median(track.applicator_errors_deg))
                                       if track.applicator_errors_deg else None),
        "applicator.position_error_max_mm": (float(np.max(track.applicator_errors_mm))
                                             if track.applicator_errors_mm else None),
        "applicator.tracked_frames": len(track.applicator_errors_mm),
        "dose.target_v90_percent": None,
        "dose.updates": len(track.dose_ms),
        "dose.failures": len(track.dose_failures),
        "beam.machine": beam.machine,
        "beam.energy_mev": beam.energy_mev,
        "beam.applicator_mm": beam.applicator_diameter_mm,
        "beam.bevel_deg": beam.bevel_deg,
        "beam.prescription_gy": options.prescription_gy,
        "timing.frames": loop.frames_processed,
        "timing.frames_skipped": loop.frames_skipped,
        "timing.fps": loop.frames_processed / loop_s if loop_s > 0 else 0.0,
        "timing.dose_ms": float(np.median(track.dose_ms)) if track.dose_ms else None,
        "timing.loop_s": loop_s,
        "timing.wall_s": wall_s,
        "overlay.frames_drawn": track.overlay_frames,
        "overlay.frames_stale": track.stale_frames,
        "overlay.target_error_px": (float(np.median(track.target_errors_px))
                                    if track.target_errors_px else None),
        "overlay.target_error_max_px": (float(np.max(track.target_errors_px))
                                        if track.target_errors_px else None),
        "case.ct_shape": list(case.ct.shape),
        "case.spacing_mm": [float(v) for v in case.ct.spacing_mm],
        "versions": _versions(),
    }
    return summary


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("iort-guidance", "numpy", "scipy", "pydicom", "vtk", "pyvista",
                 "opencv-contrib-python-headless", "numba", "open3d"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _video_writer(path: Path):
    import imageio.v2 as imageio

    return imageio.get_writer(str(path), fps=15, codec="libx264", quality=7,
                              macro_block_size=8, ffmpeg_log_level="error")
