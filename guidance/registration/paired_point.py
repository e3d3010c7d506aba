"""Paired-point rigid registration (Arun et al. 1987; Umeyama 1991), reflection-safe.

Given the same N >= 3 points in two frames, find ``fixed_from_moving`` minimising
``sum |fixed_i - (s R moving_i + t)|^2`` with ``R`` a proper rotation (det +1) and, only
if asked, a uniform scale ``s``.

* K. S. Arun, T. S. Huang, S. D. Blostein, "Least-squares fitting of two 3-D point sets",
  IEEE TPAMI 9(5), 1987, doi:10.1109/TPAMI.1987.4767965.
* S. Umeyama, "Least-squares estimation of transformation parameters between two point
  patterns", IEEE TPAMI 13(4), 1991, doi:10.1109/34.88573 — the sign correction
  ``diag(1, 1, det(U V^T))`` that rules out reflections (Arun's SVD can return one for
  noisy or near-planar points).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.base.errors import InputError
from models.base.validation import as_points


@dataclass(frozen=True)
class PairedPointResult:
    """Result of a paired-point registration.

    Attributes
    ----------
    fixed_from_moving : (4, 4) float64 array
        Maps moving-frame points onto the fixed frame (includes the scale if fitted).
    scale : float
        Uniform scale (1.0 unless ``allow_scaling``).
    residuals_mm : (N,) array
        Distance of each transformed moving point from its fixed point (mm).
    fre_mm : float
        Fiducial registration error: RMS of ``residuals_mm``.
    """

    fixed_from_moving: np.ndarray
    scale: float
    residuals_mm: np.ndarray
    fre_mm: float

    @property
    def worst_index(self) -> int:
        """Index of the fiducial with the largest residual."""
        return int(np.argmax(self.residuals_mm))


def register_paired_points(fixed_mm: np.ndarray, moving_mm: np.ndarray, *,
                           allow_scaling: bool = False,
                           weights: np.ndarray | None = None) -> PairedPointResult:
    """Rigid (or similarity) transform mapping ``moving_mm`` onto ``fixed_mm``.

    Parameters
    ----------
    fixed_mm : (N, 3) array
        Points in the fixed frame (e.g. CT fiducials in patient LPS, mm).
    moving_mm : (N, 3) array
        The same points in the moving frame (e.g. pointer tips in the reference frame).
    allow_scaling : bool, default False
        Also fit a uniform scale (Umeyama); off for patient registration.
    weights : (N,) array, optional
        Non-negative weights per pair (e.g. 1 / FLE^2); uniform by default.

    Returns
    -------
    PairedPointResult
        ``fixed_from_moving`` is ``patient_from_reference`` when called as
        ``register_paired_points(points_patient, points_reference)``.

    Raises
    ------
    ValueError
        Fewer than 3 pairs, mismatched shapes, or collinear points (rotation undefined).

    Examples
    --------
    >>> fixed = np.array([[0.0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]])
    >>> result = register_paired_points(fixed, fixed - [1.0, 2.0, 3.0])
    >>> np.round(result.fixed_from_moving[:3, 3], 6)
    array([1., 2., 3.])
    """
    fixed = as_points(fixed_mm, name="fixed_mm")
    moving = as_points(moving_mm, name="moving_mm")
    if fixed.shape != moving.shape:
        raise InputError(f"fixed_mm {fixed.shape} and moving_mm {moving.shape} must pair up")
    n = fixed.shape[0]
    if n < 3:
        raise InputError(f"paired-point registration needs >= 3 point pairs, got {n}")
    if weights is None:
        w = np.full(n, 1.0 / n)
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape != (n,) or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
            raise InputError("weights must be N finite non-negative numbers, not all zero")
        w = w / w.sum()
    mean_f = w @ fixed
    mean_m = w @ moving
    df = fixed - mean_f
    dm = moving - mean_m
    cov = (dm * w[:, None]).T @ df  # H = sum w m_i f_i^T (Arun eq. 11)
    u, sing, vt = np.linalg.svd(cov)
    spread = np.sqrt(max(float(w @ np.sum(dm**2, axis=1)), 1e-300))
    if sing[1] < 1e-9 * spread**2:
        raise InputError("points are collinear (or coincide): the rotation is undefined; "
                         "use >= 3 well-spread, non-collinear fiducials")
    sign = np.ones(3)
    sign[2] = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0  # Umeyama's reflection correction
    rot = vt.T @ np.diag(sign) @ u.T
    scale = 1.0
    if allow_scaling:
        var_m = float(w @ np.sum(dm**2, axis=1))
        scale = float(np.sum(sing * sign) / var_m)
    out = np.eye(4)
    out[:3, :3] = scale * rot
    out[:3, 3] = mean_f - scale * rot @ mean_m
    mapped = moving @ out[:3, :3].T + out[:3, 3]
    residuals = np.linalg.norm(mapped - fixed, axis=1)
    return PairedPointResult(fixed_from_moving=out, scale=scale, residuals_mm=residuals,
                             fre_mm=float(np.sqrt(np.mean(residuals**2))))
