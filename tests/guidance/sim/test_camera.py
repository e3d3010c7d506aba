"""Simulated camera: rendered marker corners land where OpenCV projects the true corners."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import pyvista as pv

from guidance.sim.camera import (
    CameraPath,
    SceneMesh,
    SimEffects,
    SimulatedCamera,
    facing_pose,
    look_at,
    pointer_touching,
    random_camera_from_tool,
)
from guidance.tracking.markers import detect_markers, make_detector
from models.base.transforms import invert_rigid

K = np.array([[1000.0, 0, 631.7], [0, 1005.0, 364.2], [0, 0, 1]])
SIZE = (1280, 720)


@pytest.fixture(scope="module")
def camera(tools: dict) -> SimulatedCamera:
    backdrop = SceneMesh(pv.Plane(center=(0, 0, 900), direction=(0, 0, -1), i_size=4000,
                                  j_size=4000), (190, 150, 140))
    with SimulatedCamera([backdrop], tools, K, image_size=SIZE, effects=SimEffects.ideal(),
                         rng=np.random.default_rng(3)) as cam:
        yield cam


def _corner_errors(image: np.ndarray, tool, camera_from_tool: np.ndarray, k: np.ndarray,
                   dist: np.ndarray | None, cam: SimulatedCamera) -> np.ndarray:
    det = detect_markers(make_detector(tool.dictionary), image).select(tool.marker_ids)
    assert len(det) > 0
    errors = []
    for marker_id, corners in zip(det.ids, det.corners_px, strict=True):
        truth = cam.project(camera_from_tool, tool.marker(int(marker_id)).corners_mm)
        errors.append(np.linalg.norm(corners - truth, axis=1))
    return np.concatenate(errors)


def test_rendered_corners_match_projection(camera: SimulatedCamera, tools: dict,
                                           rng: np.random.Generator) -> None:
    errors = []
    for name in ("reference", "pointer", "applicator"):
        pose = random_camera_from_tool(rng, K, SIZE, distance_range_mm=(250, 450))
        shot = camera.render(np.eye(4), {name: pose})
        assert shot.image.shape == (720, 1280, 3) and shot.image.dtype == np.uint8
        np.testing.assert_allclose(shot.truth.camera_from_tool[name], pose, atol=1e-12)
        errors.append(_corner_errors(shot.image, tools[name], pose, K, None, camera))
    errors = np.concatenate(errors)
    assert np.median(errors) < 0.25 and errors.max() < 0.8


def test_lens_distortion_matches_opencv_model(tools: dict) -> None:
    dist = np.array([-0.25, 0.08, 0.001, -0.0005, 0.0])
    with SimulatedCamera([], tools, K, image_size=SIZE, dist_coeffs=dist,
                         effects=SimEffects.ideal()) as cam:
        # near the image corner, where distortion moves points by tens of pixels
        pose = facing_pose(np.array([-190.0, -100.0, 380.0]), np.zeros(3),
                           up_hint=np.array([0.0, -1.0, 0.0]))
        shot = cam.render(np.eye(4), {"reference": pose})
        errors = _corner_errors(shot.image, tools["reference"], pose, K, dist, cam)
        corners = tools["reference"].object_points()
        pinhole, _ = cv2.projectPoints(corners, cv2.Rodrigues(pose[:3, :3])[0], pose[:3, 3], K,
                                       None)
        shift = np.linalg.norm(cam.project(pose, corners) - pinhole.reshape(-1, 2), axis=1)
    assert shift.max() > 10.0  # distortion is really there
    assert np.median(errors) < 0.35


def test_same_seed_same_images_and_noise_level(tools: dict) -> None:
    effects = SimEffects(noise_sigma=3.0, brightness_jitter=0.05, marker_dropout_prob=0.3,
                         hand_prob=0.5)
    pose = facing_pose(np.array([0.0, 0.0, 350.0]), np.zeros(3))
    images = []
    for seed in (7, 7, 8):
        with SimulatedCamera([], tools, K, image_size=(320, 240), effects=effects,
                             rng=np.random.default_rng(seed)) as cam:
            shots = [cam.render(np.eye(4), {"reference": pose}) for _ in range(3)]
            images.append(np.stack([s.image for s in shots]))
    np.testing.assert_array_equal(images[0], images[1])
    assert not np.array_equal(images[0], images[2])
    with SimulatedCamera([], tools, K, image_size=(320, 240), effects=SimEffects.ideal()) as cam:
        clean = cam.render(np.eye(4), {}).image.astype(float)
    with SimulatedCamera([], tools, K, image_size=(320, 240),
                         effects=SimEffects(noise_sigma=3.0, brightness_jitter=0.0,
                                            vignetting=0.0)) as cam:
        noisy = cam.render(np.eye(4), {}).image.astype(float)
    assert np.std(noisy - clean) == pytest.approx(3.0, rel=0.1)


def test_occluded_markers_are_not_detected(tools: dict) -> None:
    pose = facing_pose(np.array([0.0, 0.0, 350.0]), np.zeros(3))
    with SimulatedCamera([], tools, K, image_size=SIZE,
                         effects=SimEffects(occluded_marker_ids=(1, 2))) as cam:
        shot = cam.render(np.eye(4), {"reference": pose})
    assert shot.truth.occluded_marker_ids == (1, 2)
    found = set(detect_markers(make_detector(), shot.image).ids.tolist())
    assert found == {0, 3}


def test_motion_blur_follows_camera_motion(tools: dict) -> None:
    pose = facing_pose(np.array([0.0, 0.0, 350.0]), np.zeros(3))
    moved = np.eye(4)
    moved[0, 3] = 20.0  # camera moves 20 mm -> ~57 px image motion at 350 mm
    with SimulatedCamera([], tools, K, image_size=(640, 360),
                         effects=SimEffects(noise_sigma=0.0, brightness_jitter=0.0,
                                            motion_blur_exposure=0.5)) as cam:
        first = cam.render(np.eye(4), {"reference": pose})
        second = cam.render(moved, {"reference": invert_rigid(moved) @ moved @ pose})
    assert first.truth.blur_px == 0.0
    assert second.truth.blur_px == pytest.approx(0.5 * 1000.0 * 20.0 / 350.0, rel=0.05)


def test_pointer_touching_puts_tip_on_point_facing_camera(tools: dict) -> None:
    pointer = tools["pointer"]
    point = np.array([30.0, -90.0, 10.0])
    camera_pos = np.array([0.0, -500.0, 50.0])
    pose = pointer_touching(pointer, point, camera_pos)
    np.testing.assert_allclose(pose[:3, :3] @ pointer.tip_mm + pose[:3, 3], point, atol=1e-9)
    to_camera = camera_pos - pose[:3, 3]
    assert pose[:3, 2] @ to_camera / np.linalg.norm(to_camera) > 0.999
    with pytest.raises(ValueError, match="tip_mm"):
        pointer_touching(tools["reference"], point, camera_pos)


def test_look_at_and_camera_path() -> None:
    frame_from_camera = look_at(np.array([0.0, -400.0, 0.0]), np.zeros(3))
    np.testing.assert_allclose(frame_from_camera[:3, 2], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(frame_from_camera[:3, 1], [0, 0, -1], atol=1e-12)  # image up = +z
    path = CameraPath(target_mm=np.array([0.0, 0.0, 0.0]), distance_mm=400.0)
    for t in (0.0, 0.7, 2.1):
        cam_from_frame = path.camera_from_frame(t)
        target_cam = cam_from_frame[:3, :3] @ np.zeros(3) + cam_from_frame[:3, 3]
        np.testing.assert_allclose(target_cam[:2], 0.0, atol=1e-9)  # target stays centred
        assert 350.0 < target_cam[2] < 450.0


def test_bad_calls(tools: dict) -> None:
    cam = SimulatedCamera([], tools, K, image_size=(320, 240))
    with pytest.raises(ValueError, match="unknown tools"):
        cam.render(np.eye(4), {"scalpel": np.eye(4)})
    with pytest.raises(ValueError, match="reflection"):
        cam.render(np.diag([1.0, 1.0, -1.0, 1.0]), {})
    cam.close()
    with pytest.raises(RuntimeError, match="closed"):
        cam.render(np.eye(4), {})
    with pytest.raises(TypeError, match="SceneMesh"):
        SimulatedCamera([pv.Sphere()], tools, K)
