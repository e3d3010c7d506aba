"""The result of a camera calibration, and the checks the live loop runs against it.

:class:`CameraCalibration` holds OpenCV intrinsics (``camera_matrix``, ``dist_coeffs`` in
OpenCV order ``k1, k2, p1, p2[, k3[, k4, k5, k6]]``), the ``image_size`` they are valid for,
and the quality figures of the calibration. Intrinsics are only valid at the resolution
they were measured at: :func:`check_frame_size` refuses frames of any other size rather
than drawing an overlay that is off by a scale factor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calibration.errors import CalibrationError
from calibration.validation import as_array, as_camera_matrix, as_image_size

#: Distortion vector lengths OpenCV accepts.
DIST_LENGTHS = (4, 5, 8, 12, 14)
#: Largest |distortion coefficient| accepted; real lenses (rational model included) stay far below.
MAX_ABS_DIST_COEFF = 1000.0
#: Largest |skew| of the camera matrix as a fraction of fx (OpenCV calibrates skew = 0).
MAX_SKEW_FRACTION = 0.1


@dataclass(frozen=True)
class ViewReport:
    """What happened to one input image during calibration.

    Attributes
    ----------
    name : str
        File name or ``frame 12``.
    status : str
        ``used``, ``outlier``, ``blurred``, ``duplicate``, ``too_few_corners`` or ``no_board``.
    n_corners : int
        ChArUco corners detected.
    sharpness : float
        Variance of the Laplacian over the board (grey levels²).
    error_px : float
        RMS reprojection error of the view in the final calibration (NaN if not used) or at
        the round it was rejected in (outliers).
    """

    name: str
    status: str
    n_corners: int
    sharpness: float
    error_px: float = float("nan")


@dataclass(frozen=True)
class CameraCalibration:
    """Calibrated pinhole + distortion camera model.

    Attributes
    ----------
    camera_matrix : (3, 3) float64
        ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``, px.
    dist_coeffs : (K,) float64
        OpenCV distortion coefficients, K in (4, 5, 8, 12, 14).
    image_size : (int, int)
        ``(width, height)`` px of the images the calibration is valid for.
    rms_px : float
        Overall RMS reprojection error, px.
    per_view_px : (V,) float64
        RMS reprojection error of each view used, px.
    intrinsics_std_px : (4,) float64
        Standard deviations of ``fx, fy, cx, cy`` (px) from the calibration's covariance
        (NaN when unknown, e.g. a file that did not record them).
    coverage_percent : float
        Share of the image grid cells that contained a detected corner (NaN if unknown).
    coverage_map : (rows, cols) int array
        Corner count per grid cell over the views used (empty if unknown).
    view_names : tuple of str
        Names of the views in ``per_view_px`` order.
    board : dict or None
        The board definition used (``BoardSpec.to_json_dict()``).
    views : tuple of ViewReport
        Every input view and its fate (not stored in files).
    distortion_model : str
        Which distortion terms were fitted and why (e.g. k3 fixed at 0 for low coverage);
        empty when unknown (a file that did not record it).
    edge_uncertainty_px : float
        95th percentile of how far refits on resampled views move the model's rays at the
        image border (px); NaN when unknown.
    """

    camera_matrix: np.ndarray
    dist_coeffs: np.ndarray
    image_size: tuple[int, int]
    rms_px: float
    per_view_px: np.ndarray
    intrinsics_std_px: np.ndarray = field(
        default_factory=lambda: np.full(4, np.nan))
    coverage_percent: float = float("nan")
    coverage_map: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    view_names: tuple[str, ...] = ()
    board: dict[str, Any] | None = None
    views: tuple[ViewReport, ...] = ()
    distortion_model: str = ""
    edge_uncertainty_px: float = float("nan")

    @property
    def fx(self) -> float:
        """Focal length along x, px."""
        return float(self.camera_matrix[0, 0])

    @property
    def fy(self) -> float:
        """Focal length along y, px."""
        return float(self.camera_matrix[1, 1])

    @property
    def cx(self) -> float:
        """Principal point x, px."""
        return float(self.camera_matrix[0, 2])

    @property
    def cy(self) -> float:
        """Principal point y, px."""
        return float(self.camera_matrix[1, 2])

    def summary(self) -> str:
        """Multi-line human-readable summary (the CLI prints it)."""
        std = self.intrinsics_std_px
        width, height = self.image_size
        lines = [
            f"image size   {width} x {height} px",
            f"fx, fy       {self.fx:.2f} ± {std[0]:.2f}, {self.fy:.2f} ± {std[1]:.2f} px",
            f"cx, cy       {self.cx:.2f} ± {std[2]:.2f}, {self.cy:.2f} ± {std[3]:.2f} px",
            "distortion   " + ", ".join(f"{d:.5f}" for d in self.dist_coeffs),
            f"RMS          {self.rms_px:.3f} px over {len(self.per_view_px)} views"
            + (f" (worst view {np.max(self.per_view_px):.3f} px)" if len(self.per_view_px)
               else ""),
        ]
        if np.isfinite(self.coverage_percent):
            lines.append(f"coverage     {self.coverage_percent:.0f} % of the image grid")
        if self.distortion_model:
            lines.append(f"lens model   {self.distortion_model}")
        if np.isfinite(self.edge_uncertainty_px):
            lines.append(f"edge rays    ± {self.edge_uncertainty_px:.1f} px (95 %, refits on "
                         f"resampled views)")
        lines.extend(f"WARNING      {w}" for w in self.warnings())
        return "\n".join(lines)

    def warnings(self, *, max_edge_uncertainty_px: float = 2.0) -> list[str]:
        """What limits this calibration, for the screen and the session log."""
        out = []
        if "% of the image" in self.distortion_model:
            out.append("board not seen near the image edges: k3 fixed at 0; overlay less "
                       "accurate near the edges (recalibrate with views near every corner)")
        if np.isfinite(self.edge_uncertainty_px) \
                and self.edge_uncertainty_px > max_edge_uncertainty_px:
            out.append(f"lens model uncertain at the image edges (± "
                       f"{self.edge_uncertainty_px:.1f} px): add views near the edges")
        return out


def validate_calibration(calibration: CameraCalibration, *,
                         source: str = "calibration") -> CameraCalibration:
    """Check a calibration for internal consistency; return it unchanged or raise.

    Checks: intrinsic matrix shape/positivity, finite values everywhere, a distortion
    vector of an OpenCV length with every coefficient within :data:`MAX_ABS_DIST_COEFF`, a
    skew within :data:`MAX_SKEW_FRACTION` of fx, a positive image size with the principal
    point inside the image, a focal length plausible for that image (0.1 to 20 image
    widths), a non-negative RMS.

    Raises
    ------
    CalibrationError
        Naming ``source`` (a file name) and the field.
    """
    def fail(msg: str) -> CalibrationError:
        return CalibrationError(f"{source}: {msg}; re-run 'iort calibrate camera' or fix the file")

    try:
        k = as_camera_matrix(calibration.camera_matrix, name="camera_matrix")
        dist = as_array(calibration.dist_coeffs, name="dist_coeffs").ravel()
        width, height = as_image_size(calibration.image_size, name="image_size")
        per_view = as_array(calibration.per_view_px, name="per_view_px").ravel()
        rms = float(calibration.rms_px)
    except (CalibrationError, TypeError) as exc:
        raise fail(str(exc)) from exc
    if dist.size not in DIST_LENGTHS:
        raise fail(f"dist_coeffs has {dist.size} values; OpenCV uses 4, 5, 8, 12 or 14")
    if np.any(np.abs(dist) > MAX_ABS_DIST_COEFF):
        worst = int(np.argmax(np.abs(dist)))
        raise fail(f"dist_coeffs[{worst}] = {dist[worst]:g} is beyond +-{MAX_ABS_DIST_COEFF:g} "
                   "(no real lens)")
    if abs(k[0, 1]) > MAX_SKEW_FRACTION * k[0, 0]:
        raise fail(f"camera_matrix skew [0][1] = {k[0, 1]:g} px is beyond "
                   f"{MAX_SKEW_FRACTION:g} x fx")
    if not (0 <= k[0, 2] < width and 0 <= k[1, 2] < height):
        raise fail(f"principal point ({k[0, 2]:.1f}, {k[1, 2]:.1f}) px lies outside the image "
                   f"size {width}x{height} (wrong image_size?)")
    if not (0.1 * width <= k[0, 0] <= 20 * width and 0.1 * width <= k[1, 1] <= 20 * width):
        raise fail(f"focal lengths fx={k[0, 0]:.1f}, fy={k[1, 1]:.1f} px are implausible for "
                   f"an image {width} px wide (wrong image_size?)")
    if not np.isfinite(rms) or rms < 0:
        raise fail(f"rms_px must be a finite non-negative number, got {calibration.rms_px!r}")
    if np.any(per_view < 0):
        raise fail("per_view_px has negative values")
    std = np.asarray(calibration.intrinsics_std_px, dtype=np.float64).ravel()
    if std.shape != (4,) or np.any(std[np.isfinite(std)] < 0) or np.any(np.isinf(std)):
        raise fail("intrinsics_std_px must be 4 non-negative numbers (std of fx, fy, cx, cy) "
                   "or null")
    return calibration


def frame_size(frame_or_size: np.ndarray | tuple[int, int]) -> tuple[int, int]:
    """``(width, height)`` of an image array ``(H, W[, C])`` or of a ``(width, height)`` pair."""
    if isinstance(frame_or_size, np.ndarray) and frame_or_size.ndim >= 2:
        return int(frame_or_size.shape[1]), int(frame_or_size.shape[0])
    return as_image_size(frame_or_size, name="frame size")


def check_frame_size(calibration: CameraCalibration,
                     frame_or_size: np.ndarray | tuple[int, int], *,
                     source: str = "calibration") -> None:
    """Refuse a calibration whose ``image_size`` differs from the camera's frames.

    The live loop calls this on the first frame (and whenever the source changes).

    Parameters
    ----------
    calibration : CameraCalibration
        The loaded calibration.
    frame_or_size : (H, W[, C]) array or (int, int)
        A frame, or its ``(width, height)``.
    source : str
        Name of the calibration file, quoted in the message.

    Raises
    ------
    CalibrationError
        When the sizes differ, saying both sizes and what to do.

    Examples
    --------
    >>> import numpy as np
    >>> k = np.array([[900.0, 0, 640], [0, 900, 360], [0, 0, 1]])
    >>> calib = CameraCalibration(k, np.zeros(5), (1280, 720), 0.1, np.array([0.1]))
    >>> check_frame_size(calib, np.zeros((720, 1280, 3), np.uint8))
    >>> try:
    ...     check_frame_size(calib, (1920, 1080), source="cam.json")
    ... except CalibrationError as exc:
    ...     print(str(exc)[:60])
    cam.json: calibrated for 1280x720 px frames but the camera d
    """
    width, height = frame_size(frame_or_size)
    cal_w, cal_h = calibration.image_size
    if (width, height) != (cal_w, cal_h):
        raise CalibrationError(
            f"{source}: calibrated for {cal_w}x{cal_h} px frames but the camera delivers "
            f"{width}x{height} px; set the camera to {cal_w}x{cal_h} or calibrate it at "
            f"{width}x{height} ('iort calibrate camera')")
