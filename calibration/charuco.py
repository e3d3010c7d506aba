"""ChArUco detection with the OpenCV 5 API (``cv2.aruco.CharucoDetector.detectBoard``).

OpenCV 5 returns ChArUco corners as ``(N, 2)`` or ``(N, 1, 2)`` and ids as ``(N,)`` or
``(N, 1)`` depending on the build; :func:`detect_charuco` normalises both to ``(N, 2)``
float64 and ``(N,)`` int32. Corners are refined to sub-pixel accuracy by the detector
(``cornerSubPix`` on the chessboard saddle points).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from calibration.boards import BoardSpec
from calibration.errors import CalibrationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CharucoDetection:
    """ChArUco corners found in one image.

    Attributes
    ----------
    corners_px : (N, 2) float64
        Sub-pixel corner positions (OpenCV pixel convention: pixel centres at integers).
    ids : (N,) int32
        ChArUco corner ids (index into ``BoardSpec.corners_mm``).
    n_markers : int
        ArUco markers of the board's dictionary found (before corner interpolation).
    foreign_marker_ids : (M,) int32
        Marker ids found that the board does not contain (a sign of a wrong board spec).
    sharpness : float
        Variance of the Laplacian over the board's bounding box (grey levels²); low = blurred.
    """

    corners_px: np.ndarray
    ids: np.ndarray
    n_markers: int
    foreign_marker_ids: np.ndarray
    sharpness: float

    @property
    def n_corners(self) -> int:
        """Number of ChArUco corners found."""
        return int(self.ids.size)


def make_detector(board: BoardSpec) -> cv2.aruco.CharucoDetector:
    """A ``CharucoDetector`` for ``board`` with sub-pixel marker refinement."""
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    charuco_params = cv2.aruco.CharucoParameters()
    charuco_params.tryRefineMarkers = True
    return cv2.aruco.CharucoDetector(board.cv_board, charuco_params, params)


def to_grey(image: np.ndarray) -> np.ndarray:
    """uint8 grey image from grey, BGR or BGRA input."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2GRAY)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2GRAY)
    elif arr.ndim != 2:
        raise CalibrationError(f"image must be HxW, HxWx3 or HxWx4, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def sharpness(grey: np.ndarray, corners_px: np.ndarray | None = None) -> float:
    """Variance of the Laplacian (grey levels²) inside the bounding box of ``corners_px``."""
    region = grey
    if corners_px is not None and len(corners_px) >= 2:
        x0, y0 = np.floor(corners_px.min(axis=0)).astype(int)
        x1, y1 = np.ceil(corners_px.max(axis=0)).astype(int)
        height, width = grey.shape
        region = grey[max(y0, 0):min(y1 + 1, height), max(x0, 0):min(x1 + 1, width)]
        if region.size < 16:
            region = grey
    return float(cv2.Laplacian(region, cv2.CV_64F).var())


def detect_charuco(image: np.ndarray, board: BoardSpec,
                   detector: cv2.aruco.CharucoDetector | None = None) -> CharucoDetection:
    """Find the ChArUco corners of ``board`` in ``image``.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) uint8 array
        Grey or BGR image.
    board : BoardSpec
        The printed board.
    detector : cv2.aruco.CharucoDetector, optional
        Reuse one detector across frames (:func:`make_detector`).

    Returns
    -------
    CharucoDetection
        Possibly empty (``n_corners == 0``).
    """
    grey = to_grey(image)
    detector = detector or make_detector(board)
    corners, ids, _marker_corners, marker_ids = detector.detectBoard(grey)
    marker_ids = (np.zeros(0, np.int32) if marker_ids is None
                  else np.asarray(marker_ids, dtype=np.int32).ravel())
    board_ids = np.asarray(board.cv_board.getIds()).ravel()
    foreign = np.setdiff1d(marker_ids, board_ids).astype(np.int32)
    if ids is None or corners is None or len(ids) == 0:
        pts = np.zeros((0, 2))
        corner_ids = np.zeros(0, np.int32)
    else:
        pts = np.asarray(corners, dtype=np.float64).reshape(-1, 2)
        corner_ids = np.asarray(ids, dtype=np.int32).ravel()
    return CharucoDetection(corners_px=pts, ids=corner_ids,
                            n_markers=int(np.isin(marker_ids, board_ids).sum()),
                            foreign_marker_ids=foreign,
                            sharpness=sharpness(grey, pts if pts.size else None))
