"""Overlay pixels agree with cv2.projectPoints; stale state never draws anatomy."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import pyvista as pv

from guidance.render.overlay import OverlayRenderer, OverlayStatus, scaled_camera_matrix
from guidance.render.scene import Scene, SceneItem
from models.base.transforms import transform_from_rotvec


def _blob_centroid(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return np.array([cols.mean(), rows.mean()])


@pytest.mark.parametrize(("k", "size"), [
    (np.array([[700.0, 0, 330.0], [0, 700.0, 230.0], [0, 0, 1]]), (640, 480)),
    (np.array([[650.0, 0, 402.5], [0, 660.0, 171.0], [0, 0, 1]]), (720, 400)),
])
def test_sphere_drawn_where_projected(k: np.ndarray, size: tuple[int, int],
                                      rng: np.random.Generator) -> None:
    centre_patient = np.array([12.0, -30.0, 25.0])
    scene = Scene()
    scene.add(SceneItem("ball", pv.Sphere(radius=4.0, center=centre_patient,
                                          theta_resolution=60, phi_resolution=60),
                        (1.0, 1.0, 1.0)))
    camera_from_patient = transform_from_rotvec(rng.normal(size=3) * 0.3, [5.0, 20.0, 350.0])
    with OverlayRenderer(scene, k, size) as renderer:
        layer = renderer.render_layer(camera_from_patient)
    drawn = _blob_centroid(layer[..., 3] > 127)
    rvec, _ = cv2.Rodrigues(camera_from_patient[:3, :3])
    truth, _ = cv2.projectPoints(centre_patient[None], rvec, camera_from_patient[:3, 3], k, None)
    # a sphere's silhouette centroid is within a small fraction of a pixel of its projected
    # centre at this size and distance (perspective shift ~ r^2/z^2 * offset)
    np.testing.assert_allclose(drawn, truth.reshape(2), atol=1.0)


#: A 320x240 camera looking down +z at a red ball 300 mm in front of it.
SMALL_K = np.array([[500.0, 0, 160.0], [0, 500.0, 120.0], [0, 0, 1]])
BALL_POSE = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 300.0], [0, 0, 0, 1]])


def _ball_renderer(radius_mm: float) -> OverlayRenderer:
    scene = Scene()
    scene.add(SceneItem("ball", pv.Sphere(radius=radius_mm), (1.0, 0.0, 0.0)))
    return OverlayRenderer(scene, SMALL_K, (320, 240))


def test_blend_keeps_video_where_nothing_drawn() -> None:
    video = np.full((240, 320, 3), 77, np.uint8)
    with _ball_renderer(5.0) as renderer:
        out = renderer.render(video, BALL_POSE)
    assert tuple(out[230, 5]) == (77, 77, 77)
    assert out[120, 160, 0] > 150 and out[120, 160, 1] < 80


def test_lost_tracking_draws_no_anatomy_and_a_banner() -> None:
    video = np.full((240, 320, 3), 200, np.uint8)
    with _ball_renderer(30.0) as renderer:
        out = renderer.render(video, BALL_POSE, OverlayStatus(tracking_ok=False,
                                                              banner="STALE"))
    centre = out[120, 160].astype(int)
    assert abs(centre[0] - centre[1]) < 3  # grey, no red sphere
    assert out[5, 300, 0] > 150 and out[5, 300, 1] < 60  # red banner


def test_wrong_frame_size_is_refused() -> None:
    with OverlayRenderer(Scene(), SMALL_K, (320, 240)) as renderer, \
            pytest.raises(ValueError, match="320x240"):
        renderer.render(np.zeros((480, 640, 3), np.uint8), np.eye(4))


def test_unregistered_shows_plain_video_with_banner() -> None:
    video = np.full((240, 320, 3), 200, np.uint8)
    with _ball_renderer(30.0) as renderer:
        out = renderer.render(video, None, OverlayStatus(banner="Registration: FID1"))
    assert tuple(out[120, 160]) == (200, 200, 200)
    assert out[5, 300].max() < 60  # dark information banner, not the red alarm


def test_every_frame_is_rendered_anew_pose_and_hidden_items() -> None:
    """The second and later frames follow the new camera pose and hidden items (pyvista's
    screenshot renders only the first time by itself)."""
    renderer = _ball_renderer(10.0)
    try:
        first = renderer.render_layer(BALL_POSE)
        moved = BALL_POSE.copy()
        moved[0, 3] = 40.0                              # ball 40 mm to the camera's right
        second = renderer.render_layer(moved)
        shift = _blob_centroid(second[..., 3] > 127) - _blob_centroid(first[..., 3] > 127)
        np.testing.assert_allclose(shift, (500.0 * 40.0 / 300.0, 0.0), atol=1.0)
        renderer.actors.hidden = {"ball"}
        assert renderer.render_layer(moved)[..., 3].max() == 0
    finally:
        renderer.close()


def test_layer_rendered_only_when_pose_or_scene_changed() -> None:
    """A still camera over a still scene costs no render (issue 13 item 12)."""
    renderer = _ball_renderer(10.0)
    try:
        first = renderer.render_layer(BALL_POSE)
        again = renderer.render_layer(BALL_POSE.copy())
        assert renderer.renders == 1 and again is first
        renderer.scene.items["ball"].visible = False
        assert renderer.render_layer(BALL_POSE)[..., 3].max() == 0 and renderer.renders == 2
        renderer.scene.items["ball"].visible = True
        renderer.scene.add(SceneItem("ball", pv.Sphere(radius=20.0), (1.0, 0.0, 0.0)))
        bigger = renderer.render_layer(BALL_POSE)
        assert renderer.renders == 3
        assert (bigger[..., 3] > 127).sum() > 3 * (first[..., 3] > 127).sum()
    finally:
        renderer.close()


@pytest.mark.parametrize("scale", [0.5, 0.75])
def test_reduced_render_size_keeps_the_projection(scale: float, rng) -> None:
    """Rendered at a fraction of the video size with the intrinsics scaled for it (as the
    live view renders at the size it shows), the scene stays where cv2.projectPoints puts
    it (issue 13 item 12: fewer pixels for a CPU rasteriser)."""
    k = np.array([[700.0, 0, 330.0], [0, 700.0, 230.0], [0, 0, 1]])
    centre = np.array([12.0, -30.0, 25.0])
    scene = Scene()
    scene.add(SceneItem("ball", pv.Sphere(radius=6.0, center=centre, theta_resolution=60,
                                          phi_resolution=60), (1.0, 1.0, 1.0)))
    pose = transform_from_rotvec(rng.normal(size=3) * 0.3, [5.0, 20.0, 350.0])
    size = (round(640 * scale), round(480 * scale))
    with OverlayRenderer(scene, scaled_camera_matrix(k, (640, 480), size), size) as renderer:
        layer = renderer.render_layer(pose)
    assert layer.shape == (size[1], size[0], 4)
    truth, _ = cv2.projectPoints(centre[None], cv2.Rodrigues(pose[:3, :3])[0], pose[:3, 3],
                                 k, None)
    # back to video pixels (pixel centres: u = (u' + 0.5) / s - 0.5, as cv2.resize maps them)
    found = (_blob_centroid(layer[..., 3] > 127) + 0.5) / scale - 0.5
    np.testing.assert_allclose(found, truth.reshape(2), atol=1.0)
