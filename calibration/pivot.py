"""Pivot calibration: the tip of a tracked tool from poses pivoting about a fixed point.

While the tool tip rests in a divot, every tracked pose ``tracker_from_tool_i = [R_i | t_i]``
satisfies ``R_i @ tip_tool + t_i = pivot_tracker``. Stacking ``[R_i  -I] [tip; pivot] = -t_i``
gives the algebraic least-squares solution (Yaniv, "Which pivot calibration?", SPIE
Medical Imaging 2015, doi:10.1117/12.2081348). A seeded RANSAC over 3-pose samples
rejects poses taken while the tip slipped (Fischler & Bolles 1981, doi:10.1145/358669.358692).

Observability: the component of the tip along a direction ``d`` is only measured if the
rotations move ``d``. :func:`rotation_spread_deg` is the RMS angle (small-angle
equivalent) by which the *least-moved* unit direction moves across the poses; near-pure
translations or rotation about one axis give ~0 and are refused with a
:class:`~calibration.errors.CalibrationError` rather than answered confidently wrong.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from calibration.errors import CalibrationError
from calibration.validation import as_positive, as_transforms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PivotResult:
    """Result of :func:`pivot_calibration`.

    Attributes
    ----------
    tip_mm : (3,) float64
        Tool tip in the tool frame, mm.
    pivot_mm : (3,) float64
        Pivot point in the tracker frame, mm.
    rms_mm : float
        RMS distance between the tip predicted by each inlier pose and the pivot, mm.
    residuals_mm : (N,) float64
        That distance for every input pose, mm.
    inliers : (N,) bool
        Poses used in the final fit.
    rotation_spread_deg : float
        Rotation spread of the inlier poses in their weakest direction, degrees.
    tip_std_mm : (3,) float64
        Standard deviation of ``tip_mm`` per axis from the fit's covariance, mm.
    """

    tip_mm: np.ndarray
    pivot_mm: np.ndarray
    rms_mm: float
    residuals_mm: np.ndarray
    inliers: np.ndarray
    rotation_spread_deg: float
    tip_std_mm: np.ndarray


def rotation_spread_deg(rotations: np.ndarray) -> float:
    """Smallest RMS angle (deg) by which any unit direction moves across the rotations.

    Computed as ``sqrt(lambda_min(sum_i (R_i - Rm)^T (R_i - Rm)) / N)`` with ``Rm`` the mean
    rotation matrix: the RMS displacement of the least-moved unit vector, read as an angle
    (exact for small angles). 0 for pure translations or rotation about a single axis.
    """
    rot = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    centred = rot - rot.mean(axis=0)
    gram = np.einsum("nji,njk->ik", centred, centred) / len(rot)
    smallest = max(float(np.linalg.eigvalsh(gram)[0]), 0.0)
    return float(np.degrees(2.0 * np.arcsin(min(np.sqrt(smallest) / 2.0, 1.0))))


def _solve(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(poses)
    a = np.zeros((3 * n, 6))
    a[:, :3] = poses[:, :3, :3].reshape(3 * n, 3)
    a[:, 3:] = -np.tile(np.eye(3), (n, 1))
    b = -poses[:, :3, 3].reshape(3 * n)
    x, *_ = np.linalg.lstsq(a, b, rcond=None)
    return x[:3], x[3:], a


def _residuals(poses: np.ndarray, tip: np.ndarray, pivot: np.ndarray) -> np.ndarray:
    predicted = np.einsum("nij,j->ni", poses[:, :3, :3], tip) + poses[:, :3, 3]
    return np.linalg.norm(predicted - pivot, axis=1)


def _check_enough_rotated_poses(poses: np.ndarray, min_poses: int,
                                min_rotation_spread_deg: float) -> None:
    """Refuse too few poses, or poses that do not rotate in two directions."""
    n = len(poses)
    if n < max(min_poses, 3):
        raise CalibrationError(f"pivot calibration needs at least {max(min_poses, 3)} poses, "
                               f"got {n}; record more while pivoting the tool about its tip")
    spread_all = rotation_spread_deg(poses[:, :3, :3])
    if spread_all < min_rotation_spread_deg:
        raise CalibrationError(
            f"the {n} poses rotate only {spread_all:.1f} deg in their weakest direction "
            f"(need >= {min_rotation_spread_deg:g}); pivot the tool about its tip in two "
            f"directions (a cone of >= 20 deg), not just translate or spin it")


def _ransac_inliers(poses: np.ndarray, inlier_mm: float, iterations: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Largest consensus set over random 3-pose samples (ties: smaller residual sum)."""
    n = len(poses)
    best_inliers = np.ones(n, bool)
    best_score = (-1, 0.0)
    for _ in range(iterations):
        sample = rng.choice(n, size=3, replace=False)
        tip, pivot, _a = _solve(poses[sample])
        res = _residuals(poses, tip, pivot)
        inliers = res < inlier_mm
        score = (int(inliers.sum()), -float(res[inliers].sum()))
        if score > best_score:
            best_score, best_inliers = score, inliers
    return best_inliers


