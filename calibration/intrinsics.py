"""Camera intrinsics from ChArUco views: view selection, calibration, outlier rejection.

Method: Zhang's planar calibration (Z. Zhang, "A flexible new technique for camera
calibration", IEEE TPAMI 22(11), 2000, doi:10.1109/34.888718) as implemented by
``cv2.calibrateCameraExtended`` (Levenberg–Marquardt over intrinsics, Brown–Conrady
distortion and per-view poses), fed with ChArUco corners matched to board points by
``CharucoBoard.matchImagePoints`` (OpenCV 5 API).

Pipeline (:func:`calibrate_camera`):

1. drop views with no board, or fewer than ``min_corners`` corners or collinear corners;
2. drop blurred views (Laplacian variance below ``blur_fraction`` x the median of the
   candidate views) and near-duplicates of a kept view (same corners within
   ``duplicate_px`` on average: a camera standing still adds no information);
3. calibrate; views whose RMS error exceeds ``max(outlier_factor x median,
   outlier_floor_px)`` are rejected as outliers and the calibration is repeated
   (``max_rounds`` times at most, never below ``min_views`` views);
4. report the per-view errors, the standard deviations of fx, fy, cx, cy from the
   covariance of the final solution, and a coverage map of the image (corners per cell).

Fewer than ``min_views`` usable views, a board spec that does not match the printed board,
or a final RMS above ``max_rms_px`` raise :class:`~calibration.errors.CalibrationError`
saying why and what to do.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from calibration.boards import BoardSpec
from calibration.camera import CameraCalibration, ViewReport
from calibration.charuco import CharucoDetection, detect_charuco, make_detector
from calibration.errors import CalibrationError
from calibration.validation import as_image_size

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntrinsicsOptions:
    """Settings of :func:`calibrate_camera` (defaults suit a 720p–1080p webcam).

    Coverage (share of the ``coverage_grid`` cells of the image holding a board corner)
    governs the distortion model: boards seen only near the centre leave the radial terms
    free to curl at the edges (a 0.1 px RMS fit with k3 = 6 puts rays hundreds of px off at
    the corners). Below ``fix_k3_below_coverage_percent`` k3 is fixed at 0; below
    ``refuse_below_coverage_percent`` the calibration is refused. ``bootstrap`` refits on
    resampled views measure how far the model's rays at the image border move
    (``CameraCalibration.edge_uncertainty_px``); above ``max_edge_uncertainty_px`` the
    calibration carries a warning.
    """

    min_views: int = 8
    min_corners: int = 6
    blur_fraction: float = 0.3
    duplicate_px: float = 3.0
    outlier_factor: float = 3.0
    outlier_floor_px: float = 0.3
    max_rounds: int = 3
    max_rms_px: float = 1.0
    coverage_grid: tuple[int, int] = (8, 6)
    flags: int = 0
    min_coverage_percent: float = 40.0
    fix_k3_below_coverage_percent: float = 60.0
    refuse_below_coverage_percent: float = 20.0
    bootstrap: int = 8
    max_edge_uncertainty_px: float = 2.0


def _candidate_status(det: CharucoDetection, board: BoardSpec, min_corners: int) -> str | None:
    if det.n_corners == 0:
        return "no_board"
    if det.n_corners < min_corners:
        return "too_few_corners"
    if board.cv_board.checkCharucoCornersCollinear(det.ids.reshape(-1, 1)):
        return "too_few_corners"
    return None


def _is_duplicate(det: CharucoDetection, kept: Sequence[CharucoDetection], tol_px: float) -> bool:
    for other in kept:
        common, ia, ib = np.intersect1d(det.ids, other.ids, return_indices=True)
        if common.size < 0.8 * max(det.n_corners, other.n_corners):
            continue
        shift = np.linalg.norm(det.corners_px[ia] - other.corners_px[ib], axis=1).mean()
        if shift < tol_px:
            return True
    return False


def _diagnose(detections: Sequence[CharucoDetection], board: BoardSpec,
              statuses: Counter, n_usable: int, min_views: int) -> CalibrationError:
    n = len(detections)
    counts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(statuses.items()))
    markers = sum(d.n_markers for d in detections)
    corners = sum(d.n_corners for d in detections)
    foreign = sorted({int(i) for d in detections for i in d.foreign_marker_ids})
    if markers == 0 and not foreign:
        hint = (f"no {board.dictionary} markers were found in any image: check --dictionary "
                f"(or the board file), lighting and focus")
    elif corners == 0 or foreign:
        hint = (f"markers were found but do not fit board {board.describe()}"
                + (f" (marker ids {foreign[:8]} are not on it)" if foreign else "")
                + ": check --squares (columns x rows), the dictionary and --legacy-pattern")
    else:
        hint = (f"only {n_usable} usable views, need at least {min_views}: show the whole "
                f"board from more, different, sharp viewpoints")
    return CalibrationError(f"cannot calibrate from {n} image(s) ({counts}); {hint}")


def _coverage(detections: Sequence[CharucoDetection], image_size: tuple[int, int],
              grid: tuple[int, int]) -> tuple[np.ndarray, float]:
    cols, rows = grid
    width, height = image_size
    counts = np.zeros((rows, cols), np.int64)
    for det in detections:
        ix = np.clip((det.corners_px[:, 0] / width * cols).astype(int), 0, cols - 1)
        iy = np.clip((det.corners_px[:, 1] / height * rows).astype(int), 0, rows - 1)
        np.add.at(counts, (iy, ix), 1)
    return counts, 100.0 * np.count_nonzero(counts) / counts.size


def _screen_views(detections: Sequence[CharucoDetection], board: BoardSpec,
                  opts: IntrinsicsOptions) -> list[str | None]:
    """Status of every view before calibrating: ``None`` if usable, else why it is not."""
    status: list[str | None] = [_candidate_status(d, board, opts.min_corners)
                                for d in detections]
    candidates = [i for i, s in enumerate(status) if s is None]
    if candidates:
        median_sharp = float(np.median([detections[i].sharpness for i in candidates]))
        kept: list[CharucoDetection] = []
        for i in candidates:
            det = detections[i]
            if det.sharpness < opts.blur_fraction * median_sharp:
                status[i] = "blurred"
            elif _is_duplicate(det, kept, opts.duplicate_px):
                status[i] = "duplicate"
            else:
                kept.append(det)
    return status


@dataclass(frozen=True)
class _Fit:
    """One ``cv2.calibrateCameraExtended`` solution and the views it used."""

    used: list[int]
    rms: float
    camera_matrix: np.ndarray
    dist_coeffs: np.ndarray
    std_intrinsics: np.ndarray
    per_view: np.ndarray
    rejected_error: dict[int, float]


def _calibrate_views(detections: Sequence[CharucoDetection], board: BoardSpec,
                     size: tuple[int, int], used: Sequence[int],
                     flags: int) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Calibrate from the ``used`` views: RMS, K, distortion, intrinsics std, per-view RMS."""
    obj_pts, img_pts = [], []
    for i in used:
        det = detections[i]
        obj, img = board.cv_board.matchImagePoints(
            det.corners_px.astype(np.float32).reshape(-1, 1, 2), det.ids.reshape(-1, 1))
        obj_pts.append(obj)
        img_pts.append(img)
    try:
        (rms, k, dist, _rvecs, _tvecs, std_intr, _std_extr,
         per_view) = cv2.calibrateCameraExtended(obj_pts, img_pts, size, None, None,
                                                 flags=flags)
    except cv2.error as exc:
        raise CalibrationError(f"OpenCV calibration failed on {len(used)} views "
                               f"({exc.err}); capture more varied views") from exc
    return rms, k, dist, std_intr, np.asarray(per_view, dtype=np.float64).ravel()


