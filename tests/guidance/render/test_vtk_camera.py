"""The VTK camera built from intrinsics projects like cv2.projectPoints (independent truth)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import pyvista as pv

from guidance.render.vtk_camera import apply_to_vtk_camera, project_with_vtk_camera
from models.base.transforms import transform_from_rotvec


@pytest.mark.parametrize(("k", "size"), [
    (np.array([[900.0, 0, 640.0], [0, 900.0, 360.0], [0, 0, 1]]), (1280, 720)),
    (np.array([[850.0, 0, 701.3], [0, 870.0, 322.9], [0, 0, 1]]), (1280, 720)),
    (np.array([[600.0, 0, 300.0], [0, 610.0, 260.0], [0, 0, 1]]), (640, 480)),
    (np.array([[700.0, 0, 210.0], [0, 700.0, 430.0], [0, 0, 1]]), (400, 900)),
])
def test_projection_matches_opencv(k: np.ndarray, size: tuple[int, int],
                                   rng: np.random.Generator) -> None:
    camera_from_world = transform_from_rotvec(rng.normal(size=3) * 0.4, [10.0, -20.0, 400.0])
    points = rng.uniform(-80, 80, size=(50, 3))
    cam = pv.Camera()
    apply_to_vtk_camera(cam, k, size, camera_from_world)
    ours = project_with_vtk_camera(cam, size, points)
    rvec, _ = cv2.Rodrigues(camera_from_world[:3, :3])
    truth, _ = cv2.projectPoints(points, rvec, camera_from_world[:3, 3], k, np.zeros(5))
    np.testing.assert_allclose(ours, truth.reshape(-1, 2), atol=0.01)


def test_rejects_reflection() -> None:
    bad = np.diag([1.0, 1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="reflection"):
        apply_to_vtk_camera(pv.Camera(), np.diag([500.0, 500.0, 1.0]), (640, 480), bad)