def _refit_consensus(poses: np.ndarray, inliers: np.ndarray,
                     inlier_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Refit on the consensus set until it is stable; the set and the last residuals."""
    for _ in range(3):
        tip, pivot, _a = _solve(poses[inliers])
        res = _residuals(poses, tip, pivot)
        new = res < inlier_mm
        if new.sum() < 3 or np.array_equal(new, inliers):
            break
        inliers = new
    return inliers, res


def _final_fit(poses: np.ndarray, inliers: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tip, pivot, residuals of every pose and the tip's standard deviation per axis."""
    tip, pivot, a = _solve(poses[inliers])
    res = _residuals(poses, tip, pivot)
    n_in = int(inliers.sum())
    dof = max(3 * n_in - 6, 1)
    stacked = (np.einsum("nij,j->ni", poses[inliers, :3, :3], tip)
               + poses[inliers, :3, 3] - pivot)
    sigma2 = float(np.sum(stacked ** 2)) / dof
    cov = sigma2 * np.linalg.inv(a.T @ a)
    return tip, pivot, res, np.sqrt(np.diag(cov)[:3])


def pivot_calibration(tracker_from_tool: np.ndarray, *, inlier_mm: float = 1.5,
                      min_rotation_spread_deg: float = 10.0, min_poses: int = 8,
                      ransac_iterations: int = 200,
                      rng: np.random.Generator | None = None) -> PivotResult:
    """Tool tip (tool frame) and pivot point (tracker frame) from pivoting poses.

    Parameters
    ----------
    tracker_from_tool : (N, 4, 4) array
        Tracked rigid poses of the tool while its tip stays in one divot, mm.
    inlier_mm : float
        RANSAC inlier threshold on the tip-to-pivot distance, mm (about 4–6 x the tracking
        noise).
    min_rotation_spread_deg : float
        Refuse inlier poses whose :func:`rotation_spread_deg` is below this.
    min_poses : int
        Minimum number of inlier poses.
    ransac_iterations : int
        Number of random 3-pose samples.
    rng : numpy.random.Generator, optional
        Sample source; ``numpy.random.default_rng(0)`` if omitted (repeatable).

    Returns
    -------
    PivotResult

    Raises
    ------
    CalibrationError
        Too few poses or inliers, or too little rotation (the tip would be unobservable
        along some direction).

    Examples
    --------
    >>> import cv2
    >>> tip = np.array([0.0, 0.0, 150.0])
    >>> poses = []
    >>> for rx, ry in [(-20, 0), (20, 0), (0, -20), (0, 20), (15, 15), (-15, 15),
    ...                (15, -15), (-15, -15), (0, 0)]:
    ...     pose = np.eye(4)
    ...     pose[:3, :3] = cv2.Rodrigues(np.radians([rx, ry, 0.0]))[0]
    ...     pose[:3, 3] = [10.0, 20.0, 300.0] - pose[:3, :3] @ tip
    ...     poses.append(pose)
    >>> result = pivot_calibration(np.array(poses))
    >>> bool(np.allclose(result.tip_mm, tip, atol=1e-6))
    True
    """
    poses = as_transforms(tracker_from_tool, name="tracker_from_tool")
    inlier_mm = as_positive(inlier_mm, name="inlier_mm")
    n = len(poses)
    _check_enough_rotated_poses(poses, min_poses, min_rotation_spread_deg)
    rng = rng if rng is not None else np.random.default_rng(0)
    inliers = _ransac_inliers(poses, inlier_mm, ransac_iterations, rng)
    inliers, res = _refit_consensus(poses, inliers, inlier_mm)
    n_in = int(inliers.sum())
    if n_in < max(min_poses, 3):
        raise CalibrationError(
            f"only {n_in} of {n} poses agree on one pivot point within {inlier_mm:g} mm "
            f"(median residual {np.median(res):.2f} mm); keep the tip still in the divot, or "
            f"raise the inlier threshold if tracking noise is high")
    spread = rotation_spread_deg(poses[inliers, :3, :3])
    if spread < min_rotation_spread_deg:
        raise CalibrationError(
            f"the {n_in} consistent poses rotate only {spread:.1f} deg in their weakest "
            f"direction (need >= {min_rotation_spread_deg:g}); pivot the tool in two directions")
    tip, pivot, res, tip_std = _final_fit(poses, inliers)
    rms = float(np.sqrt(np.mean(res[inliers] ** 2)))
    log.info("pivot: tip %s mm, RMS %.3f mm, %d/%d inliers, spread %.1f deg",
             np.round(tip, 2), rms, n_in, n, spread)
    return PivotResult(tip_mm=tip, pivot_mm=pivot, rms_mm=rms, residuals_mm=res,
                       inliers=inliers, rotation_spread_deg=spread, tip_std_mm=tip_std)
