"""Tracking and registration speed and accuracy on the simulated camera (720p, known truth).

Keys
----
tracking.fps                  detect + PnP + filter per 1280x720 frame with the reference
                              plate, pointer and applicator in view (rendering excluded), 1/s
tracking.latency_ms           frame received -> filtered poses of that frame, median, ms
tracking.position_error_mm    reference plate 20-50 cm, default noise: median position error, mm
tracking.angle_error_deg      same frames, median rotation error, deg
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

    tre = _tre_trials(rng, 100, 0.5)
    predicted = float(predict_tre_mm(_FIDUCIALS, _TARGET, 0.5)[0])
    icp_s, icp_error = _icp(rng)
    return {
        "tracking.fps": 1.0 / per_frame_s,
        "tracking.latency_ms": 1000.0 * float(np.median(latencies)),
        "tracking.position_error_mm": float(np.median(errors[:, 0])),
        "tracking.angle_error_deg": float(np.median(errors[:, 1])),
        "registration.tre_measured_mm": float(np.sqrt(np.mean(tre**2))),
        "registration.tre_median_mm": float(np.median(tre)),
        "registration.tre_predicted_mm": predicted,
        "registration.icp_s": icp_s,
        "registration.icp_error_mm": icp_error,
    }