def _calibrate_rejecting_outliers(detections: Sequence[CharucoDetection], board: BoardSpec,
                                  size: tuple[int, int], used: list[int],
                                  status: list[str | None], names: Sequence[str],
                                  opts: IntrinsicsOptions) -> _Fit:
    """Calibrate, mark the worst views ``"outlier"`` in ``status`` and repeat (step 3)."""
    rejected_error: dict[int, float] = {}
    for round_no in range(opts.max_rounds + 1):
        rms, k, dist, std_intr, per_view = _calibrate_views(detections, board, size, used,
                                                            opts.flags)
        threshold = max(opts.outlier_factor * float(np.median(per_view)), opts.outlier_floor_px)
        bad = [(e, i) for e, i in zip(per_view, used, strict=True) if e > threshold]
        room = len(used) - opts.min_views
        if not bad or room <= 0 or round_no == opts.max_rounds:
            break
        bad = sorted(bad, reverse=True)[:room]
        for err, i in bad:
            status[i] = "outlier"
            rejected_error[i] = float(err)
            log.info("view %s rejected as outlier: %.3f px > %.3f px", names[i], err, threshold)
        used = [i for i in used if status[i] is None]
    return _Fit(used=used, rms=rms, camera_matrix=k, dist_coeffs=dist, std_intrinsics=std_intr,
                per_view=per_view, rejected_error=rejected_error)


