"""Tracking and registration speed and accuracy on the simulated camera (720p, known truth).

Keys
----
tracking.fps                  detect + PnP + filter per 1280x720 frame with the reference
                              plate, pointer and applicator in view (rendering excluded), 1/s
tracking.latency_ms           frame received -> filtered poses of that frame, median, ms
tracking.position_error_mm    reference plate 20-50 cm, default noise: median position error, mm
tracking.angle_error_deg      same frames, median rotation error, deg
tracking.realistic_position_error_mm  realistic field (open abdomen, lamp, gradient,
                              vignetting, flicker, noise, lens distortion, moving gloved hands),
                              applicator plate 30-50 cm from the camera: median position error
                              of the applicator frame (centre of the end face, 180 mm below the
                              plate), over the frames where it is tracked, mm
tracking.realistic_angle_error_deg    same frames, median rotation error, deg
tracking.realistic_tracked_percent    frames of those poses with an applicator pose, %
tracking.realistic_wrong_percent      frames with a pose more than 2 mm / 1 deg off, %
tracking.realistic_wrong_multi_marker_percent  those among poses from 2 or more markers, %
tracking.realistic_single_marker_percent       frames whose pose came from one marker (the
                              others hidden): a lone square cannot be checked, %
registration.tre_measured_mm  paired point, 5 fiducials, FLE 0.5 mm (RMS 3-D), 100 trials:
                              RMS TRE at a deep target, mm
registration.tre_median_mm    same trials, median TRE, mm
registration.tre_predicted_mm Fitzpatrick-West prediction for that target, mm
registration.icp_s            point-to-plane ICP, 50k swept points, 10 mm / 10 deg start, s
registration.icp_error_mm     RMS point error after that ICP, mm
"""

from __future__ import annotations

import numpy as np
import pyvista as pv

from benchmarks import best_time_s
from guidance.frames import Frame, ListSource
from guidance.loop.guidance_loop import GuidanceLoop
from guidance.registration import predict_tre_mm, register_paired_points
from guidance.registration.surface import register_surface, surface_points
from guidance.sim.camera import SceneMesh, SimEffects, SimulatedCamera, random_camera_from_tool
from guidance.tracking.markers import MarkerTracker
from guidance.tracking.tools import load_builtin_tools
from models.base.transforms import transform_difference, transform_from_rotvec

GROUP = "tracking"

_K = np.array([[1000.0, 0, 639.5], [0, 1000.0, 359.5], [0, 0, 1]])
_SIZE = (1280, 720)
_FIDUCIALS = np.array([[-85.0, -120.0, 60.0], [80.0, -118.0, 65.0], [-75.0, -115.0, -70.0],
                       [90.0, -112.0, -60.0], [5.0, -128.0, 110.0]])
_TARGET = np.array([10.0, -40.0, 0.0])


def _render_frames(rng: np.random.Generator, n: int) -> tuple[list, list, list]:
    tools = load_builtin_tools()
    backdrop = SceneMesh(pv.Plane(center=(0, 0, 900), direction=(0, 0, -1), i_size=4000,
                                  j_size=4000), (190, 150, 140))
    all_tools, single, truths = [], [], []
    with SimulatedCamera([backdrop], tools, _K, image_size=_SIZE, effects=SimEffects(),
                         rng=rng) as cam:
        for i in range(n):
            poses = {}
            for name, centre_u in (("reference", -0.3), ("pointer", 0.0), ("applicator", 0.3)):
                pose = random_camera_from_tool(rng, _K, _SIZE, distance_range_mm=(380, 480),
                                               max_tilt_deg=25, margin_px=200)
                pose[0, 3] = centre_u * pose[2, 3]
                pose[1, 3] = 0.0
                poses[name] = pose
            all_tools.append(cam.render(np.eye(4), poses).image)
            distance = 200.0 + 300.0 * i / max(n - 1, 1)
            truth = random_camera_from_tool(rng, _K, _SIZE, distance_range_mm=(distance,) * 2,
                                            margin_px=260)
            single.append(cam.render(np.eye(4), {"reference": truth}).image)
            truths.append(truth)
    return all_tools, single, truths


