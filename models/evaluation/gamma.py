"""3-D gamma index pass rate (Low et al. 1998, doi:10.1118/1.598248) on one regular grid.

Both doses share a grid (the reference's); the evaluated dose is interpolated (trilinear)
at sub-voxel offsets inside the distance-to-agreement sphere. A reference point passes
when some offset ``dr`` with ``|dr| <= distance_mm`` gives
``|dr|^2 / distance_mm^2 + (D_eval(r + dr) - D_ref(r))^2 / dD^2 <= 1``, with the global
dose criterion ``dD = dose_percent`` % of the reference maximum. Only the pass/fail of
each point is computed (a gamma above 1 needs no larger search). Offsets are sampled every
``distance_mm / SUBSTEPS`` on a full cubic lattice inside the sphere (0.25 mm for 2 mm),
which finds the minimum at least as well as pymedphys' shells (its pass rate is within
~1.5 % of pymedphys' and a linear ramp gives the analytic result; tests check both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from models.base.errors import InputError

#: Offsets per distance-to-agreement along each axis.
SUBSTEPS = 8


@dataclass(frozen=True)
class GammaResult:
    """Pass rate (%) over ``points`` reference voxels (``nan`` when there are none)."""

    pass_percent: float
    points: int
    dose_percent: float
    distance_mm: float
    cutoff_percent: float


def gamma_pass_rate(reference: np.ndarray, evaluated: np.ndarray, spacing_mm, *,
                    dose_percent: float, distance_mm: float, cutoff_percent: float = 10.0,
                    mask: np.ndarray | None = None, norm: float | None = None
                    ) -> GammaResult:
    """Share of reference voxels with gamma <= 1.

    Parameters
    ----------
    reference, evaluated : numpy.ndarray
        Doses on the same grid, shape (nk, nj, ni), any unit.
    spacing_mm : sequence of float
        Voxel spacing (dk, dj, di) in mm, matching the array axes.
    dose_percent, distance_mm : float
        Global dose criterion (% of ``norm``) and distance to agreement (mm).
    cutoff_percent : float
        Reference voxels below this % of ``norm`` are not evaluated.
    mask : numpy.ndarray, optional
        Boolean (nk, nj, ni): only these reference voxels are evaluated.
    norm : float, optional
        Dose of 100 % (default: the reference maximum).
    """
    ref = np.asarray(reference, dtype=np.float64)
    ev = np.asarray(evaluated, dtype=np.float64)
    if ref.shape != ev.shape or ref.ndim != 3:
        raise InputError(f"gamma: both doses must be 3-D on one grid, got {ref.shape} and "
                         f"{ev.shape}")
    h = np.asarray(spacing_mm, dtype=np.float64)
    if h.shape != (3,) or np.any(h <= 0) or dose_percent <= 0 or distance_mm <= 0:
        raise InputError("gamma: spacing, dose and distance criteria must be positive")
    peak = float(ref.max()) if norm is None else float(norm)
    dd = dose_percent / 100.0 * peak
    sel = ref >= cutoff_percent / 100.0 * peak
    if mask is not None:
        sel &= np.asarray(mask, dtype=bool)
    idx = np.argwhere(sel)
    if idx.size == 0:
        return GammaResult(float("nan"), 0, dose_percent, distance_mm, cutoff_percent)
    r_val = ref[sel]
    passed = np.abs(ev[sel] - r_val) <= dd
    step = distance_mm / SUBSTEPS
    grid = np.arange(-SUBSTEPS, SUBSTEPS + 1) * step
    offsets = np.array([(a, b, c) for a in grid for b in grid for c in grid
                        if 0 < a * a + b * b + c * c <= distance_mm ** 2 + 1e-9])
    offsets = offsets[np.argsort(np.sum(offsets ** 2, axis=1))]
    base = idx.T.astype(np.float64)
    for off in offsets:
        todo = ~passed
        if not todo.any():
            break
        coords = base[:, todo] + (off / h)[:, None]
        values = ndimage.map_coordinates(ev, coords, order=1, mode="nearest")
        g2 = np.sum(off ** 2) / distance_mm ** 2 + ((values - r_val[todo]) / dd) ** 2
        hit = np.flatnonzero(todo)[g2 <= 1.0]
        passed[hit] = True
    return GammaResult(100.0 * float(passed.mean()), int(idx.shape[0]), dose_percent,
                       distance_mm, cutoff_percent)
