"""Central-axis electron depth dose in water: construction from published points, analysis.

Construction (:func:`build_depth_dose`)
---------------------------------------
When a machine's beam data give only the commissioning points (surface dose ``Ds``, depth of
maximum ``dmax``, ``R90``, ``R50``, practical range ``Rp`` and the bremsstrahlung background
``Dx``), the curve is a C1 piecewise cubic Hermite through the knots

====================  ==========  ==============================================
depth                 dose %      slope (%/mm)
====================  ==========  ==============================================
0                     Ds          2 (100 - Ds) / dmax  (quadratic build-up)
dmax                  100         0
R90                   90          s90 (see below)
R50                   50          s50 = -(50 - Dx) / (Rp - R50)
R50 + 2 (Rp - R50)    Dx          tail slope
2 Rp                  Dx / 2      tail slope (slow linear bremsstrahlung tail)
====================  ==========  ==============================================

``s50`` makes the tangent at R50 meet the background exactly at ``Rp`` (the practical-range
definition of ICRU Report 35 / AAPM TG-25, Khan 1991, doi:10.1118/1.596642). ``s90`` is
chosen so that the segment R90-R50 is a parabola (``s90 = 2 (-40 / (R50 - R90)) - s50``),
clamped to 20-100 % of the mean slope so every segment stays monotone (Fritsch & Carlson
1980, doi:10.1137/0717021) and the steepest point is R50. Measured tables
(``depth_mm``/``dose_percent`` in the JSON) are used as they are instead.

Analysis (:func:`analyse_depth_dose`)
-------------------------------------
R90 and R50 are the deepest crossings of 90 % and 50 % beyond the maximum (linear
interpolation); Rp is where the tangent at the steepest descent meets the bremsstrahlung
background, itself a straight-line fit to the tail beyond the electron toe
(deeper than ``Rp + 1.2 (Rp - R50)``); the surface dose is
read at 0.5 mm depth (ICRU 35).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from scipy.interpolate import CubicHermiteSpline

from models.base.errors import InputError

#: Sampling step (mm) of constructed depth-dose tables.
TABLE_STEP_MM = 0.1

#: Depth at which the surface dose is read (ICRU Report 35).
SURFACE_DEPTH_MM = 0.5


@dataclass(frozen=True)
class DepthDosePoints:
    """Commissioning points of one energy (water, reference applicator, mm and %)."""

    surface_percent: float
    dmax_mm: float
    r90_mm: float
    r50_mm: float
    rp_mm: float
    bremsstrahlung_percent: float


@dataclass(frozen=True)
class DepthDoseMetrics:
    """Characteristic depths (mm) and doses (% of maximum) of a depth-dose curve."""

    r90_mm: float
    r50_mm: float
    rp_mm: float
    dmax_mm: float
    surface_percent: float
    bremsstrahlung_percent: float


def build_depth_dose(points: DepthDosePoints, *,
                     step_mm: float = TABLE_STEP_MM) -> tuple[np.ndarray, np.ndarray]:
    """Tabulate a depth-dose curve through the commissioning points (see module docstring).

    Returns
    -------
    depth_mm, dose_percent : numpy.ndarray
        Shape (N,), depth from 0 to ``2 Rp`` in ``step_mm`` steps; dose in % of maximum.
    """
    p = points
    if not 0 < p.dmax_mm < p.r90_mm < p.r50_mm < p.rp_mm:
        raise InputError(f"depth-dose points must satisfy 0 < dmax < R90 < R50 < Rp, got {p}")
    if not 0 < p.surface_percent < 100 or not 0 <= p.bremsstrahlung_percent < 10:
        raise InputError(f"surface or bremsstrahlung dose out of range in {p}")
    bx = p.bremsstrahlung_percent
    z_end = 2.0 * p.rp_mm
    tail_slope = -0.5 * bx / p.rp_mm          # background falls to Dx/2 at 2 Rp

    def background(z: float) -> float:
        return bx + tail_slope * (z - p.rp_mm)

    s50 = -(50.0 - background(p.rp_mm)) / (p.rp_mm - p.r50_mm)
    mean_fall = -40.0 / (p.r50_mm - p.r90_mm)
    s90 = float(np.clip(2.0 * mean_fall - s50, mean_fall, 0.2 * mean_fall))
    s90 = max(s90, -30.0 / (p.r90_mm - p.dmax_mm))       # keep dmax..R90 monotone
    z_toe = p.r50_mm + 2.0 * (p.rp_mm - p.r50_mm)
    knots = np.array([0.0, p.dmax_mm, p.r90_mm, p.r50_mm, z_toe, z_end])
    values = np.array([p.surface_percent, 100.0, 90.0, 50.0, background(z_toe),
                       background(z_end)])
    slopes = np.array([2.0 * (100.0 - p.surface_percent) / p.dmax_mm, 0.0, s90, s50,
                       tail_slope, tail_slope])
    spline = CubicHermiteSpline(knots, values, slopes)
    depth = np.arange(0.0, z_end + 0.5 * step_mm, step_mm)
    return depth, spline(depth)


def analyse_depth_dose(depth_mm: np.ndarray, dose: np.ndarray) -> DepthDoseMetrics:
    """R90, R50, Rp, dmax and surface dose of a depth-dose curve.

    Parameters
    ----------
    depth_mm : numpy.ndarray
        Shape (N,), increasing depths (mm) from the surface.
    dose : numpy.ndarray
        Shape (N,), dose in any unit; normalised here to its maximum.

    Raises
    ------
    ValueError
        If the curve never falls below 50 % of its maximum (too short to analyse).
    """
    z = np.asarray(depth_mm, dtype=np.float64)
    d = np.asarray(dose, dtype=np.float64)
    if z.ndim != 1 or z.shape != d.shape or z.size < 4:
        raise InputError("depth_mm and dose must be 1-D arrays of the same length >= 4")
    if not np.all(np.isfinite(d)) or d.max() <= 0:
        raise InputError("dose must be finite with a positive maximum")
    d = 100.0 * d / d.max()
    i_max = int(np.argmax(d))
    r90 = _deepest_crossing(z, d, 90.0, i_max)
    r50 = _deepest_crossing(z, d, 50.0, i_max)
    grad = np.gradient(d, z)
    fall = slice(i_max, len(z))
    i_steep = i_max + int(np.argmin(grad[fall]))
    slope = grad[i_steep]
    rp0 = z[i_steep] - d[i_steep] / slope                 # tangent meets zero
    tail = z > rp0 + 1.2 * (rp0 - z[i_steep])      # beyond the electron toe
    if np.count_nonzero(tail) >= 3:
        coef = np.polyfit(z[tail], d[tail], 1)
    else:
        coef = np.array([0.0, 0.0])
    # tangent: d_s + slope (x - z_s) = coef0 x + coef1
    rp = (coef[1] - d[i_steep] + slope * z[i_steep]) / (slope - coef[0])
    bx = float(np.polyval(coef, rp))
    surface = float(np.interp(SURFACE_DEPTH_MM, z, d))
    return DepthDoseMetrics(r90_mm=r90, r50_mm=r50, rp_mm=float(rp), dmax_mm=float(z[i_max]),
                            surface_percent=surface, bremsstrahlung_percent=bx)


def _deepest_crossing(z: np.ndarray, d: np.ndarray, level: float, start: int) -> float:
    """Depth beyond index ``start`` where ``d`` last falls through ``level`` (linear interp)."""
    above = d[start:] >= level
    if above.all():
        raise InputError(f"depth-dose curve never falls below {level:g} % of its maximum")
    last = start + int(np.nonzero(above)[0][-1])
    z0, z1, d0, d1 = z[last], z[last + 1], d[last], d[last + 1]
    return float(z0 + (d0 - level) * (z1 - z0) / (d0 - d1))


def lookup_uniform(x: np.ndarray, depth: np.ndarray, table: np.ndarray, *,
                   beyond: float = 0.0) -> np.ndarray:
    """Linear interpolation in a table on a uniform depth grid starting at 0 (fast np.interp).

    Values below 0 take ``table[0]``, beyond the last depth ``beyond``; NaN stays NaN.

    Examples
    --------
    >>> import numpy as np
    >>> depth = np.arange(4.0)          # 0, 1, 2, 3 mm
    >>> table = np.array([0.0, 10.0, 20.0, 40.0])
    >>> lookup_uniform(np.array([-1.0, 0.5, 2.5, 3.0, 3.5]), depth, table, beyond=-1.0)
    array([ 0.,  5., 30., 40., -1.])
    """
    values = np.ascontiguousarray(x, dtype=np.float64)
    out = _lookup_uniform(values.reshape(-1), float(depth[1] - depth[0]),
                          np.ascontiguousarray(table, dtype=np.float64), float(beyond))
    return out.reshape(values.shape)


@numba.njit(cache=True, nogil=True, inline="always")
def lookup_uniform_at(value: float, step: float, table: np.ndarray, beyond: float) -> float:
    """:func:`lookup_uniform` of one value (for numba kernels): ``table`` on the depths
    ``0, step, 2 step, ...``; below 0 ``table[0]``, beyond the last ``beyond``, NaN stays
    NaN."""
    if value != value:   # NaN
        return value
    n = table.size
    pos = max(value / step, 0.0)
    if pos > n - 1:
        return beyond
    idx = min(int(pos), n - 2)
    frac = pos - idx
    return table[idx] * (1.0 - frac) + table[idx + 1] * frac


@numba.njit(cache=True, nogil=True)
def _lookup_uniform(x: np.ndarray, step: float, table: np.ndarray,
                    beyond: float) -> np.ndarray:
    """:func:`lookup_uniform` on a flat array (one pass, no temporaries)."""
    out = np.empty(x.size)
    for q in range(x.size):
        out[q] = lookup_uniform_at(x[q], step, table, beyond)
    return out
