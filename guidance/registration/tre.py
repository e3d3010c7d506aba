"""Predicted registration error from fiducial localisation error and fiducial geometry.

J. M. Fitzpatrick, J. B. West, C. R. Maurer Jr., "Predicting error in rigid-body
point-based registration", IEEE TMI 17(5):694–702, 1998, doi:10.1109/42.736021:

* eq. (46): ``<TRE^2(r)> ~= <FLE^2>/N * (1 + 1/3 * sum_k d_k^2 / f_k^2)`` where ``d_k`` is
  the distance of the target ``r`` from the k-th principal axis of the fiducial
  configuration and ``f_k`` the RMS distance of the fiducials from that axis;
* eq. (10): ``<FRE^2> ~= (1 - 2/N) <FLE^2>``.

``FLE`` is the RMS 3-D localisation error (isotropic, the same for every fiducial), i.e.
a per-axis standard deviation of ``FLE / sqrt(3)``. The formulae are first order in FLE
and hold for the rigid (no scaling) fit of :func:`register_paired_points`.
"""

from __future__ import annotations

import numpy as np

from models.base.errors import InputError
from models.base.validation import as_points, as_positive


def predict_tre_mm(fiducials_mm: np.ndarray, targets_mm: np.ndarray,
                   fle_mm: float) -> np.ndarray:
    """Expected RMS target registration error at each target (Fitzpatrick–West eq. 46).

    Parameters
    ----------
    fiducials_mm : (N, 3) array
        Fiducial positions (either frame; only their geometry matters), N >= 3.
    targets_mm : (M, 3) or (3,) array
        Target positions in the same frame.
    fle_mm : float
        RMS 3-D fiducial localisation error (mm).

    Returns
    -------
    (M,) array
        RMS TRE (mm) expected at each target.

    Examples
    --------
    >>> fids = np.array([[50.0, 0, 0], [-50, 0, 0], [0, 50, 0], [0, -50, 0]])
    >>> round(float(predict_tre_mm(fids, [0, 0, 0], 1.0)[0]), 3)  # at the centroid: FLE/sqrt(N)
    0.5
    """
    fids = as_points(fiducials_mm, name="fiducials_mm")
    targets = as_points(targets_mm, name="targets_mm")
    fle = as_positive(fle_mm, name="fle_mm", allow_zero=True)
    n = fids.shape[0]
    if n < 3:
        raise InputError(f"need >= 3 fiducials, got {n}")
    centroid = fids.mean(axis=0)
    centred = fids - centroid
    _, axes = np.linalg.eigh(centred.T @ centred)  # columns: principal axes
    f_proj = centred @ axes                         # fiducial coordinates along each axis
    t_proj = (targets - centroid) @ axes
    total_sq_f = np.sum(f_proj**2, axis=1)
    total_sq_t = np.sum(t_proj**2, axis=1)
    ratio = np.zeros(len(targets))
    for k in range(3):
        f_k_sq = np.mean(total_sq_f - f_proj[:, k] ** 2)  # mean squared distance from axis k
        if f_k_sq < 1e-12:
            raise InputError("fiducials are collinear: TRE is unbounded")
        d_k_sq = total_sq_t - t_proj[:, k] ** 2
        ratio += d_k_sq / f_k_sq
    return np.sqrt(fle**2 / n * (1.0 + ratio / 3.0))


def expected_fre_mm(n_fiducials: int, fle_mm: float) -> float:
    """Expected RMS FRE for N fiducials with RMS FLE (Fitzpatrick–West eq. 10)."""
    if n_fiducials < 3:
        raise InputError(f"need >= 3 fiducials, got {n_fiducials}")
    fle = as_positive(fle_mm, name="fle_mm", allow_zero=True)
    return float(fle * np.sqrt(1.0 - 2.0 / n_fiducials))


def fle_from_fre_mm(fre_mm: float, n_fiducials: int) -> float:
    """FLE estimated from an observed FRE (inverse of :func:`expected_fre_mm`)."""
    if n_fiducials < 3:
        raise InputError(f"need >= 3 fiducials, got {n_fiducials}")
    fre = as_positive(fre_mm, name="fre_mm", allow_zero=True)
    return float(fre / np.sqrt(1.0 - 2.0 / n_fiducials))
