"""ArUco marker detection and tool pose estimation from all visible corners jointly.

Detection uses the OpenCV 5 ``cv2.aruco.ArucoDetector`` with sub-pixel corner refinement.
A tool's pose comes from every detected corner of its markers together:

* planar tools: ``cv2.solvePnPGeneric(..., SOLVEPNP_IPPE)`` gives the two candidate poses
  of the planar ambiguity (Collins & Bartoli 2014, IPPE, doi:10.1007/s11263-014-0725-5),
  each refined with Levenberg–Marquardt (``cv2.solvePnPRefineLM``) on all corners; the one
  with the lower reprojection RMS wins. The pose is *ambiguous* when the other solution
  fits almost as well yet differs by more than a few degrees (typical of one small marker
  seen nearly face-on).
* non-planar tools: SQPnP initialisation (Terzakis & Lourakis 2020) + LM refinement.

A marker that does not fit the others is dropped and the pose solved again without it: a
marker half hidden by a hand or glare can still be "detected" with a corner slid along the
occluder's edge, and one such corner would pull the whole pose by millimetres. While some
corner misses its reprojection by more than ``MARKER_RESIDUAL_PX``, each marker is left out
in turn and the one whose absence lets the others fit best is dropped; a single marker left
that still fails gives no pose. The pose is then *degraded* (fewer markers, listed in
``ToolPose.rejected_marker_ids``) rather than wrong.

Quality per pose: reprojection RMS (px), number of markers and corners used, ambiguity.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

from guidance.tracking.tools import ToolDefinition, check_tool_set
from models.base.errors import InputError
from models.base.transforms import angle_between_transforms_deg
from models.base.validation import as_array

log = logging.getLogger(__name__)

#: The two IPPE solutions count as ambiguous if the worse RMS is below this factor times
#: the better one, or within ``_AMBIGUITY_MARGIN_PX`` of it (both fit to within corner
#: noise), and they differ by more than ``_AMBIGUOUS_MIN_ANGLE_DEG``.
_AMBIGUITY_RMS_RATIO = 1.5
_AMBIGUITY_MARGIN_PX = 0.3
_AMBIGUOUS_MIN_ANGLE_DEG = 2.0
_LM_CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 30, 1e-10)
#: Largest corner reprojection residual (px) of an accepted marker fit; beyond it the
#: marker that fits worst is left out (about 5x the corner noise of a sharp 720p image).
MARKER_RESIDUAL_PX = 1.5


@dataclass(frozen=True)
class MarkerDetections:
    """Markers found in one image.

    Attributes
    ----------
    ids : (N,) int array
        Marker ids.
    corners_px : (N, 4, 2) float64 array
        Corner pixels (OpenCV convention, distorted image), ArUco order.
    """

    ids: np.ndarray
    corners_px: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def empty(cls) -> MarkerDetections:
        """No markers."""
        return cls(np.zeros(0, dtype=np.int64), np.zeros((0, 4, 2)))

    @classmethod
    def from_opencv(cls, corners: Iterable[np.ndarray], ids: np.ndarray | None
                    ) -> MarkerDetections:
        """From ``ArucoDetector.detectMarkers``: corners (1,4,2)|(4,2) each, ids (N,)|(N,1)."""
        if ids is None:
            return cls.empty()
        id_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        corner_list = [np.asarray(c, dtype=np.float64).reshape(4, 2) for c in corners]
        if len(corner_list) != id_arr.shape[0]:
            raise InputError(f"got {len(corner_list)} corner sets for {id_arr.shape[0]} ids")
        if not corner_list:
            return cls.empty()
        return cls(id_arr, np.stack(corner_list))

    def select(self, marker_ids: Iterable[int]) -> MarkerDetections:
        """Only the detections whose id is in ``marker_ids``."""
        wanted = np.isin(self.ids, np.fromiter(marker_ids, dtype=np.int64))
        return MarkerDetections(self.ids[wanted], self.corners_px[wanted])


@dataclass(frozen=True)
class ToolPose:
    """Pose of one tool in one image, with its quality.

    Attributes
    ----------
    tool : str
        Tool name.
    camera_from_tool : (4, 4) float64 array
        Tool frame to camera frame (OpenCV camera, mm).
    rms_px : float
        Reprojection RMS over the corners used (px).
    marker_ids : tuple of int
        Markers used.
    n_corners : int
        Corners used (4 per marker).
    ambiguous : bool
        The planar flip solution fits almost as well (pose may be mirrored).
    alternative : (4, 4) array or None
        The rejected planar solution (``camera_from_tool``), to disambiguate with history.
    alternative_rms_px : float
        RMS of the rejected planar solution (inf when not planar).
    rejected_marker_ids : tuple of int
        Detected markers left out because they did not fit the others (partly hidden).
    """

    tool: str
    camera_from_tool: np.ndarray
    rms_px: float
    marker_ids: tuple[int, ...]
    n_corners: int
    ambiguous: bool = False
    alternative: np.ndarray | None = None
    alternative_rms_px: float = float("inf")
    rejected_marker_ids: tuple[int, ...] = ()

    @property
    def n_markers(self) -> int:
        """Number of markers used."""
        return len(self.marker_ids)


def make_detector(dictionary: str = "DICT_4X4_50", *,
                  corner_refinement: str = "subpix") -> cv2.aruco.ArucoDetector:
    """An ``ArucoDetector`` for a predefined dictionary.

    Parameters
    ----------
    dictionary : str
        OpenCV predefined dictionary name.
    corner_refinement : {"subpix", "contour", "apriltag", "none"}
        Corner refinement method; sub-pixel (corner-gradient) is the most accurate on
        sharp images.
    """
    methods = {"subpix": cv2.aruco.CORNER_REFINE_SUBPIX,
               "contour": cv2.aruco.CORNER_REFINE_CONTOUR,
               "apriltag": cv2.aruco.CORNER_REFINE_APRILTAG,
               "none": cv2.aruco.CORNER_REFINE_NONE}
    if corner_refinement not in methods:
        raise InputError(f"corner_refinement {corner_refinement!r} is not one of {list(methods)}")
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = methods[corner_refinement]
    params.cornerRefinementWinSize = 5
    params.cornerRefinementMaxIterations = 50
    params.cornerRefinementMinAccuracy = 0.01
    aruco_dict = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, dictionary))
    return cv2.aruco.ArucoDetector(aruco_dict, params)


def detect_markers(detector: cv2.aruco.ArucoDetector, image: np.ndarray) -> MarkerDetections:
    """Detect markers in a BGR/RGB (H, W, 3) or grey (H, W) uint8 image."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise InputError("image must be a non-empty (H, W) or (H, W, 3) array")
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if grey.dtype != np.uint8:
        grey = np.clip(grey, 0, 255).astype(np.uint8)
    corners, ids, _rejected = detector.detectMarkers(grey)
    return MarkerDetections.from_opencv(corners, ids)


