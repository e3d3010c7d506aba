"""Synthetic ChArUco views with known intrinsics, distortion and poses (tests, benchmarks).

Each output pixel is traced back through the lens model: the distorted pixel grid is
undistorted once per camera (``cv2.undistortPoints`` iterated to 1e-12), each view
maps the normalised rays onto the board plane through the homography ``[r1 r2 t]`` of its
``camera_from_board`` pose, and the board texture is sampled there (``cv2.remap``). The
image is rendered ``supersample`` times finer and area-averaged down, then blurred and
given Gaussian noise, so detected corners carry realistic sub-pixel error while the true
projection (``cv2.projectPoints`` with the same model) is known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from calibration.boards import BoardSpec
from calibration.validation import as_array, as_camera_matrix, as_image_size

#: Grey level outside the board (a table top behind it).
BACKGROUND_GREY = 110


@dataclass(frozen=True)
class SyntheticCamera:
    """A known pinhole + Brown–Conrady camera.

    Attributes
    ----------
    camera_matrix : (3, 3) array
        OpenCV intrinsics, px.
    dist_coeffs : (5,) array
        ``k1, k2, p1, p2, k3`` (OpenCV order).
    image_size : (int, int)
        ``(width, height)`` px.
    """

    camera_matrix: np.ndarray
    dist_coeffs: np.ndarray
    image_size: tuple[int, int]
    _rays: dict[int, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def normalised_rays(self, supersample: int) -> np.ndarray:
        """(H*s, W*s, 2) float32 undistorted normalised coordinates of every sub-pixel centre."""
        if supersample not in self._rays:
            width, height = self.image_size
            us = (np.arange(width * supersample, dtype=np.float64) + 0.5) / supersample - 0.5
            vs = (np.arange(height * supersample, dtype=np.float64) + 0.5) / supersample - 0.5
            grid = np.stack(np.meshgrid(us, vs), axis=-1).reshape(-1, 1, 2)
            criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
            rays = cv2.undistortPoints(grid, self.camera_matrix, self.dist_coeffs, None, None, None,
                                           criteria)
            self._rays[supersample] = rays.reshape(height * supersample, width * supersample,
                                                   2).astype(np.float32)
        return self._rays[supersample]


def make_camera(camera_matrix: np.ndarray, dist_coeffs: np.ndarray,
                image_size: tuple[int, int]) -> SyntheticCamera:
    """Validated :class:`SyntheticCamera`."""
    return SyntheticCamera(as_camera_matrix(camera_matrix),
                           as_array(dist_coeffs, name="dist_coeffs").ravel(),
                           as_image_size(image_size))


def board_texture(board: BoardSpec, *, px_per_mm: float = 10.0,
                  margin_squares: float = 0.6) -> tuple[np.ndarray, float]:
    """Board image with a white margin, and the mm offset of the board origin in it.

    Returns
    -------
    image : (H, W) uint8
        Texture; pixel ``j`` covers ``[j, j + 1) / px_per_mm`` mm from its top-left.
    margin_mm : float
        The board frame origin lies at ``(margin_mm, margin_mm)`` in texture mm.
    """
    width_mm, height_mm = board.size_mm
    size = (round(width_mm * px_per_mm), round(height_mm * px_per_mm))
    inner = board.cv_board.generateImage(size, marginSize=0, borderBits=1)
    margin_px = round(margin_squares * board.square_mm * px_per_mm)
    image = cv2.copyMakeBorder(inner, margin_px, margin_px, margin_px, margin_px,
                               cv2.BORDER_CONSTANT, value=255)
    return image, margin_px / px_per_mm


def render_view(board: BoardSpec, camera: SyntheticCamera, camera_from_board: np.ndarray, *,
                rng: np.random.Generator, noise_grey: float = 2.0, blur_sigma_px: float = 0.7,
                supersample: int = 2, px_per_mm: float = 10.0) -> np.ndarray:
    """Render one grey image of ``board`` seen at ``camera_from_board``.

    Parameters
    ----------
    board : BoardSpec
        The board (object points in mm, board frame).
    camera : SyntheticCamera
        Intrinsics, distortion and image size.
    camera_from_board : (4, 4) array
        Rigid pose, mm.
    rng : numpy.random.Generator
        Source of the image noise.
    noise_grey : float
        Standard deviation of additive Gaussian noise, grey levels (0–255).
    blur_sigma_px : float
        Gaussian blur sigma in output pixels (0 for none).
    supersample : int
        Sub-pixels per pixel along each axis (anti-aliasing).
    px_per_mm : float
        Texture resolution.

    Returns
    -------
    (H, W) uint8 array
    """
    pose = as_array(camera_from_board, name="camera_from_board", shape=(4, 4))
    texture, margin_mm = board_texture(board, px_per_mm=px_per_mm)
    rays = camera.normalised_rays(supersample)
    board_from_rays = np.linalg.inv(np.column_stack([pose[:3, 0], pose[:3, 1], pose[:3, 3]]))
    h = board_from_rays.astype(np.float32)
    x, y = rays[..., 0], rays[..., 1]
    w = h[2, 0] * x + h[2, 1] * y + h[2, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        bx = (h[0, 0] * x + h[0, 1] * y + h[0, 2]) / w
        by = (h[1, 0] * x + h[1, 1] * y + h[1, 2]) / w
    behind = ~(w > 0)
    map_x = (bx + margin_mm) * px_per_mm - 0.5
    map_y = (by + margin_mm) * px_per_mm - 0.5
    map_x[behind] = -1e6
    map_y[behind] = -1e6
    fine = cv2.remap(texture, map_x.astype(np.float32), map_y.astype(np.float32),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=BACKGROUND_GREY)
    image = cv2.resize(fine.astype(np.float32), camera.image_size, interpolation=cv2.INTER_AREA)
    if blur_sigma_px > 0:
        image = cv2.GaussianBlur(image, (0, 0), blur_sigma_px)
    if noise_grey > 0:
        image = image + rng.normal(0.0, noise_grey, image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _rotation(rx_deg: float, ry_deg: float, rz_deg: float) -> np.ndarray:
    rvec = np.radians([rx_deg, 0.0, 0.0])
    rot_x = cv2.Rodrigues(rvec)[0]
    rot_y = cv2.Rodrigues(np.radians([0.0, ry_deg, 0.0]))[0]
    rot_z = cv2.Rodrigues(np.radians([0.0, 0.0, rz_deg]))[0]
    return rot_z @ rot_y @ rot_x


def random_board_poses(board: BoardSpec, camera: SyntheticCamera, n_views: int, *,
                       rng: np.random.Generator, distance_mm: tuple[float, float] = (330, 520),
                       tilt_deg: float = 35.0, roll_deg: float = 25.0,
                       centre_fraction: float = 0.6) -> np.ndarray:
    """(n_views, 4, 4) ``camera_from_board`` poses that face the camera and spread over the image.

    The board centre is placed on the ray through a pixel drawn uniformly from the central
    ``centre_fraction`` of the image, at a distance drawn from ``distance_mm``; the board is
    tilted about x and y by up to ``tilt_deg`` and rolled by up to ``roll_deg``.
    """
    width, height = camera.image_size
    k = camera.camera_matrix
    centre_board = np.array([board.size_mm[0] / 2, board.size_mm[1] / 2, 0.0])
    poses = np.zeros((n_views, 4, 4))
    for i in range(n_views):
        u = width * (0.5 + centre_fraction * (rng.random() - 0.5))
        v = height * (0.5 + centre_fraction * (rng.random() - 0.5))
        ray = np.linalg.solve(k, [u, v, 1.0])
        depth = rng.uniform(*distance_mm)
        rot = _rotation(rng.uniform(-tilt_deg, tilt_deg), rng.uniform(-tilt_deg, tilt_deg),
                        rng.uniform(-roll_deg, roll_deg))
        poses[i] = np.eye(4)
        poses[i, :3, :3] = rot
        poses[i, :3, 3] = ray / ray[2] * depth - rot @ centre_board
    return poses


def project_corners(board: BoardSpec, camera: SyntheticCamera,
                    camera_from_board: np.ndarray) -> np.ndarray:
    """(n_corners, 2) true pixel positions of the ChArUco corners (``cv2.projectPoints``)."""
    rvec = cv2.Rodrigues(camera_from_board[:3, :3])[0]
    pts, _ = cv2.projectPoints(board.corners_mm, rvec, camera_from_board[:3, 3],
                               camera.camera_matrix, camera.dist_coeffs)
    return pts.reshape(-1, 2)


def default_camera(image_size: tuple[int, int] = (1280, 720)) -> SyntheticCamera:
    """A 720p-like camera with visible barrel distortion (used by tests and benchmarks)."""
    width, height = image_size
    scale = width / 1280.0
    focal = 920.0 * scale
    k = np.array([[focal, 0.0, width / 2 + 7.0 * scale],
                  [0.0, focal * 0.995, height / 2 - 6.0 * scale],
                  [0.0, 0.0, 1.0]])
    dist = np.array([-0.12, 0.09, 0.0007, -0.0005, -0.02])
    return make_camera(k, dist, image_size)


__all__ = ["SyntheticCamera", "board_texture", "default_camera", "make_camera",
           "project_corners", "random_board_poses", "render_view"]