#: OpenCV's distortion terms in ``dist_coeffs`` order (the first five).
_TERMS = ("k1", "k2", "p1", "p2", "k3")


def _distortion_model(detections: Sequence[CharucoDetection], used: Sequence[int],
                      size: tuple[int, int], opts: IntrinsicsOptions
                      ) -> tuple[IntrinsicsOptions, str]:
    """Refuse too little coverage; fix k3 at 0 when the edges are not seen.

    Returns the options to fit with (flags) and the model's description.
    """
    _, coverage = _coverage([detections[i] for i in used], size, opts.coverage_grid)
    if coverage < opts.refuse_below_coverage_percent:
        raise CalibrationError(
            f"the board covered only {coverage:.0f} % of the image (need at least "
            f"{opts.refuse_below_coverage_percent:.0f} %): the lens cannot be measured at the "
            f"edges; capture views with the board close to the camera and near every edge "
            f"and corner of the image")
    if coverage < opts.fix_k3_below_coverage_percent and not opts.flags & cv2.CALIB_FIX_K3:
        note = (f"k1 k2 p1 p2 (k3 fixed at 0: board corners in {coverage:.0f} % of the image, "
                f"< {opts.fix_k3_below_coverage_percent:.0f} %)")
        log.warning("distortion: %s", note)
        return replace(opts, flags=opts.flags | cv2.CALIB_FIX_K3), note
    fixed = opts.flags & cv2.CALIB_FIX_K3
    return opts, " ".join(t for t in _TERMS if not (fixed and t == "k3")) + \
        (" (k3 fixed at 0)" if fixed else "")


def _border_pixels(size: tuple[int, int], per_side: int = 9) -> np.ndarray:
    """(N, 2) pixels along the four image borders (corners included)."""
    width, height = size
    xs = np.linspace(0.0, width - 1.0, per_side)
    ys = np.linspace(0.0, height - 1.0, per_side)
    return np.unique(np.concatenate([np.column_stack([xs, np.zeros(per_side)]),
                                     np.column_stack([xs, np.full(per_side, height - 1.0)]),
                                     np.column_stack([np.zeros(per_side), ys]),
                                     np.column_stack([np.full(per_side, width - 1.0), ys])]),
                     axis=0)


def _edge_uncertainty_px(detections: Sequence[CharucoDetection], board: BoardSpec,
                         size: tuple[int, int], fit: _Fit, opts: IntrinsicsOptions) -> float:
    """95th percentile (px) of how far bootstrap refits move the fit's rays at the border.

    The rays through border pixels under the fitted model are projected with models fitted
    to views resampled with replacement; NaN when ``opts.bootstrap`` is 0.
    """
    if opts.bootstrap <= 0:
        return float("nan")
    pixels = _border_pixels(size)
    rays = cv2.undistortPoints(pixels.reshape(-1, 1, 2), fit.camera_matrix,
                               fit.dist_coeffs).reshape(-1, 2)
    points = np.column_stack([rays, np.ones(len(rays))])
    rng = np.random.default_rng(0)
    moved = []
    for _ in range(opts.bootstrap):
        sample = list(rng.choice(fit.used, size=len(fit.used), replace=True))
        try:
            _rms, k, dist, _std, _per = _calibrate_views(detections, board, size, sample,
                                                         opts.flags)
        except CalibrationError:
            continue
        got, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), k, dist)
        moved.append(np.linalg.norm(got.reshape(-1, 2) - pixels, axis=1))
    if not moved:
        return float("nan")
    return float(np.percentile(np.concatenate(moved), 95))