def refine_corners_by_edges(grey: np.ndarray, detections: MarkerDetections,
                            camera_matrix: np.ndarray, dist_coeffs: np.ndarray | None = None,
                            *, max_shift_px: float = 1.5) -> MarkerDetections:
    """Marker corners as intersections of the four border edges, each fitted to sub-pixel
    edge points (straight in the undistorted image).

    Gradient-based corner refinement (``cornerSubPix``) places the corner of a *blurred*
    convex square inside the true corner (the blur rounds it off): at 50 cm the markers
    come out ~0.2 % small and the pose ~1 mm too far. An edge's 50 % level does not move
    under symmetric blur, and lines through many edge points average the noise. Along each
    side, between 12 % and 88 % of its length, the intensity profile across the edge
    (+-4 px, dark border inside, white margin outside) gives the sub-pixel crossing of
    the mid level; the points are undistorted, a line is fitted (twice, dropping points
    more than 3 sigma off, e.g. where a hand covers the edge), and neighbouring lines
    intersect at the corners, distorted back. A corner that would move more than
    ``max_shift_px`` keeps its first estimate.

    Parameters
    ----------
    grey : (H, W) uint8 array
    detections : MarkerDetections
        Corners from the detector (distorted pixels).
    camera_matrix, dist_coeffs :
        The camera model of ``grey``.
    """
    if len(detections) == 0:
        return detections
    k = as_array(camera_matrix, name="camera_matrix", shape=(3, 3))
    dist = np.zeros(5) if dist_coeffs is None else np.asarray(dist_coeffs, np.float64).ravel()
    corners = detections.corners_px
    edge, good = _edge_points(grey, corners)
    ideal = cv2.undistortPoints(edge.reshape(-1, 1, 2), k, dist).reshape(edge.shape)
    lines = _fit_lines(ideal, good)                       # (M, 4, 3), side k: corner k -> k+1
    meet = np.cross(np.roll(lines, 1, axis=1), lines)     # corner c: sides c-1 and c
    ok = (np.abs(meet[..., 2]) > 1e-12) & np.all(np.isfinite(meet), axis=2)
    point = meet[..., :2] / np.where(ok, meet[..., 2], 1.0)[..., None]
    pix, _ = cv2.projectPoints(np.c_[point.reshape(-1, 2), np.ones(point.size // 2)],
                               np.zeros(3), np.zeros(3), k, dist)
    pix = pix.reshape(corners.shape)
    ok &= np.linalg.norm(pix - corners, axis=2) <= max_shift_px
    return MarkerDetections(detections.ids, np.where(ok[..., None], pix, corners))


def _fit_lines(points: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Homogeneous lines (a, b, c), a x + b y + c = 0, through each side's points.

    ``points`` (M, 4, N, 2), ``usable`` (M, 4, N). Total least squares (the normal is the
    covariance's minor eigenvector), refitted once without points more than 3 sigma (at
    least 1e-4) off; NaN for a side with fewer than 4 usable points.
    """
    weight = usable.astype(np.float64)
    for _ in range(2):
        count = weight.sum(axis=2)
        total = np.maximum(count, 1.0)[..., None]
        centre = np.sum(points * weight[..., None], axis=2) / total
        d = (points - centre[:, :, None, :]) * np.sqrt(weight)[..., None]
        sxx = np.sum(d[..., 0] ** 2, axis=2)
        syy = np.sum(d[..., 1] ** 2, axis=2)
        sxy = np.sum(d[..., 0] * d[..., 1], axis=2)
        # minor eigenvector of [[sxx, sxy], [sxy, syy]]: the line's normal
        angle = 0.5 * np.arctan2(2.0 * sxy, sxx - syy) + 0.5 * np.pi
        normal = np.stack([np.cos(angle), np.sin(angle)], axis=-1)
        residual = np.sum((points - centre[:, :, None, :]) * normal[:, :, None, :], axis=3)
        sigma = np.sqrt(np.sum(weight * residual ** 2, axis=2) / total[..., 0])
        weight = weight * (np.abs(residual) <= np.maximum(3.0 * sigma, 1e-4)[..., None])
    lines = np.concatenate([normal, -np.sum(normal * centre, axis=2, keepdims=True)], axis=2)
    lines[count < 4] = np.nan
    return lines


def _edge_points(grey: np.ndarray, corners: np.ndarray, n_samples: int = 12
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel points on the four border edges of each marker (distorted px).

    Returns (M, 4, n_samples, 2) points, side k from corner k to corner k+1, and a (M, 4,
    n_samples) mask of the usable ones (a dark-to-bright step of at least 40 grey levels).
    """
    offsets = np.arange(-4.0, 4.01, 0.5)
    t = np.linspace(0.12, 0.88, n_samples)
    start = corners                                      # (M, 4, 2)
    end = np.roll(corners, -1, axis=1)
    direction = end - start
    direction = direction / np.maximum(np.linalg.norm(direction, axis=2, keepdims=True), 1e-9)
    normal = np.stack([direction[..., 1], -direction[..., 0]], axis=-1)
    centre = corners.mean(axis=1, keepdims=True)
    flip = np.sum((0.5 * (start + end) - centre) * normal, axis=2, keepdims=True) < 0
    normal = np.where(flip, -normal, normal)              # outward
    base = start[:, :, None, :] + t[None, None, :, None] * (end - start)[:, :, None, :]
    samples = base[:, :, :, None, :] + offsets[None, None, None, :, None] \
        * normal[:, :, None, None, :]                    # (M, 4, n_s, n_o, 2)
    grid = samples.reshape(-1, len(offsets), 2).astype(np.float32)
    profile = cv2.remap(grey, grid[..., 0], grid[..., 1], cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE).astype(np.float64)
    inner = profile[:, :3].mean(axis=1)
    outer = profile[:, -3:].mean(axis=1)
    level = 0.5 * (inner + outer)
    above = profile >= level[:, None]
    rising = above[:, 1:] & ~above[:, :-1]
    first = np.argmax(rising, axis=1)                    # first rise through the mid level
    rows = np.arange(len(profile))
    p0, p1 = profile[rows, first], profile[rows, first + 1]
    frac = np.clip((level - p0) / np.maximum(p1 - p0, 1e-9), 0.0, 1.0)
    good = (outer - inner > 40.0) & np.any(rising, axis=1)
    shift = offsets[first] + frac * (offsets[1] - offsets[0])
    edge = base.reshape(-1, 2) + shift[:, None] * np.repeat(normal.reshape(-1, 2), n_samples,
                                                            axis=0)
    return edge.reshape(base.shape), good.reshape(base.shape[:3])


def _as_image_points(points: np.ndarray) -> np.ndarray:
    """(N, 2) float64 from (N, 2), (N, 1, 2) or (M, 4, 2) corner arrays."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.shape[-1] != 2:
        raise InputError(f"image points must end in a dimension of 2, got shape {arr.shape}")
    return arr.reshape(-1, 2)


def _to_transform(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64).reshape(3, 1))[0]
    out[:3, 3] = np.asarray(tvec, dtype=np.float64).reshape(3)
    return out


def _rms(object_points: np.ndarray, image_points: np.ndarray, rvec: np.ndarray,
         tvec: np.ndarray, camera_matrix: np.ndarray, dist_coeffs: np.ndarray) -> float:
    proj, _ = cv2.projectPoints(object_points, rvec, tvec, camera_matrix, dist_coeffs)
    return float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - image_points) ** 2, axis=1))))


@dataclass(frozen=True)
class PnPSolution:
    """Result of :func:`solve_pose`.

    Attributes
    ----------
    camera_from_object : (4, 4) array
        Best pose (lowest reprojection RMS).
    rms_px : float
    ambiguous : bool
        The other planar solution fits almost as well and differs by > 2 deg.
    alternative : (4, 4) array or None
        The other planar (IPPE) solution after LM refinement, if any.
    alternative_rms_px : float
        Its RMS (inf if none).
    """

    camera_from_object: np.ndarray
    rms_px: float
    ambiguous: bool = False
    alternative: np.ndarray | None = None
    alternative_rms_px: float = float("inf")


def solve_pose(object_points_mm: np.ndarray, image_points_px: np.ndarray,
               camera_matrix: np.ndarray, dist_coeffs: np.ndarray | None = None, *,
               planar: bool | None = None) -> PnPSolution:
    """Pose of a rigid point set from its image: IPPE (planar) or SQPnP, then LM.

    Parameters
    ----------
    object_points_mm : (N, 3) array
        Points in the object frame, mm (N >= 4).
    image_points_px : (N, 2) or (N, 1, 2) array
        Their pixels in the (distorted) image.
    camera_matrix : (3, 3) array
    dist_coeffs : array or None
        OpenCV distortion coefficients; None = no distortion.
    planar : bool, optional
        Force the planar/non-planar branch; detected from the points by default.

    Returns
    -------
    PnPSolution
    """
    obj = as_array(object_points_mm, name="object_points_mm", shape=(None, 3))
    img = _as_image_points(image_points_px)
    if len(obj) != len(img) or len(obj) < 4:
        raise InputError(f"need >= 4 matching points, got {len(obj)} object / {len(img)} image")
    k = as_array(camera_matrix, name="camera_matrix", shape=(3, 3))
    dist = np.zeros(5) if dist_coeffs is None else np.asarray(dist_coeffs, np.float64).ravel()
    if planar is None:
        centred = obj - obj.mean(axis=0)
        planar = bool(np.linalg.svd(centred, compute_uv=False)[-1] / np.sqrt(len(obj)) < 1e-3)
    flag = cv2.SOLVEPNP_IPPE if planar else cv2.SOLVEPNP_SQPNP
    n_sol, rvecs, tvecs, _errs = cv2.solvePnPGeneric(obj, img, k, dist, flags=flag)
    if n_sol == 0:
        raise InputError("PnP found no solution")
    candidates = []
    for rvec, tvec in zip(rvecs[:n_sol], tvecs[:n_sol], strict=True):
        rvec_r, tvec_r = cv2.solvePnPRefineLM(obj, img, k, dist, rvec.copy(), tvec.copy(),
                                              criteria=_LM_CRITERIA)
        if float(tvec_r.reshape(3)[2]) <= 0:  # behind the camera: not a physical solution
            continue
        candidates.append((_rms(obj, img, rvec_r, tvec_r, k, dist), rvec_r, tvec_r))
    if not candidates:
        raise InputError("PnP solutions all lie behind the camera")
    candidates.sort(key=lambda c: c[0])
    best_rms, rvec, tvec = candidates[0]
    pose = _to_transform(rvec, tvec)
    if len(candidates) == 1:
        return PnPSolution(pose, best_rms)
    alt_rms, alt_r, alt_t = candidates[1]
    alternative = _to_transform(alt_r, alt_t)
    angle_deg = angle_between_transforms_deg(pose, alternative)
    close_fit = (alt_rms < _AMBIGUITY_RMS_RATIO * best_rms
                 or alt_rms - best_rms < _AMBIGUITY_MARGIN_PX)
    ambiguous = bool(close_fit and angle_deg > _AMBIGUOUS_MIN_ANGLE_DEG)
    return PnPSolution(pose, best_rms, ambiguous, alternative, alt_rms)


def _marker_residuals_px(object_points: np.ndarray, image_points: np.ndarray,
                         camera_from_object: np.ndarray, camera_matrix: np.ndarray,
                         dist_coeffs: np.ndarray | None) -> np.ndarray:
    """(N, 4) distance (px) of each marker corner from its reprojection."""
    rvec = cv2.Rodrigues(camera_from_object[:3, :3])[0]
    dist = np.zeros(5) if dist_coeffs is None else dist_coeffs
    proj, _ = cv2.projectPoints(object_points, rvec, camera_from_object[:3, 3], camera_matrix,
                                dist)
    return np.linalg.norm(proj.reshape(-1, 2) - image_points, axis=1).reshape(-1, 4)


def estimate_tool_pose(tool: ToolDefinition, detections: MarkerDetections,
                       camera_matrix: np.ndarray, dist_coeffs: np.ndarray | None = None, *,
                       min_markers: int = 1) -> ToolPose | None:
    """Pose of one tool from all its detected markers jointly; None if too few are seen.

    Markers that do not fit the others are dropped (see the module docstring); None when
    fewer than ``min_markers`` remain or a lone marker does not fit itself.
    """
    mine = detections.select(tool.marker_ids)
    if len(mine) < min_markers or len(mine) == 0:
        return None
    ids = [int(i) for i in mine.ids]
    corners = {int(i): c for i, c in zip(mine.ids, mine.corners_px, strict=True)}

    def fit(subset: list[int]) -> tuple[PnPSolution, float] | None:
        obj = tool.object_points(tuple(subset))
        img = np.concatenate([corners[i] for i in subset])
        try:
            sol = solve_pose(obj, img, camera_matrix, dist_coeffs, planar=tool.is_planar)
        except (ValueError, cv2.error) as exc:
            log.debug("pose of %s failed: %s", tool.name, exc)
            return None
        worst = _marker_residuals_px(obj, img, sol.camera_from_object, camera_matrix,
                                     dist_coeffs).max()
        return sol, float(worst)

    rejected: list[int] = []
    best = fit(ids)
    while best is not None and best[1] > MARKER_RESIDUAL_PX:
        if len(ids) == 1:       # a lone marker that does not fit a square: no pose
            log.debug("%s: marker %d does not fit (%.2f px)", tool.name, ids[0], best[1])
            return None
        # leave each marker out in turn; drop the one whose absence fits the rest best
        trials = [(fit(ids[:k] + ids[k + 1:]), k) for k in range(len(ids))]
        trials = [(t, k) for t, k in trials if t is not None]
        if not trials:
            return None
        best, k = min(trials, key=lambda tk: tk[0][1])
        log.debug("%s: dropping marker %d (the rest fit to %.2f px)", tool.name, ids[k],
                  best[1])
        rejected.append(ids.pop(k))
        if len(ids) < min_markers:
            return None
    if best is None:
        return None
    sol = best[0]
    img = np.concatenate([corners[i] for i in ids])
    return ToolPose(tool=tool.name, camera_from_tool=sol.camera_from_object, rms_px=sol.rms_px,
                    marker_ids=tuple(ids), n_corners=len(img), ambiguous=sol.ambiguous,
                    alternative=sol.alternative, alternative_rms_px=sol.alternative_rms_px,
                    rejected_marker_ids=tuple(rejected))


@dataclass
class MarkerTracker:
    """Detect markers and estimate the pose of every tool in an image.

    Parameters
    ----------
    tools : mapping name -> ToolDefinition, or iterable of ToolDefinition
        Tools tracked together (one dictionary, distinct ids).
    camera_matrix : (3, 3) array
        Intrinsics of the images passed to :meth:`track`.
    dist_coeffs : array, optional
        Distortion of those images (None or zeros for undistorted images).
    min_markers : int
        Tools seen with fewer markers get no pose.
    max_rms_px : float
        Poses with a larger reprojection RMS are discarded (wrong detection or id clash).
    corner_refinement : str
        Passed to :func:`make_detector`.
    edge_refinement : bool
        Then place each corner where its two border edges meet
        (:func:`refine_corners_by_edges`).

    Examples
    --------
    >>> from guidance.tracking.tools import load_builtin_tools
    >>> k = np.array([[1000.0, 0, 640], [0, 1000.0, 360], [0, 0, 1]])
    >>> tracker = MarkerTracker(load_builtin_tools(), k)
    >>> tracker.track(np.zeros((720, 1280), np.uint8)).poses
    {}
    """

    tools: Mapping[str, ToolDefinition] | Iterable[ToolDefinition]
    camera_matrix: np.ndarray
    dist_coeffs: np.ndarray | None = None
    min_markers: int = 1
    max_rms_px: float = 3.0
    corner_refinement: str = "subpix"
    edge_refinement: bool = True
    _detector: cv2.aruco.ArucoDetector = field(init=False, repr=False)

    def __post_init__(self) -> None:
        values = self.tools.values() if isinstance(self.tools, Mapping) else self.tools
        self.tools = check_tool_set(values)
        if not self.tools:
            raise InputError("MarkerTracker needs at least one tool")
        self.camera_matrix = as_array(self.camera_matrix, name="camera_matrix", shape=(3, 3))
        if self.dist_coeffs is not None:
            self.dist_coeffs = as_array(self.dist_coeffs, name="dist_coeffs").ravel()
        dictionary = next(iter(self.tools.values())).dictionary
        self._detector = make_detector(dictionary, corner_refinement=self.corner_refinement)

    def detect(self, image: np.ndarray) -> MarkerDetections:
        """Markers in one image."""
        detections = detect_markers(self._detector, image)
        if self.edge_refinement and len(detections):
            grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            detections = refine_corners_by_edges(grey, detections, self.camera_matrix,
                                                 self.dist_coeffs)
        return detections

    def estimate(self, detections: MarkerDetections) -> dict[str, ToolPose]:
        """Pose of every tool with enough markers in ``detections`` (name -> ToolPose)."""
        poses = {}
        for name, tool in self.tools.items():
            pose = estimate_tool_pose(tool, detections, self.camera_matrix, self.dist_coeffs,
                                      min_markers=self.min_markers)
            if pose is None:
                continue
            if pose.rms_px > self.max_rms_px:
                log.debug("rejecting %s pose: RMS %.2f px > %.2f", name, pose.rms_px,
                          self.max_rms_px)
                continue
            poses[name] = pose
        return poses

    def track(self, image: np.ndarray) -> TrackingResult:
        """Detect and estimate in one call."""
        detections = self.detect(image)
        return TrackingResult(detections=detections, poses=self.estimate(detections))


@dataclass(frozen=True)
class TrackingResult:
    """Detections and tool poses of one image."""

    detections: MarkerDetections
    poses: dict[str, ToolPose]
