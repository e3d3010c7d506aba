"""Running sums along the beam (the first axis) of the dose engines' plane stacks, and
holding a stack's value beyond a water depth."""

from __future__ import annotations

import numpy as np


def cumsum_planes(values: np.ndarray) -> np.ndarray:
    """``np.cumsum(values, axis=0)``, bit for bit, a plane at a time.

    numpy accumulates along a leading axis with a strided inner loop: on the engine's
    (planes, pencils) and (planes, n, n) stacks that is 8-13x slower than adding whole
    planes, and the electron engine takes some fifteen such sums per dose.

    Parameters
    ----------
    values : numpy.ndarray
        (nz, ...) per-plane values (e.g. water-equivalent mm per segment).

    Returns
    -------
    numpy.ndarray
        (nz, ...) sums over the planes up to and including each, same dtype.

    Examples
    --------
    >>> cumsum_planes(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    array([[ 1.,  2.],
           [ 4.,  6.],
           [ 9., 12.]])
    """
    values = np.asarray(values)
    if values.ndim < 2 or values.shape[0] == 0:
        return np.cumsum(values, axis=0)
    out = np.empty_like(values)
    out[0] = values[0]
    for k in range(1, values.shape[0]):
        np.add(out[k - 1], values[k], out=out[k])
    return out


def hold_beyond(values: np.ndarray, zeff_mm: np.ndarray, depth_mm: float) -> np.ndarray:
    """(nz, P) ``values`` held, in each column, at the last plane whose water depth
    ``zeff_mm`` (nz, P) is at most ``depth_mm`` (the first plane if none is)."""
    last_below = np.maximum(np.count_nonzero(zeff_mm <= depth_mm, axis=0) - 1, 0)
    held = values[last_below, np.arange(values.shape[1])]
    return np.where(zeff_mm > depth_mm, held[None, :], values)