def calibrate_camera(detections: Sequence[CharucoDetection], image_size: tuple[int, int],
                     board: BoardSpec, *, names: Sequence[str] | None = None,
                     options: IntrinsicsOptions | None = None) -> CameraCalibration:
    """Calibrate intrinsics from ChArUco detections of one camera.

    Parameters
    ----------
    detections : sequence of CharucoDetection
        One per image (from :func:`calibration.charuco.detect_charuco`).
    image_size : (int, int)
        ``(width, height)`` px of every image.
    board : BoardSpec
        The board that was shown.
    names : sequence of str, optional
        A name per image (file names), used in reports and messages.
    options : IntrinsicsOptions, optional
        Thresholds; defaults if omitted.

    Returns
    -------
    CameraCalibration
        With ``views`` telling the fate of every image.

    Raises
    ------
    CalibrationError
        Too few usable views, a board spec that does not match the images, or an RMS error
        above ``options.max_rms_px``.
    """
    opts = options or IntrinsicsOptions()
    size = as_image_size(image_size)
    names = list(names) if names is not None else [f"view {i}" for i in range(len(detections))]
    if len(names) != len(detections):
        raise CalibrationError(f"names has {len(names)} entries for {len(detections)} detections")
    status = _screen_views(detections, board, opts)
    used = [i for i, s in enumerate(status) if s is None]
    if len(used) < opts.min_views:
        counts = Counter(s or "usable" for s in status)
        raise _diagnose(detections, board, counts, len(used), opts.min_views)
    opts, model = _distortion_model(detections, used, size, opts)
    fit = _calibrate_rejecting_outliers(detections, board, size, used, status, names, opts)
    rms, used, per_view = fit.rms, fit.used, fit.per_view
    if not np.isfinite(rms) or rms > opts.max_rms_px:
        raise CalibrationError(
            f"calibration RMS {rms:.2f} px exceeds {opts.max_rms_px:.2f} px: check the board "
            f"spec ({board.describe()}) against the printed board, and that all images come "
            f"from the same camera at the same zoom/focus")
    error_of = dict(zip(used, per_view, strict=True))
    reports = tuple(
        ViewReport(name=names[i], status=status[i] or "used", n_corners=d.n_corners,
                   sharpness=d.sharpness,
                   error_px=float(error_of.get(i, fit.rejected_error.get(i, np.nan))))
        for i, d in enumerate(detections))
    coverage_map, coverage = _coverage([detections[i] for i in used], size, opts.coverage_grid)
    if coverage < opts.min_coverage_percent:
        log.warning("board corners covered only %.0f %% of the image: add views with the board "
                    "near the edges and corners of the image", coverage)
    edge_px = _edge_uncertainty_px(detections, board, size, fit, opts)
    if edge_px > opts.max_edge_uncertainty_px:
        log.warning("the lens model is uncertain at the image edges (rays move %.1f px between "
                    "refits): add views with the board near the edges and corners", edge_px)
    std = np.asarray(fit.std_intrinsics, dtype=np.float64).ravel()[:4]
    log.info("calibrated %d views: RMS %.3f px, fx %.1f ± %.2f px", len(used), rms,
             fit.camera_matrix[0, 0], std[0])
    return CameraCalibration(
        camera_matrix=np.asarray(fit.camera_matrix, dtype=np.float64),
        dist_coeffs=np.asarray(fit.dist_coeffs, dtype=np.float64).ravel(), image_size=size,
        rms_px=float(rms), per_view_px=per_view, intrinsics_std_px=std,
        coverage_percent=float(coverage), coverage_map=coverage_map,
        view_names=tuple(names[i] for i in used), board=board.to_json_dict(), views=reports,
        distortion_model=model, edge_uncertainty_px=float(edge_px))


def calibrate_from_images(images: Iterable[tuple[str, np.ndarray]], board: BoardSpec, *,
                          options: IntrinsicsOptions | None = None) -> CameraCalibration:
    """Detect the board in ``(name, image)`` pairs and calibrate.

    All images must have the same size (the first one sets it).

    Raises
    ------
    CalibrationError
        Mixed image sizes (naming the file), or anything :func:`calibrate_camera` raises.
    """
    detector = make_detector(board)
    detections: list[CharucoDetection] = []
    names: list[str] = []
    size: tuple[int, int] | None = None
    for name, image in images:
        this_size = (int(image.shape[1]), int(image.shape[0]))
        if size is None:
            size = this_size
        elif this_size != size:
            raise CalibrationError(f"{name}: image is {this_size[0]}x{this_size[1]} px but the "
                                   f"first image is {size[0]}x{size[1]}; calibrate one camera "
                                   f"resolution at a time")
        detections.append(detect_charuco(image, board, detector))
        names.append(name)
    if size is None:
        raise CalibrationError("no images to calibrate from")
    return calibrate_camera(detections, size, board, names=names, options=options)