def _realistic_errors(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Applicator end-face errors (mm, deg) on the realistic field, per tracked frame, and
    the number of markers each pose used.

    Camera around the scenario's view direction (+-0.2 rad), applicator tube standing in
    the opening (tilt sd 7 deg, position sd 8 mm), its plate 300-500 mm from the camera,
    the reference plate and the scripted hands in view.
    """
    from guidance.sim.camera import facing_pose, look_at
    from guidance.sim.field import FieldLayout, RealisticField, SurgeonHands
    from guidance.sim.scenario import VIEW_DIRECTION, default_camera
    from models.base.transforms import invert_rigid

    calibration = default_camera(_SIZE)
    tools = load_builtin_tools()
    layout = FieldLayout()
    centre = layout.opening_centre_mm
    reference = facing_pose(centre + np.array([-150.0, -40.0, 30.0]),
                            centre + VIEW_DIRECTION * 400.0)
    hands = SurgeonHands(layout, np.random.default_rng(1), period_s=3.0)
    tracker = MarkerTracker(tools, calibration.camera_matrix, calibration.dist_coeffs)
    tool_from_applicator = tools["applicator"].tool_from_applicator
    beam_posterior = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    errors, n_markers = [], []
    with RealisticField(tools, calibration.camera_matrix, dist_coeffs=calibration.dist_coeffs,
                        rng=rng, layout=layout, patient_from_reference_post=reference) as field:
        for i in range(n):
            app = np.eye(4)
            app[:3, :3] = beam_posterior @ transform_from_rotvec(
                rng.normal(0.0, np.radians(7.0), 3), np.zeros(3))[:3, :3]
            app[:3, 3] = centre + np.array([0.0, 60.0, 0.0]) + rng.normal(0.0, 8.0, 3)
            patient_from_tool = app @ invert_rigid(tool_from_applicator)
            view = VIEW_DIRECTION + rng.normal(0.0, 0.2, 3)
            distance = 300.0 + 200.0 * (i + 0.5) / n
            eye = patient_from_tool[:3, 3] + view / np.linalg.norm(view) * distance
            shot = field.render(invert_rigid(look_at(eye, centre)),
                                {"applicator": patient_from_tool, "reference": reference},
                                patient_from_hands=hands.at(0.37 * i))
            pose = tracker.track(shot.image).poses.get("applicator")
            if pose is not None:
                truth = shot.truth.camera_from_tool["applicator"]
                errors.append(transform_difference(pose.camera_from_tool @ tool_from_applicator,
                                                   truth @ tool_from_applicator))
                n_markers.append(pose.n_markers)
    return np.array(errors).reshape(-1, 2), np.array(n_markers, dtype=int)


def _tre_trials(rng: np.random.Generator, trials: int, fle_mm: float) -> np.ndarray:
    tre = []
    for _ in range(trials):
        rot = transform_from_rotvec(rng.normal(size=3), rng.uniform(-300, 300, 3))
        moving = ((_FIDUCIALS - rot[:3, 3]) @ rot[:3, :3]
                  + rng.normal(0, fle_mm / np.sqrt(3), _FIDUCIALS.shape))
        fit = register_paired_points(_FIDUCIALS, moving)
        target_moving = rot[:3, :3].T @ (_TARGET - rot[:3, 3])
        mapped = fit.fixed_from_moving[:3, :3] @ target_moving + fit.fixed_from_moving[:3, 3]
        tre.append(np.linalg.norm(mapped - _TARGET))
    return np.array(tre)


def _icp(rng: np.random.Generator) -> tuple[float, float]:
    hills = pv.ParametricRandomHills(random_seed=1, number_of_hills=30, u_res=400, v_res=400)
    points, normals = surface_points(hills.scale([15.0, 15.0, 15.0], inplace=False))
    axis = rng.normal(size=3)
    direction = rng.normal(size=3)
    truth = transform_from_rotvec(axis / np.linalg.norm(axis) * np.radians(10.0),
                                  direction / np.linalg.norm(direction) * 10.0)
    picked = points[rng.choice(len(points), 50_000, replace=False)]
    source = (picked - truth[:3, 3]) @ truth[:3, :3] + rng.normal(0, 0.3, picked.shape)
    result = register_surface(source, points, target_normals=normals,
                              initial_target_from_source=np.eye(4))
    est = result.target_from_source
    diff = source @ (est[:3, :3] - truth[:3, :3]).T + (est[:3, 3] - truth[:3, 3])
    times = [result.time_s]
    for _ in range(2):
        times.append(register_surface(source, points, target_normals=normals,
                                      initial_target_from_source=np.eye(4)).time_s)
    return min(times), float(np.sqrt(np.mean(np.sum(diff**2, axis=1))))


def run(*, quick: bool = False) -> dict[str, float]:
    """Render simulated frames once, then time and score tracking and registration."""
    rng = np.random.default_rng(20261123)
    tools = load_builtin_tools()
    all_tools, single, truths = _render_frames(rng, 4 if quick else 12)

    loop = GuidanceLoop(ListSource([]), tools, _K)
    clock = iter(np.arange(10_000) / 30.0)

    def process_all() -> None:
        for image in all_tools:
            loop.process(Frame(image, float(next(clock)), "bench", 0))

    per_frame_s = best_time_s(process_all, repeat=2 if quick else 4) / len(all_tools)
    latencies = []
    for image in all_tools:
        result = loop.process(Frame(image, float(next(clock)), "bench", 0))
        latencies.append(result.latency_s)

    tracker = MarkerTracker(tools, _K)
    errors = []
    for image, truth in zip(single, truths, strict=True):
        pose = tracker.track(image).poses.get("reference")
        errors.append(transform_difference(pose.camera_from_tool, truth) if pose is not None
                      else (np.inf, np.inf))
    errors = np.array(errors)

    n_realistic = 10 if quick else 60
    realistic, markers_used = _realistic_errors(np.random.default_rng(15), n_realistic)
    wrong = (realistic[:, 0] > 2.0) | (realistic[:, 1] > 1.0)
    tre = _tre_trials(rng, 100, 0.5)
    predicted = float(predict_tre_mm(_FIDUCIALS, _TARGET, 0.5)[0])
    icp_s, icp_error = _icp(rng)
    return {
        "tracking.fps": 1.0 / per_frame_s,
        "tracking.latency_ms": 1000.0 * float(np.median(latencies)),
        "tracking.position_error_mm": float(np.median(errors[:, 0])),
        "tracking.angle_error_deg": float(np.median(errors[:, 1])),
        "tracking.realistic_position_error_mm": float(np.median(realistic[:, 0])),
        "tracking.realistic_angle_error_deg": float(np.median(realistic[:, 1])),
        "tracking.realistic_tracked_percent": 100.0 * len(realistic) / n_realistic,
        "tracking.realistic_wrong_percent": 100.0 * float(np.sum(wrong)) / n_realistic,
        "tracking.realistic_wrong_multi_marker_percent":
            100.0 * float(np.sum(wrong & (markers_used > 1))) / n_realistic,
        "tracking.realistic_single_marker_percent":
            100.0 * float(np.sum(markers_used == 1)) / n_realistic,
        "registration.tre_measured_mm": float(np.sqrt(np.mean(tre**2))),
        "registration.tre_median_mm": float(np.median(tre)),
        "registration.tre_predicted_mm": predicted,
        "registration.icp_s": icp_s,
        "registration.icp_error_mm": icp_error,
    }
