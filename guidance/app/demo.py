"""``iort demo``: the whole guidance loop on the built-in phantom, with known truth.

Steps (each the same code a clinical case uses):

1. write the phantom as real DICOM (CT series + RTSTRUCT) and import it back;
2. simulate the procedure (:mod:`guidance.sim.scenario`): the pointer touches each skin
   fiducial, then the applicator settles on the tumour bed, seen by a hand-held camera;
3. run the :class:`~guidance.loop.guidance_loop.GuidanceLoop` on those frames: marker detection,
tool
   poses, pose filtering; collect the fiducials and register (Arun/Umeyama), report FRE;
4. compute the electron dose whenever the tracked applicator moved (pencil beam on the CT);
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
from guidance.record.report import write_report
from guidance.record.session_log import SessionLog, session_log_path
from guidance.record.session_report import coverage_rows
from guidance.record.treatment_report import (
    ReportContent,
    person_name,
    write_pdf,
)
from guidance.registration.fiducials import FiducialRegistration
from guidance.registration.pointer import PointerRegistration
from guidance.render.overlay import OverlayRenderer, OverlayStatus
from guidance.render.scene import (
    STYLE_ISODOSE,
    Scene,
    SceneItem,
    isodose_surface,
)
from guidance.render.scene_builder import build_scene
from guidance.sim.scenario import Scenario, ScenarioOptions, default_camera
from guidance.tracking.pose_filter import TrackingState
from guidance.treatment.dose_check import load_plan_limits
from guidance.treatment.dose_service import DEFAULT_MACHINE, DoseScheduler
from models.base.errors import IortError
from models.base.transforms import apply_transform, invert_rigid, transform_difference
from models.beams.library import ElectronBeam
from models.dicom.reader import read_case
from models.dicom.writer import write_phantom
from models.dose.electron import DoseResult
from models.dose.engine import ElectronDoseEngine
from models.evaluation.dvh import DVH, compute_dvh, resample_dose
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
    dose_ms: list[float] = field(default_factory=list)
    dose_failures: list[str] = field(default_factory=list)
    overlay_frames: int = 0
    target_errors_px: list[float] = field(default_factory=list)
    stale_frames: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class DemoResult:
    """Outputs of a demo run: the summary (also in ``summary.json``) and the files written."""

    summary: dict
    out_dir: Path
    images: list[Path]
    video: Path | None
    report: Path


def load_phantom_case(dicom_dir: Path, *, spacing_mm: tuple[float, float, float],
                      seed: int, progress: bool) -> Case:
    """Write the phantom as DICOM into ``dicom_dir`` and import it like a clinical case."""
    write_phantom(dicom_dir, spacing_mm=spacing_mm, seed=seed, force=True, progress=progress)
    return read_case(dicom_dir, progress=progress)


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
    engine: ElectronDoseEngine
    scene: object
    renderer: OverlayRenderer
    undistorter: object
    loop: GuidanceLoop
    session_path: Path
    session_log: SessionLog
    registration: PointerRegistration
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
    finally:
        run.loop.source.close()
        run.renderer.close()
        run.session_log.close()
        if writer is not None:
            writer.close()
    return _write_outputs(run, options, out, loop_s=time.perf_counter() - loop_start,
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
    engine = ElectronDoseEngine(case.ct, grid_mm=options.dose_grid_mm)
    log.info("dose kernels warm in %.1f s", engine.warm_up())
    scene = build_scene(case, applicator_diameter_mm=beam.applicator_diameter_mm,
                        bevel_deg=beam.bevel_deg, target=TARGET, organs=OVERLAY_ORGANS,
                        max_triangles=OVERLAY_TRIANGLES)
    renderer = OverlayRenderer(scene, calibration.camera_matrix, calibration.image_size)
    loop = GuidanceLoop(scenario.source(), scenario.tools, calibration.camera_matrix,
                        calibration.dist_coeffs, options=LoopOptions())
    # a new log per run: earlier sessions in the same folder are never overwritten
    session_path = session_log_path(folder=out)
    session_log = SessionLog.create(session_path, case_id=case.patient_id,
                                    metadata={"program": "iort demo", "seed": str(options.seed)})
    registration = PointerRegistration(
        loop, {n: case.fiducials_lps[n] for n in scenario.fiducial_names},
        scenario.fiducial_at, target_lps=target_lps,
        samples_per_fiducial=scenario.frames_per_fiducial,
        give_up=lambda i: scenario.phase_at(i) == "treatment", session_log=session_log)
    return _Run(case, beam, target_lps, calibration, scenario, engine, scene, renderer,
                undistorter_for(calibration), loop, session_path, session_log, registration)


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
    pose = result.patient_from_applicator
    if pose is not None and result.state("applicator") is TrackingState.TRACKING \
            and run.doses.offer(pose, run.beam):
        _update_dose(run.engine, run.beam, options, pose, scene, track, run.session_log)
        run.doses.finished()
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


def _write_outputs(run: _Run, options: DemoOptions, out: Path, *, loop_s: float,
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
    dvhs = _dvhs(run.case, track.dose, options) if track.dose is not None else {}
    if track.dose is not None:
        summary["dose.target_v90_percent"] = dvhs[TARGET].metrics.v90_percent
        summary["dose.target_d90_gy"] = dvhs[TARGET].metrics.d90_gy
        summary["dose.mu"] = track.dose.mu
    summary["timing.wall_s"] = time.perf_counter() - start
    summary["session_log"] = run.session_path.name
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    colors = {name: s.color_rgb for name, s in run.case.structures.items()}
    report = write_report(out / "report.html", summary=summary, dvhs=dvhs, images=run.images,
                          warnings=track.warnings, colors=colors)
    write_pdf(_record(run, summary, dvhs, colors), out / "report.pdf")
    return DemoResult(summary=summary, out_dir=out, images=run.images,
                      video=(out / "demo.mp4") if options.video else None, report=report)

def _record(run: _Run, summary: dict, dvhs: dict[str, DVH],
            colors: dict[str, tuple[int, int, int]]) -> ReportContent:
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


def _update_dose(engine: ElectronDoseEngine, beam: ElectronBeam, options: DemoOptions,
                 patient_from_applicator: np.ndarray, scene: Scene, track: _Track,
                 session_log: SessionLog) -> None:
    try:
        dose = engine.compute(patient_from_applicator, beam,
                              prescription_gy=options.prescription_gy)
    except IortError as exc:
        track.dose_failures.append(str(exc))
        log.warning("dose not computed: %s", exc)
        session_log.log_warning(f"dose not computed: {exc}", source="dose")
        return
    track.dose = dose
    track.dose_ms.append(dose.compute_ms)
    session_log.log_dose(beam={"machine": beam.machine, "energy_mev": beam.energy_mev,
                               "applicator_mm": beam.applicator_diameter_mm,
                               "bevel_deg": beam.bevel_deg},
                         coverage={"prescription_gy": dose.prescription_gy,
                                   "dmax_gy": dose.dmax_gy, "mu": dose.mu},
                         compute_ms=dose.compute_ms)
    scene.add(SceneItem("isodose", isodose_surface(dose.dose, dose.prescription_gy),
                        STYLE_ISODOSE["color"], STYLE_ISODOSE["opacity"]))


def _dvhs(case: Case, dose: DoseResult, options: DemoOptions) -> dict[str, DVH]:
    # the engine's grid holds the whole beam (zero beyond it): on the CT grid every
    # structure lies inside the dose grid, as it should for organs far from the field
    dose_on_ct = resample_dose(dose.dose, case.ct)
    out = {}
    for name in (TARGET, *REPORT_ORGANS):
        if name in case.structures and case.structures[name].mask.any():
            out[name] = compute_dvh(dose_on_ct, case.ct.with_array(case.structures[name].mask),
                                    name=name, prescription_gy=options.prescription_gy,
                                    isodose_percent=dose.isodose_percent)
    return out


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
