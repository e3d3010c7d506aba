"""Rehearsal set-up for the OR monitor: the phantom seen by a scripted camera.

Used by the monitor's tests and benchmark and by ``iort run phantom --source scripted``
(rehearsing the screen without a camera). :func:`slab_dose` is a deliberately simple
analytic electron-like field (plateau, linear fall-off) — a *display stand-in* for checking
the screen without the dose engine's run time, never a clinical dose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guidance.sim.scripted import ScriptedShot
from guidance.treatment.dose_service import BeamChoice
from models.patient.case import Case
from models.patient.volume import Volume


def slab_dose(case: Case, patient_from_applicator: np.ndarray, beam: BeamChoice) -> Volume:
    """Analytic dose (Gy) on an applicator-aligned 2 mm grid.

    Reference dose ``rx * 100 / isodose_percent`` on a plateau from 4 to 0.5 * R90 depth,
    90 % at ``r90 = 3.3 mm/MeV * E`` depth, linear to 0 at ``1.4 * r90``; laterally flat inside
    the applicator radius, linear to 0 over 6 mm.
    """
    ref = beam.prescription_gy * 100.0 / beam.isodose_percent
    radius = beam.applicator_diameter_mm / 2.0
    r90 = 3.3 * beam.energy_mev
    spacing = 2.0
    half = radius + 10.0
    n_lat = int(np.ceil(2 * half / spacing)) + 1
    n_z = int(np.ceil(1.5 * r90 / spacing)) + 1
    origin_app = np.array([-half, -half, 0.0])
    grid = Volume.from_grid(np.zeros((n_z, n_lat, n_lat), np.float32),
                            spacing_mm=(spacing, spacing, spacing), origin_mm=(0.0, 0.0, 0.0))
    affine = patient_from_applicator @ np.array([[1, 0, 0, origin_app[0]],
                                                 [0, 1, 0, origin_app[1]],
                                                 [0, 0, 1, origin_app[2]],
                                                 [0, 0, 0, 1.0]]) @ grid.patient_from_voxel
    k, j, i = np.meshgrid(np.arange(n_z), np.arange(n_lat), np.arange(n_lat), indexing="ij")
    x = origin_app[0] + i * spacing
    y = origin_app[1] + j * spacing
    z = k * spacing
    r = np.hypot(x, y)
    depth = np.interp(z, [0.0, 4.0, 0.5 * r90, r90, 1.4 * r90], [0.85, 1.0, 1.0, 0.9, 0.0])
    lateral = np.clip(1.0 - (r - radius) / 6.0, 0.0, 1.0)
    return Volume((ref * depth * lateral).astype(np.float32), affine)


@dataclass(frozen=True)
class PhantomView:
    """A phantom case seen by a camera from anterior, with the planned applicator."""

    case: Case
    plan: np.ndarray
    camera_matrix: np.ndarray
    image_size: tuple[int, int]
    camera_from_patient: np.ndarray

    def shots(self, offsets_mm: list[tuple[float, float, float]],
              visible: tuple[str, ...] = ("reference", "applicator")) -> list[ScriptedShot]:
        out = []
        for offset in offsets_mm:
            pose = self.plan.copy()
            pose[:3, 3] += np.asarray(offset)
            out.append(ScriptedShot(self.camera_from_patient, pose, visible))
        return out

    def background(self, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        width, height = self.image_size
        return rng.integers(20, 60, size=(height, width, 3), dtype=np.uint8)


def phantom_view(*, spacing_mm=(3.0, 3.0, 4.0), image_size=(640, 400)) -> PhantomView:
    """Coarse phantom, camera 400 mm anterior of the CTV, off-centre principal point."""
    from guidance.sim.camera import look_at
    from models.base.transforms import invert_rigid
    from models.patient.phantom import make_phantom, planned_patient_from_applicator

    case = make_phantom(spacing_mm=spacing_mm)
    plan = planned_patient_from_applicator(case)
    target = case.centroid_lps("CTV")
    eye = target + np.array([15.0, -400.0, 40.0])
    width, height = image_size
    camera_matrix = np.array([[1.1 * width, 0.0, width * 0.5 + 23.0],
                              [0.0, 1.08 * width, height * 0.5 - 17.0],
                              [0.0, 0.0, 1.0]])
    return PhantomView(case, plan, camera_matrix, (width, height),
                       invert_rigid(look_at(eye, target)))


#: The simulated procedure in real time (15 frames/s clock): the pointer rests 1.5 s on
#: each fiducial, the applicator comes in over 6 s, then stays on its plan.
REALTIME_FRAMES_PER_FIDUCIAL = 22
REALTIME_APPROACH_FRAMES = 90


def simulated_feed(case: Case, *, frames: int | None = 600,
                   image_size: tuple[int, int] = (1280, 720), seed: int = 0,
                   session_log=None, realtime: bool = False, field: str = "plain"):
    """The simulated procedure (:class:`guidance.sim.scenario.Scenario`) through the real loop.

    Frames are rendered by the simulated camera (lens distortion, noise...; ``field`` =
    ``"plain"`` or ``"realistic"``, the latter at 30 frames/s on the wall clock), tracked by
    :class:`guidance.loop.guidance_loop.GuidanceLoop`, registered from the pointer touching the
    fiducials (:class:`guidance.registration.pointer.PointerRegistration`, recorded in
    ``session_log``) and undistorted for the overlay.

    ``realtime`` runs the procedure on the wall clock (a slow renderer skips frames; 1.5 s
    per fiducial, 6 s of approach); ``frames=None`` gives it no end (the applicator stays
    on its plan; :meth:`SimulatedFeed.restart` starts the approach again).

    Returns
    -------
    (SimulatedFeed, Scenario)
    """
    from calibration.undistort import undistorter_for
    from guidance.loop.guidance_loop import GuidanceLoop
    from guidance.monitor.feed import SimulatedFeed
    from guidance.registration.pointer import PointerRegistration
    from guidance.sim.scenario import Scenario, ScenarioOptions, default_camera

    calibration = default_camera(image_size)
    realistic = field == "realistic"
    # the realistic field renders at 30 frames/s: its clock runs at 30 (twice the frames)
    rate = 2 if realistic else 1
    timing = {}
    if realtime or realistic:
        timing = dict(frames_per_fiducial=REALTIME_FRAMES_PER_FIDUCIAL * rate,
                      approach_frames=REALTIME_APPROACH_FRAMES * rate)
    options = ScenarioOptions(frames=frames, seed=seed, field=field,
                              frame_interval_s=1.0 / (15.0 * rate),
                              realtime=realtime or realistic, **timing)
    scenario = Scenario(case, calibration, options)
    loop = GuidanceLoop(scenario.source(realtime=realtime), scenario.tools,
                        calibration.camera_matrix, calibration.dist_coeffs)
    registration = PointerRegistration(
        loop, {n: case.fiducials_lps[n] for n in scenario.fiducial_names},
        scenario.fiducial_at, target_lps=case.centroid_lps("CTV"),
        samples_per_fiducial=2 if (realtime or realistic) else scenario.frames_per_fiducial,
        give_up=lambda i: scenario.phase_at(i) != "registration", session_log=session_log)
    undistorter = undistorter_for(calibration)
    feed = SimulatedFeed(loop, undistorter.camera_matrix, scenario=scenario,
                         undistort=undistorter.undistort, on_result=registration)
    return feed, scenario
