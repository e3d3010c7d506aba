"""A VTK camera that reproduces a calibrated pinhole camera exactly.

The AR overlay and the simulated camera both render with this, so a point ``X`` (world
frame, mm) lands on the pixel ``cv2.projectPoints`` gives for the same intrinsics and pose
(no lens distortion: undistort the video first).

How: the camera is placed at the optical centre, looking along +z of the OpenCV camera
frame with view-up -y; the vertical view angle comes from ``fy``; a principal point off the
image centre becomes a VTK window-centre shift; ``fx != fy`` becomes an explicit aspect
ratio. Pixel centres follow OpenCV (pixel ``u`` spans ``[u - 0.5, u + 0.5)``). The render
window must have the calibrated image size (or be scaled uniformly with the intrinsics).
"""

from __future__ import annotations

import math

import numpy as np

from models.base.errors import InputError
from models.base.validation import as_array, as_transform


def camera_parameters(camera_matrix: np.ndarray, image_size: tuple[int, int],
                      camera_from_world: np.ndarray) -> dict[str, object]:
    """VTK camera settings for a pinhole camera.

    Parameters
    ----------
    camera_matrix : (3, 3) array
        OpenCV intrinsic matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` in pixels.
    image_size : (int, int)
        ``(width, height)`` of the image (and render window) in pixels.
    camera_from_world : (4, 4) array
        Rigid transform from the rendered scene's frame (mm) to the OpenCV camera frame.

    Returns
    -------
    dict
        ``position``, ``focal_point``, ``view_up`` (world mm), ``view_angle_deg``,
        ``window_center`` (NDC shift) and ``aspect_ratio`` for ``SetExplicitAspectRatio``.
    """
    k = as_array(camera_matrix, name="camera_matrix", shape=(3, 3))
    width, height = (int(v) for v in image_size)
    if width <= 0 or height <= 0:
        raise InputError(f"image_size must be positive (width, height), got {image_size}")
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    if fx <= 0 or fy <= 0:
        raise InputError(f"camera_matrix focal lengths must be positive, got fx={fx}, fy={fy}")
    world_from_camera = np.linalg.inv(as_transform(camera_from_world, name="camera_from_world",
                                                   rigid=True))
    position = world_from_camera[:3, 3]
    forward = world_from_camera[:3, 2]
    down = world_from_camera[:3, 1]
    return {
        "position": position,
        "focal_point": position + forward * 1000.0,
        "view_up": -down,
        "view_angle_deg": math.degrees(2.0 * math.atan(height / (2.0 * fy))),
        "window_center": (-2.0 * (cx + 0.5 - width / 2.0) / width,
                          2.0 * (cy + 0.5 - height / 2.0) / height),
        "aspect_ratio": (width / height) * (fy / fx),
    }


def apply_to_vtk_camera(vtk_camera: object, camera_matrix: np.ndarray,
                        image_size: tuple[int, int], camera_from_world: np.ndarray,
                        clipping_range_mm: tuple[float, float] = (5.0, 5000.0)) -> None:
    """Configure a ``vtkCamera`` (or ``pyvista.Camera``) as the calibrated camera.

    Examples
    --------
    >>> import pyvista as pv
    >>> cam = pv.Camera()
    >>> k = np.array([[800.0, 0, 640], [0, 800.0, 360], [0, 0, 1]])
    >>> apply_to_vtk_camera(cam, k, (1280, 720), np.eye(4))
    >>> round(cam.GetViewAngle(), 3)
    48.455
    """
    params = camera_parameters(camera_matrix, image_size, camera_from_world)
    vtk_camera.SetPosition(*params["position"])
    vtk_camera.SetFocalPoint(*params["focal_point"])
    vtk_camera.SetViewUp(*params["view_up"])
    vtk_camera.SetViewAngle(params["view_angle_deg"])
    vtk_camera.SetWindowCenter(*params["window_center"])
    vtk_camera.SetUseExplicitAspectRatio(True)
    vtk_camera.SetExplicitAspectRatio(params["aspect_ratio"])
    vtk_camera.SetClippingRange(*clipping_range_mm)


def project_with_vtk_camera(vtk_camera: object, image_size: tuple[int, int],
                            points_world: np.ndarray) -> np.ndarray:
    """Pixel coordinates (OpenCV convention, (N, 2)) at which VTK draws world points.

    Uses the camera's own composite projection matrix, so it checks what VTK really does.
    """
    width, height = (int(v) for v in image_size)
    pts = as_array(points_world, name="points_world", shape=(None, 3))
    matrix = vtk_camera.GetCompositeProjectionTransformMatrix(width / height, -1.0, 1.0)
    m = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    hom = np.c_[pts, np.ones(len(pts))] @ m.T
    ndc = hom[:, :2] / hom[:, 3:4]
    u = (ndc[:, 0] + 1.0) / 2.0 * width - 0.5
    v = height - (ndc[:, 1] + 1.0) / 2.0 * height - 0.5
    return np.c_[u, v]
