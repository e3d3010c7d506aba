"""Hot loops of the dose engines: numba kernels, each with a plain-numpy twin.

The twins compute the same thing with straightforward numpy/scipy; tests compare them and
the benchmark reports the speed ratio. All kernels are pure functions on arrays.

* :func:`sample_rsp` / :func:`sample_rsp_numpy` — trilinear CT sampling on an oblique grid,
  fused with the HU -> relative stopping power lookup.
* :func:`spread_pencils` / :func:`spread_pencils_numpy` — sum of square pencil beams with a
  Gaussian lateral spread (erf profile of a square beamlet, Hogstrom et al. 1981,
  doi:10.1088/0031-9155/26/3/008).
* :func:`kv_wepl` / :func:`kv_wepl_numpy` — water-equivalent path length from a sphere
  surface to each voxel along radial rays.
* :func:`range_out_excess` / :func:`range_out_excess_numpy` — the excess fluence beside a
  bone edge ranging out with the depth of the columns it came from.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from scipy import ndimage
from scipy.special import erf

from models.beams.depth_dose import lookup_uniform, lookup_uniform_at
from models.dose.depth_sums import cumsum_planes, hold_beyond
from models.dose.materials import LUT_HU_MIN

#: Half width of a pencil's lateral window, in sigmas.
WINDOW_SIGMAS = 3.0

#: Relative stopping power given to points outside the CT (air).
OUTSIDE_RSP = 0.0


@numba.njit(cache=True, nogil=True, inline="always")
def _hu_at(ct: np.ndarray, fi: float, fj: float, fk: float) -> tuple[float, int]:
    """Trilinear HU at continuous CT index: (value, 0 ok / 1 outside / 2 NaN)."""
    ck, cj, ci = ct.shape
    if fi < 0.0 or fj < 0.0 or fk < 0.0 or fi > ci - 1 or fj > cj - 1 or fk > ck - 1:
        return 0.0, 1
    i0 = min(int(fi), ci - 2) if ci > 1 else 0
    j0 = min(int(fj), cj - 2) if cj > 1 else 0
    k0 = min(int(fk), ck - 2) if ck > 1 else 0
    ti = fi - i0
    tj = fj - j0
    tk = fk - k0
    i1 = min(i0 + 1, ci - 1)
    j1 = min(j0 + 1, cj - 1)
    k1 = min(k0 + 1, ck - 1)
    c00 = ct[k0, j0, i0] * (1 - ti) + ct[k0, j0, i1] * ti
    c01 = ct[k0, j1, i0] * (1 - ti) + ct[k0, j1, i1] * ti
    c10 = ct[k1, j0, i0] * (1 - ti) + ct[k1, j0, i1] * ti
    c11 = ct[k1, j1, i0] * (1 - ti) + ct[k1, j1, i1] * ti
    hu = (c00 * (1 - tj) + c01 * tj) * (1 - tk) + (c10 * (1 - tj) + c11 * tj) * tk
    if hu != hu:
        return 0.0, 2
    return hu, 0


@numba.njit(cache=True, nogil=True, inline="always")
def _rsp_at(ct: np.ndarray, fi: float, fj: float, fk: float,
            lut: np.ndarray) -> tuple[float, int]:
    """RSP at continuous CT index (fi, fj, fk): (value, 0 ok / 1 outside / 2 NaN)."""
    hu, flag = _hu_at(ct, fi, fj, fk)
    if flag:
        return OUTSIDE_RSP, flag
    n_lut = lut.shape[0]
    x = hu - LUT_HU_MIN
    if x <= 0.0:
        return lut[0], 0
    if x >= n_lut - 1:
        return lut[n_lut - 1], 0
    m = int(x)
    t = x - m
    return lut[m] * (1 - t) + lut[m + 1] * t, 0


@numba.njit(cache=True, nogil=True)
def sample_rsp(ct: np.ndarray, ct_from_grid: np.ndarray, shape: tuple[int, int, int],
               lut: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Relative stopping power at every node of a grid, by trilinear CT interpolation.

    Parameters
    ----------
    ct : numpy.ndarray
        CT numbers (HU), shape (nk, nj, ni).
    ct_from_grid : numpy.ndarray
        4x4 affine from grid index (i, j, k, 1) to continuous CT index (i, j, k, 1).
    shape : tuple of int
        Grid shape (nk, nj, ni).
    lut : numpy.ndarray
        RSP at integer HU starting at :data:`LUT_HU_MIN`.

    Returns
    -------
    rsp : numpy.ndarray
        float32, shape ``shape``; :data:`OUTSIDE_RSP` outside the CT.
    n_outside : int
        Number of nodes outside the CT.
    n_nan : int
        Number of nodes where the interpolated CT value is NaN.
    """
    values, n_outside, n_nan = sample_luts(ct, ct_from_grid, shape,
                                           np.ascontiguousarray(lut).reshape(1, lut.size))
    return values[0], n_outside, n_nan


@numba.njit(cache=True, nogil=True)
def sample_luts(ct: np.ndarray, ct_from_grid: np.ndarray, shape: tuple[int, int, int],
                luts: np.ndarray) -> tuple[np.ndarray, int, int]:
    """:func:`sample_rsp` with several lookup tables at once (one trilinear HU per node).

    ``luts`` (L, N): tables indexed from :data:`LUT_HU_MIN` (e.g. stopping and scattering
    power). Returns values (L, nk, nj, ni) float32 (:data:`OUTSIDE_RSP` outside the CT),
    the number of nodes outside the CT and of NaN values.
    """
    nk, nj, ni = shape
    n_lut, size = luts.shape
    out = np.empty((n_lut, nk, nj, ni), dtype=np.float32)
    counts = np.zeros(3, dtype=np.int64)
    m = ct_from_grid
    for k in range(nk):
        for j in range(nj):
            bx = m[0, 1] * j + m[0, 2] * k + m[0, 3]
            by = m[1, 1] * j + m[1, 2] * k + m[1, 3]
            bz = m[2, 1] * j + m[2, 2] * k + m[2, 3]
            for i in range(ni):
                hu, flag = _hu_at(ct, bx + m[0, 0] * i, by + m[1, 0] * i, bz + m[2, 0] * i)
                counts[flag] += 1
                if flag != 0:
                    for t in range(n_lut):
                        out[t, k, j, i] = OUTSIDE_RSP
                    continue
                v = min(max(hu - LUT_HU_MIN, 0.0), size - 1.0)
                c = min(int(v), size - 2)
                f = v - c
                for t in range(n_lut):
                    out[t, k, j, i] = luts[t, c] * (1 - f) + luts[t, c + 1] * f
    return out, counts[1], counts[2]


def sample_luts_numpy(ct: np.ndarray, ct_from_grid: np.ndarray, shape: tuple[int, int, int],
                      luts: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Numpy/scipy twin of :func:`sample_luts`."""
    rows = [sample_rsp_numpy(ct, ct_from_grid, shape, lut) for lut in luts]
    return np.stack([r[0] for r in rows]), rows[0][1], rows[0][2]


@numba.njit(cache=True, nogil=True)
def sample_rsp_points(ct: np.ndarray, ct_from_grid: np.ndarray, points: np.ndarray,
                      lut: np.ndarray) -> tuple[np.ndarray, int, int]:
    """:func:`sample_rsp` at a list of (N, 3) continuous grid indices (i, j, k).

    Returns rsp (N,) float32, the number of points outside the CT and of NaN values.
    """
    n = points.shape[0]
    out = np.empty(n, dtype=np.float32)
    counts = np.zeros(3, dtype=np.int64)
    m = ct_from_grid
    for q in range(n):
        x = points[q, 0]
        y = points[q, 1]
        z = points[q, 2]
        value, flag = _rsp_at(ct, m[0, 0] * x + m[0, 1] * y + m[0, 2] * z + m[0, 3],
                              m[1, 0] * x + m[1, 1] * y + m[1, 2] * z + m[1, 3],
                              m[2, 0] * x + m[2, 1] * y + m[2, 2] * z + m[2, 3], lut)
        out[q] = value
        counts[flag] += 1
    return out, counts[1], counts[2]


@numba.njit(cache=True, nogil=True)
def sample_luts_points(ct: np.ndarray, ct_from_grid: np.ndarray, points: np.ndarray,
                       luts: np.ndarray) -> tuple[np.ndarray, int, int]:
    """:func:`sample_rsp_points` with several lookup tables at once (one trilinear HU each).

    ``luts`` (L, N): tables indexed from :data:`LUT_HU_MIN` (e.g. stopping, scattering,
    backscatter). Returns values (L, n) float32 (:data:`OUTSIDE_RSP` outside the CT), the
    number of points outside the CT and of NaN values.
    """
    n = points.shape[0]
    n_lut, size = luts.shape
    out = np.empty((n_lut, n), dtype=np.float32)
    counts = np.zeros(3, dtype=np.int64)
    m = ct_from_grid
    for q in range(n):
        x = points[q, 0]
        y = points[q, 1]
        z = points[q, 2]
        hu, flag = _hu_at(ct, m[0, 0] * x + m[0, 1] * y + m[0, 2] * z + m[0, 3],
                          m[1, 0] * x + m[1, 1] * y + m[1, 2] * z + m[1, 3],
                          m[2, 0] * x + m[2, 1] * y + m[2, 2] * z + m[2, 3])
        counts[flag] += 1
        if flag != 0:
            for t in range(n_lut):
                out[t, q] = OUTSIDE_RSP
            continue
        v = hu - LUT_HU_MIN
        if v <= 0.0:
            for t in range(n_lut):
                out[t, q] = luts[t, 0]
        elif v >= size - 1:
            for t in range(n_lut):
                out[t, q] = luts[t, size - 1]
        else:
            c = int(v)
            f = v - c
            for t in range(n_lut):
                out[t, q] = luts[t, c] * (1 - f) + luts[t, c + 1] * f
    return out, counts[1], counts[2]


def sample_luts_points_numpy(ct: np.ndarray, ct_from_grid: np.ndarray, points: np.ndarray,
                             luts: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Numpy/scipy twin of :func:`sample_luts_points`."""
    rows = [sample_rsp_points_numpy(ct, ct_from_grid, points, lut) for lut in luts]
    return np.stack([r[0] for r in rows]), rows[0][1], rows[0][2]


def sample_rsp_points_numpy(ct: np.ndarray, ct_from_grid: np.ndarray, points: np.ndarray,
                            lut: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Numpy/scipy twin of :func:`sample_rsp_points`."""
    f = points @ ct_from_grid[:3, :3].T + ct_from_grid[:3, 3]
    upper = np.array(ct.shape[::-1], dtype=np.float64) - 1.0
    outside = np.any((f < 0.0) | (f > upper), axis=1)
    hu = ndimage.map_coordinates(np.asarray(ct, dtype=np.float64), f[:, ::-1].T, order=1,
                                 mode="nearest")
    nan = ~np.isfinite(hu) & ~outside
    x = np.clip(np.nan_to_num(hu) - LUT_HU_MIN, 0.0, lut.size - 1)
    rsp = np.interp(x, np.arange(lut.size, dtype=np.float64), lut)
    rsp[outside | nan] = OUTSIDE_RSP
    return (rsp.astype(np.float32), int(np.count_nonzero(outside)),
            int(np.count_nonzero(nan)))


def sample_rsp_numpy(ct: np.ndarray, ct_from_grid: np.ndarray, shape: tuple[int, int, int],
                     lut: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Numpy/scipy twin of :func:`sample_rsp` (same inputs, same outputs)."""
    nk, nj, ni = shape
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    idx = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)]).astype(np.float64)
    f = ct_from_grid @ idx
    upper = np.array(ct.shape[::-1], dtype=np.float64)[:, None] - 1.0
    outside = np.any((f[:3] < 0.0) | (f[:3] > upper), axis=0)
    hu = ndimage.map_coordinates(np.asarray(ct, dtype=np.float64), f[2::-1], order=1,
                                 mode="nearest")
    nan = ~np.isfinite(hu) & ~outside
    x = np.clip(np.nan_to_num(hu) - LUT_HU_MIN, 0.0, lut.size - 1)
    rsp = np.interp(x, np.arange(lut.size, dtype=np.float64), lut)
    rsp[outside | nan] = OUTSIDE_RSP
    return (rsp.reshape(shape).astype(np.float32), int(np.count_nonzero(outside)),
            int(np.count_nonzero(nan)))


@numba.njit(cache=True, nogil=True, fastmath=True, inline="always")
def _beamlet_profile(prof: np.ndarray, sigma: float, spacing: float, w_max: int) -> int:
    """Fill ``prof[0:2w+1]`` with the erf profile of a square beamlet; return the half width w.

    ``prof[o + w] = (erf((o h + h/2) / (sqrt 2 sigma)) - erf((o h - h/2) / (sqrt 2 sigma))) / 2``
    for offsets o = -w..w, ``w = min(WINDOW_SIGMAS sigma / h + 1, w_max)``.
    """
    w = min(int(WINDOW_SIGMAS * sigma / spacing + 1.0), w_max)
    c = 1.0 / (math.sqrt(2.0) * sigma)
    half = 0.5 * spacing
    lo = math.erf((-w * spacing - half) * c)
    for o in range(-w, w + 1):
        hi = math.erf((o * spacing + half) * c)
        prof[o + w] = 0.5 * (hi - lo)
        lo = hi
    return w


@numba.njit(cache=True, nogil=True, fastmath=True)
def spread_pencils(amp: np.ndarray, sigma: np.ndarray, pi: np.ndarray, pj: np.ndarray,
                   spacing: float, ny: int, nx: int) -> np.ndarray:
    """Dose of square pencil beams spread laterally, plane by plane.

    Parameters
    ----------
    amp : numpy.ndarray
        Shape (nk, P): central dose of pencil p in plane k (0 = no contribution).
    sigma : numpy.ndarray
        Shape (nk, P): lateral spread (mm, one axis) of pencil p in plane k.
    pi, pj : numpy.ndarray
        Shape (P,): column and row index of each pencil's centre on the grid.
    spacing : float
        Grid spacing = pencil width (mm).
    ny, nx : int
        Rows and columns of the output planes.

    Returns
    -------
    numpy.ndarray
        Shape (nk, ny, nx): ``sum_p amp * gx * gy`` where ``g(u) = (erf((u + h/2) / (sqrt 2
        sigma)) - erf((u - h/2) / (sqrt 2 sigma))) / 2`` is the profile of a square
        beamlet of width h.
    """
    nk, npen = amp.shape
    dose = np.zeros((nk, ny, nx))
    prof = np.empty(2 * nx + 2 * ny + 3)
    for k in range(nk):
        for p in range(npen):
            a = amp[k, p]
            if a <= 0.0:
                continue
            w = _beamlet_profile(prof, sigma[k, p], spacing, nx + ny)
            ci = pi[p]
            cj = pj[p]
            j0 = max(cj - w, 0)
            j1 = min(cj + w + 1, ny)
            i0 = max(ci - w, 0)
            i1 = min(ci + w + 1, nx)
            for j in range(j0, j1):
                ay = a * prof[j - cj + w]
                row = dose[k, j]
                for i in range(i0, i1):
                    row[i] += ay * prof[i - ci + w]
    return dose


@numba.njit(cache=True, nogil=True, fastmath=True)
def spread_pencils_binned(amp: np.ndarray, sigma: np.ndarray, pi: np.ndarray, pj: np.ndarray,
                          spacing: float, ny: int, nx: int, rel_step: float) -> np.ndarray:
    """Fast :func:`spread_pencils`: pencils of similar sigma share one separable convolution.

    In each plane the pencils' sigmas are rounded to a geometric ladder
    ``(1 + rel_step)^n`` (relative error <= rel_step / 2); the pencils of one rung are
    scattered into a plane and convolved with the erf profile along x, then along y (each
    row over the columns its pencils reach).
    Same inputs and output as :func:`spread_pencils`, plus ``rel_step`` (e.g. 0.02).
    """
    nk, npen = amp.shape
    dose = np.zeros((nk, ny, nx))
    tmp = np.zeros((ny, nx))
    row_lo = np.full(ny, nx, dtype=np.int64)
    row_hi = np.zeros(ny, dtype=np.int64)
    log_step = math.log1p(rel_step)
    prof = np.empty(2 * nx + 2 * ny + 3)
    rung = np.empty(npen, dtype=np.int64)
    order = np.empty(npen, dtype=np.int64)
    for k in range(nk):
        first, r_min = _rungs_in_order(amp[k], sigma[k], log_step, rung, order)
        plane = dose[k]
        for c in range(first.size - 1):
            if first[c + 1] == first[c]:
                continue
            w = _beamlet_profile(prof, math.exp((c + r_min) * log_step), spacing, nx + ny)
            for q in range(first[c], first[c + 1]):
                p = order[q]
                a = amp[k, p]
                ci = pi[p]
                cj = pj[p]
                i0 = max(ci - w, 0)
                i1 = min(ci + w + 1, nx)
                row_lo[cj] = min(row_lo[cj], i0)
                row_hi[cj] = max(row_hi[cj], i1)
                row = tmp[cj]
                for i in range(i0, i1):
                    row[i] += a * prof[i - ci + w]
            for jr in range(ny):
                lo = row_lo[jr]
                hi = row_hi[jr]
                if hi <= lo:
                    continue
                row_lo[jr] = nx
                row_hi[jr] = 0
                # one-dimensional row views: the inner loop vectorises (1.7x faster than
                # indexing the 3-D arrays in it; the same sums)
                src = tmp[jr, lo:hi]
                for j in range(max(jr - w, 0), min(jr + w + 1, ny)):
                    f = prof[j - jr + w]
                    dst = plane[j, lo:hi]
                    for i in range(hi - lo):
                        dst[i] += f * src[i]
                src[:] = 0.0
    return dose


@numba.njit(cache=True, nogil=True, fastmath=True)
def _rungs_in_order(amp: np.ndarray, sigma: np.ndarray, log_step: float, rung: np.ndarray,
                    order: np.ndarray) -> tuple[np.ndarray, int]:
    """The live pencils (``amp > 0``) of one plane of :func:`spread_pencils_binned` by rung
    of the sigma ladder (a counting sort): ``order[first[c]:first[c + 1]]`` are the pencils
    of rung ``c + r_min``; returns ``(first, r_min)`` (no live pencil: one empty rung)."""
    npen = amp.size
    r_min = 1 << 40
    r_max = -(1 << 40)
    for p in range(npen):
        if amp[p] > 0.0:
            r = int(round(math.log(sigma[p]) / log_step))  # noqa: RUF046
            rung[p] = r
            r_min = min(r_min, r)
            r_max = max(r_max, r)
    if r_max < r_min:
        return np.zeros(2, dtype=np.int64), 0
    first = np.zeros(r_max - r_min + 2, dtype=np.int64)
    for p in range(npen):
        if amp[p] > 0.0:
            first[rung[p] - r_min + 1] += 1
    for c in range(1, first.size):
        first[c] += first[c - 1]
    fill = first[:-1].copy()
    for p in range(npen):
        if amp[p] > 0.0:
            c = rung[p] - r_min
            order[fill[c]] = p
            fill[c] += 1
    return first, r_min


def spread_pencils_binned_numpy(amp: np.ndarray, sigma: np.ndarray, pi: np.ndarray,
                                pj: np.ndarray, spacing: float, ny: int, nx: int,
                                rel_step: float) -> np.ndarray:
    """Numpy/scipy twin of :func:`spread_pencils_binned` (same sigma ladder)."""
    nk, _ = amp.shape
    dose = np.zeros((nk, ny, nx))
    half = 0.5 * spacing
    log_step = np.log1p(rel_step)
    for k in range(nk):
        live = amp[k] > 0.0
        if not np.any(live):
            continue
        rungs = np.rint(np.log(sigma[k, live]) / log_step).astype(np.int64)
        a = amp[k, live]
        ci = pi[live]
        cj = pj[live]
        for r in np.unique(rungs):
            sel = rungs == r
            s = np.exp(r * log_step)
            w = min(int(WINDOW_SIGMAS * s / spacing + 1.0), nx + ny)
            u = np.arange(-w, w + 1) * spacing
            c = 1.0 / (np.sqrt(2.0) * s)
            prof = 0.5 * (erf((u + half) * c) - erf((u - half) * c))
            plane = np.zeros((ny, nx))
            np.add.at(plane, (cj[sel], ci[sel]), a[sel])
            plane = ndimage.correlate1d(plane, prof, axis=1, mode="constant")
            dose[k] += ndimage.correlate1d(plane, prof, axis=0, mode="constant")
    return dose


def spread_pencils_numpy(amp: np.ndarray, sigma: np.ndarray, pi: np.ndarray, pj: np.ndarray,
                         spacing: float, ny: int, nx: int) -> np.ndarray:
    """Numpy twin of :func:`spread_pencils`: vectorised over pencils, one plane at a time."""
    nk, _ = amp.shape
    dose = np.zeros((nk, ny, nx))
    half = 0.5 * spacing
    for k in range(nk):
        live = amp[k] > 0.0
        if not np.any(live):
            continue
        a = amp[k, live]
        s = sigma[k, live]
        ci = pi[live]
        cj = pj[live]
        wins = np.minimum((WINDOW_SIGMAS * s / spacing + 1.0).astype(np.int64), nx + ny)
        w = int(wins.max())
        offs = np.arange(-w, w + 1)
        u = offs[None, :] * spacing
        c = 1.0 / (np.sqrt(2.0) * s[:, None])
        prof = 0.5 * (erf((u + half) * c) - erf((u - half) * c))
        prof[np.abs(offs)[None, :] > wins[:, None]] = 0.0
        padded = np.zeros((ny + 2 * w, nx + 2 * w))
        contrib = a[:, None, None] * prof[:, :, None] * prof[:, None, :]
        rows = (cj[:, None] + offs[None, :] + w)[:, :, None]
        cols = (ci[:, None] + offs[None, :] + w)[:, None, :]
        np.add.at(padded, (np.broadcast_to(rows, contrib.shape),
                           np.broadcast_to(cols, contrib.shape)), contrib)
        dose[k] = padded[w:w + ny, w:w + nx]
    return dose


@numba.njit(cache=True, nogil=True, fastmath=True)
def kv_wepl(rsp: np.ndarray, centre_ijk: np.ndarray, spacing: float, radius_mm: float,
            step_mm: float, reach_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Geometric depth and water-equivalent depth from a sphere surface along radial rays.

    Parameters
    ----------
    rsp : numpy.ndarray
        Relative stopping power on an isotropic grid (spacing mm), shape (nk, nj, ni).
    centre_ijk : numpy.ndarray
        Sphere centre as continuous grid index (i, j, k), shape (3,).
    spacing : float
        Grid spacing (mm).
    radius_mm : float
        Sphere (applicator) radius (mm).
    step_mm : float
        Ray-marching step (mm).
    reach_mm : float
        Rays are marched only to voxels at most this far from the surface (wepl 0 beyond).

    Returns
    -------
    depth_mm, wepl_mm : numpy.ndarray
        Shape (nk, nj, ni): distance from the sphere surface (negative inside) and the
        water-equivalent path from the surface (0 inside), trilinear RSP along the ray.
    """
    nk, nj, ni = rsp.shape
    depth = np.empty((nk, nj, ni))
    wepl = np.zeros((nk, nj, ni))
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                dx = (i - centre_ijk[0]) * spacing
                dy = (j - centre_ijk[1]) * spacing
                dz = (k - centre_ijk[2]) * spacing
                r = math.sqrt(dx * dx + dy * dy + dz * dz)
                d = r - radius_mm
                depth[k, j, i] = d
                if d <= 0.0 or d > reach_mm:
                    continue
                n = int(math.ceil(d / step_mm))  # noqa: RUF046 (numba typing)
                h = d / n
                total = 0.0
                for s in range(n):
                    t = (radius_mm + (s + 0.5) * h) / r
                    fi = centre_ijk[0] + dx * t / spacing
                    fj = centre_ijk[1] + dy * t / spacing
                    fk = centre_ijk[2] + dz * t / spacing
                    total += h * _trilinear(rsp, fi, fj, fk)
                wepl[k, j, i] = total
    return depth, wepl


@numba.njit(cache=True, nogil=True, inline="always")
def _trilinear(vol: np.ndarray, fi: float, fj: float, fk: float) -> float:
    nk, nj, ni = vol.shape
    fi = min(max(fi, 0.0), ni - 1.0)
    fj = min(max(fj, 0.0), nj - 1.0)
    fk = min(max(fk, 0.0), nk - 1.0)
    i0 = min(int(fi), ni - 2)
    j0 = min(int(fj), nj - 2)
    k0 = min(int(fk), nk - 2)
    ti = fi - i0
    tj = fj - j0
    tk = fk - k0
    c00 = vol[k0, j0, i0] * (1 - ti) + vol[k0, j0, i0 + 1] * ti
    c01 = vol[k0, j0 + 1, i0] * (1 - ti) + vol[k0, j0 + 1, i0 + 1] * ti
    c10 = vol[k0 + 1, j0, i0] * (1 - ti) + vol[k0 + 1, j0, i0 + 1] * ti
    c11 = vol[k0 + 1, j0 + 1, i0] * (1 - ti) + vol[k0 + 1, j0 + 1, i0 + 1] * ti
    return (c00 * (1 - tj) + c01 * tj) * (1 - tk) + (c10 * (1 - tj) + c11 * tj) * tk


def kv_wepl_numpy(rsp: np.ndarray, centre_ijk: np.ndarray, spacing: float, radius_mm: float,
                  step_mm: float, reach_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Numpy twin of :func:`kv_wepl`: all rays marched together with a fixed step count."""
    nk, nj, ni = rsp.shape
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    dx = (i - centre_ijk[0]) * spacing
    dy = (j - centre_ijk[1]) * spacing
    dz = (k - centre_ijk[2]) * spacing
    r = np.sqrt(dx * dx + dy * dy + dz * dz)
    depth = r - radius_mm
    n = np.ceil(np.maximum(depth, 0.0) / step_mm).astype(np.int64)
    n[depth > reach_mm] = 0
    n_max = int(n.max()) if n.size else 0
    h = np.where(n > 0, np.maximum(depth, 0.0) / np.maximum(n, 1), 0.0)
    wepl = np.zeros(rsp.shape)
    vol = np.asarray(rsp, dtype=np.float64)
    safe_r = np.where(r > 0, r, 1.0)
    for s in range(n_max):
        active = s < n
        t = (radius_mm + (s + 0.5) * h) / safe_r
        coords = np.stack([centre_ijk[2] + dz * t / spacing, centre_ijk[1] + dy * t / spacing,
                           centre_ijk[0] + dx * t / spacing])
        vals = ndimage.map_coordinates(vol, coords.reshape(3, -1), order=1,
                                       mode="nearest").reshape(rsp.shape)
        wepl += np.where(active, h * vals, 0.0)
    return depth, wepl


#: Half width (cells) of the lateral stencil of one redefinition step.
REDEFINE_CELLS = 2

#: Standard normal CDF and density tabulated for :func:`_normal_cdf_pdf` (the redefinition
#: evaluates twelve of each per column and plane; libm's erf and exp were 80 % of its time):
#: nodes every 1/64 on [-8.5, 8.5], cubic Hermite between them (each table holds the other's
#: derivative), absolute error below 1e-10; beyond 8.5 the CDF is 0 or 1 and the density 0
#: to double precision (< 1e-16).
_NORMAL_LIMIT = 8.5
_NORMAL_STEP = 1.0 / 64.0
_NORMAL_T = np.linspace(-_NORMAL_LIMIT, _NORMAL_LIMIT,
                        round(2 * _NORMAL_LIMIT / _NORMAL_STEP) + 1)
_NORMAL_CDF = 0.5 * (1.0 + erf(_NORMAL_T / math.sqrt(2.0)))
_NORMAL_PDF = np.exp(-0.5 * _NORMAL_T ** 2) / math.sqrt(2.0 * math.pi)


@numba.njit(cache=True, nogil=True, fastmath=True, inline="always")
def _normal_cdf_pdf(t: float) -> tuple[float, float]:
    """(Phi(t), phi(t)) of the standard normal from the tables (|error| < 1e-10)."""
    if t <= -_NORMAL_LIMIT:
        return 0.0, 0.0
    if t >= _NORMAL_LIMIT:
        return 1.0, 0.0
    x = (t + _NORMAL_LIMIT) * (1.0 / _NORMAL_STEP)
    i = min(int(x), _NORMAL_T.size - 2)
    f = x - i
    f2 = f * f
    f3 = f2 * f
    h00 = 2.0 * f3 - 3.0 * f2 + 1.0
    h10 = f3 - 2.0 * f2 + f
    h01 = 1.0 - h00
    h11 = f3 - f2
    q0 = _NORMAL_PDF[i]
    q1 = _NORMAL_PDF[i + 1]
    cdf = (h00 * _NORMAL_CDF[i] + h01 * _NORMAL_CDF[i + 1]
           + _NORMAL_STEP * (h10 * q0 + h11 * q1))
    pdf = h00 * q0 + h01 * q1 - _NORMAL_STEP * (h10 * _NORMAL_T[i] * q0
                                                + h11 * _NORMAL_T[i + 1] * q1)
    return cdf, pdf


@numba.njit(cache=True, nogil=True, fastmath=True, inline="always")
def _cell_moments(m: float, s: float, spacing: float, w: np.ndarray, d1: np.ndarray,
                  d2: np.ndarray) -> None:
    """Share, mean and mean square offset from the landing centre of a Gaussian
    N(m, s^2) in the cells o h +- h/2, o = -REDEFINE_CELLS..REDEFINE_CELLS (normalised)."""
    n = 2 * REDEFINE_CELLS + 1
    inv = 1.0 / s
    a = ((-REDEFINE_CELLS - 0.5) * spacing - m) * inv
    ea, pa = _normal_cdf_pdf(a)
    total = 0.0
    for q in range(n):
        b = a + spacing * inv
        eb, pb = _normal_cdf_pdf(b)
        z = eb - ea
        w[q] = z
        if z > 1e-9:     # a cell's moments from the tables' differences: not below that
            d1[q] = s * (pa - pb) / z
            d2[q] = s * s * (1.0 + (a * pa - b * pb) / z)
        else:
            c = (q - REDEFINE_CELLS) * spacing - m
            d1[q] = c
            d2[q] = c * c
        total += z
        a = b
        ea = eb
        pa = pb
    for q in range(n):
        w[q] /= total


@numba.njit(cache=True, nogil=True, fastmath=True)
def redefine_fluence(d_var: np.ndarray, spacing: float, var0: float,
                     var_max: float, live_steps: np.ndarray) -> np.ndarray:
    """Relative fluence of a broad beam redistributed by laterally varying scattering.

    Pencil-beam redefinition (Shiu & Hogstrom 1991, doi:10.1118/1.596698) of a laterally
    unbounded uniform field on the grid's columns: in every plane each column holds a
    fluence ``F``, a mean direction (ux, uy) and an angular variance ``A`` (per axis);
    over one step ``dz = spacing`` the column's electrons gain ``dA`` (its medium's
    scattering, ``d_var``), land around ``u dz`` with the Fermi-Eyges spread
    ``s^2 = A dz^2 + dA dz^2 / 3`` and are redefined as new columns: fluence, mean
    direction (the conditional mean angle of the electrons landing in each cell, with the
    position-angle covariance ``A dz + dA dz / 2``) and angular variance. Columns at the
    grid border see copies of themselves outside (the field continues), so a laterally
    uniform medium keeps ``F = 1`` exactly. A column is transported over its first
    ``live_steps`` steps only (its electrons have ranged out beyond: there is no dose to
    redistribute); then its fluence is held and its living neighbours see copies of
    themselves in its place, as at the border.

    Parameters
    ----------
    d_var : numpy.ndarray
        (nz - 1, ny, nx) angular variance (rad^2, per axis) gathered in each column over
        each step.
    spacing : float
        Lateral cell size = step (mm).
    var0 : float
        Angular variance at the first plane.
    var_max : float
        Diffusion limit of the angular variance: a step adds ``dA (1 - A / var_max)``, so
        ``A = var_max (1 - exp(-sum dA / var_max))`` saturates as the electrons lose their
        direction (``1 - <cos>`` of :func:`models.dose.electron.mean_cosine`).
    live_steps : numpy.ndarray
        (ny, nx) int: number of steps each column is transported (``nz - 1``: all).

    Returns
    -------
    numpy.ndarray
        (nz, ny, nx) fluence relative to the uniform field (1 in the first plane).
    """
    n_seg, ny, nx = d_var.shape
    r = REDEFINE_CELLS
    nc = 2 * r + 1
    out = np.empty((n_seg + 1, ny, nx))
    fl = np.ones((ny, nx))
    ux = np.zeros((ny, nx))
    uy = np.zeros((ny, nx))
    var = np.full((ny, nx), var0)
    # per column padded by r (the border's copies), per axis and landing cell: the share
    # of the column's fluence landing there and that share times its electrons' mean and
    # mean square angle (x carries the fluence, y the shares alone)
    xm = np.zeros((ny + 2 * r, nx + 2 * r, 3, nc))
    ym = np.zeros((ny + 2 * r, nx + 2 * r, 3, nc))
    live = np.zeros((ny + 2 * r, nx + 2 * r), dtype=np.bool_)
    sums = np.zeros((5, ny, nx))
    out[0] = fl
    for k in range(n_seg):
        _landing_moments(d_var, k, fl, ux, uy, var, spacing, var_max, live_steps, xm, ym,
                         live)
        _gather_landed(xm, ym, live, sums)
        _redefined_columns(xm, ym, live, sums, fl, ux, uy, var)
        out[k + 1] = fl
    return out


@numba.njit(cache=True, nogil=True, fastmath=True)
def _landing_moments(d_var: np.ndarray, k: int, fl: np.ndarray, ux: np.ndarray,
                     uy: np.ndarray, var: np.ndarray, spacing: float, var_max: float,
                     live_steps: np.ndarray, xm: np.ndarray, ym: np.ndarray,
                     live: np.ndarray) -> None:
    """Step ``k`` of :func:`redefine_fluence`: for every live column, the share of its
    electrons landing in each neighbouring cell per axis and their mean and mean square
    angle, as the padded ``xm``, ``ym`` (ny + 2r, nx + 2r, 3, nc) and ``live`` of
    :func:`redefine_fluence`, filled in place; the padding holds copies of the nearest
    column (the field continues beyond the grid)."""
    ny, nx = var.shape
    r = REDEFINE_CELLS
    nc = 2 * r + 1
    dz = spacing
    w = np.empty(nc)
    d1 = np.empty(nc)
    d2 = np.empty(nc)
    for j in range(ny):
        for i in range(nx):
            alive = live_steps[j, i] > k
            live[j + r, i + r] = alive
            if not alive:
                continue
            a = var[j, i]
            da = d_var[k, j, i] * max(1.0 - a / var_max, 0.0)
            s = math.sqrt(max(a * dz * dz + da * dz * dz / 3.0, 1e-12 * dz * dz))
            cov = a * dz + 0.5 * da * dz
            kappa = cov / (s * s)
            cond = max(a + da - cov * kappa, 0.0)
            f0 = fl[j, i]
            u = ux[j, i]
            _cell_moments(u * dz, s, spacing, w, d1, d2)
            for q in range(nc):
                f = f0 * w[q]
                xm[j + r, i + r, 0, q] = f
                xm[j + r, i + r, 1, q] = f * (u + kappa * d1[q])
                xm[j + r, i + r, 2, q] = f * (cond + u * u + 2.0 * u * kappa * d1[q]
                                              + kappa * kappa * d2[q])
            u = uy[j, i]
            _cell_moments(u * dz, s, spacing, w, d1, d2)
            for q in range(nc):
                ym[j + r, i + r, 0, q] = w[q]
                ym[j + r, i + r, 1, q] = w[q] * (u + kappa * d1[q])
                ym[j + r, i + r, 2, q] = w[q] * (cond + u * u + 2.0 * u * kappa * d1[q]
                                                 + kappa * kappa * d2[q])
    _pad_with_nearest(xm, ym, live)


@numba.njit(cache=True, nogil=True)
def _pad_with_nearest(xm: np.ndarray, ym: np.ndarray, live: np.ndarray) -> None:
    """The padding of :func:`_landing_moments`: copies of the nearest column inside."""
    r = REDEFINE_CELLS
    py, px = live.shape
    for pj in range(py):
        cj = min(max(pj, r), py - r - 1)
        for pi in range(px):
            ci = min(max(pi, r), px - r - 1)
            if cj != pj or ci != pi:
                live[pj, pi] = live[cj, ci]
                if live[cj, ci]:
                    xm[pj, pi] = xm[cj, ci]
                    ym[pj, pi] = ym[cj, ci]


@numba.njit(cache=True, nogil=True, fastmath=True)
def _gather_landed(xm: np.ndarray, ym: np.ndarray, live: np.ndarray, sums: np.ndarray) -> None:
    """What the live columns of :func:`_landing_moments` land in each column: fluence,
    fluence times mean angle (x, y) and times mean square angle (x, y), as ``sums``
    (5, ny, nx), overwritten. A column pushes to its 5 x 5 neighbours: one row of five
    targets per landing row."""
    r = REDEFINE_CELLS
    nc = 2 * r + 1
    _, ny, nx = sums.shape
    sums[:] = 0.0
    for pj in range(ny + 2 * r):
        for qj in range(max(2 * r - pj, 0), min(ny + 2 * r - pj, nc)):
            tj = pj - 2 * r + qj
            f_row = sums[0, tj]
            sx_row = sums[1, tj]
            sy_row = sums[2, tj]
            s2x_row = sums[3, tj]
            s2y_row = sums[4, tj]
            for pi in range(nx + 2 * r):
                if not live[pj, pi]:
                    continue
                y0 = ym[pj, pi, 0, qj]
                y1 = ym[pj, pi, 1, qj]
                y2 = ym[pj, pi, 2, qj]
                for qi in range(max(2 * r - pi, 0), min(nx + 2 * r - pi, nc)):
                    ti = pi - 2 * r + qi
                    x0 = xm[pj, pi, 0, qi]
                    f_row[ti] += x0 * y0
                    sx_row[ti] += xm[pj, pi, 1, qi] * y0
                    sy_row[ti] += x0 * y1
                    s2x_row[ti] += xm[pj, pi, 2, qi] * y0
                    s2y_row[ti] += x0 * y2


@numba.njit(cache=True, nogil=True, fastmath=True)
def _redefined_columns(xm: np.ndarray, ym: np.ndarray, live: np.ndarray, sums: np.ndarray,
                       fl: np.ndarray, ux: np.ndarray, uy: np.ndarray,
                       var: np.ndarray) -> None:
    """The next plane of :func:`redefine_fluence`, in place: each live column takes what
    landed in it (``sums`` of :func:`_gather_landed`), plus, in place of each neighbour no
    longer live, what a copy of itself would land there; its fluence, mean direction and
    angular variance follow. Columns no longer live hold their fluence."""
    r = REDEFINE_CELLS
    nc = 2 * r + 1
    ny, nx = fl.shape
    for j in range(ny):
        for i in range(nx):
            if not live[j + r, i + r]:
                continue
            f_sum = sums[0, j, i]
            sx = sums[1, j, i]
            sy = sums[2, j, i]
            s2x = sums[3, j, i]
            s2y = sums[4, j, i]
            for qj in range(nc):
                for qi in range(nc):
                    if live[j + 2 * r - qj, i + 2 * r - qi]:
                        continue
                    x0 = xm[j + r, i + r, 0, qi]
                    y0 = ym[j + r, i + r, 0, qj]
                    f_sum += x0 * y0
                    sx += xm[j + r, i + r, 1, qi] * y0
                    sy += x0 * ym[j + r, i + r, 1, qj]
                    s2x += xm[j + r, i + r, 2, qi] * y0
                    s2y += x0 * ym[j + r, i + r, 2, qj]
            fl[j, i] = f_sum
            if f_sum > 0.0:
                mux = sx / f_sum
                muy = sy / f_sum
                ux[j, i] = mux
                uy[j, i] = muy
                var[j, i] = max(0.5 * (s2x / f_sum - mux * mux + s2y / f_sum - muy * muy),
                                0.0)


def redefine_fluence_numpy(d_var: np.ndarray, spacing: float, var0: float,
                           var_max: float, live_steps: np.ndarray) -> np.ndarray:
    """Numpy twin of :func:`redefine_fluence` (same steps, vectorised over columns)."""
    n_seg, ny, nx = d_var.shape
    r = REDEFINE_CELLS
    offs = np.arange(-r, r + 1, dtype=np.float64)
    out = np.empty((n_seg + 1, ny, nx))
    fl = np.ones((ny, nx))
    ux = np.zeros((ny, nx))
    uy = np.zeros((ny, nx))
    var = np.full((ny, nx), float(var0))
    dz = spacing
    out[0] = fl
    rows = np.arange(ny)
    cols = np.arange(nx)
    own_j, own_i = np.meshgrid(rows, cols, indexing="ij")
    # each offset's source column of every column (clamped at the border)
    sources = [(qj, qi, *np.meshgrid(np.clip(rows - (qj - r), 0, ny - 1),
                                     np.clip(cols - (qi - r), 0, nx - 1), indexing="ij"))
               for qj in range(2 * r + 1) for qi in range(2 * r + 1)]
    for k in range(n_seg):
        live = live_steps > k
        da = d_var[k] * np.maximum(1.0 - var / var_max, 0.0)
        s = np.sqrt(np.maximum(var * dz * dz + da * dz * dz / 3.0, 1e-12 * dz * dz))
        cov = var * dz + 0.5 * da * dz
        kappa = cov / (s * s)
        cond = np.maximum(var + da - cov * kappa, 0.0)

        def moments(u, s=s, kappa=kappa, cond=cond):
            m = (u * dz)[..., None]
            sd = s[..., None]
            a = ((offs - 0.5) * spacing - m) / sd
            b = ((offs + 0.5) * spacing - m) / sd
            z = 0.5 * (erf(b / np.sqrt(2.0)) - erf(a / np.sqrt(2.0)))
            pa = np.exp(-0.5 * a * a) / np.sqrt(2.0 * np.pi)
            pb = np.exp(-0.5 * b * b) / np.sqrt(2.0 * np.pi)
            ok = z > 1e-12
            safe = np.where(ok, z, 1.0)
            c = offs * spacing - m
            d1 = np.where(ok, sd * (pa - pb) / safe, c)
            d2 = np.where(ok, sd * sd * (1.0 + (a * pa - b * pb) / safe), c * c)
            w = z / z.sum(axis=-1, keepdims=True)
            uu = u[..., None]
            kk = kappa[..., None]
            mean = uu + kk * d1
            sq = cond[..., None] + uu * uu + 2.0 * uu * kk * d1 + kk * kk * d2
            return w, mean, sq

        wx, mx, qx = moments(ux)
        wy, my, qy = moments(uy)
        f_sum = np.zeros((ny, nx))
        sx = np.zeros((ny, nx))
        sy = np.zeros((ny, nx))
        s2x = np.zeros((ny, nx))
        s2y = np.zeros((ny, nx))
        for qj, qi, src_j, src_i in sources:
            dead = ~live[src_j, src_i]            # a copy of the column itself instead
            sel = (np.where(dead, own_j, src_j), np.where(dead, own_i, src_i))
            f = fl[sel] * wx[sel][..., qi] * wy[sel][..., qj]
            f_sum += f
            sx += f * mx[sel][..., qi]
            sy += f * my[sel][..., qj]
            s2x += f * qx[sel][..., qi]
            s2y += f * qy[sel][..., qj]
        f_sum = np.where(live, f_sum, fl)
        pos = live & (f_sum > 0.0)
        safe = np.where(pos, f_sum, 1.0)
        mux = sx / safe
        muy = sy / safe
        ux = np.where(pos, mux, ux)
        uy = np.where(pos, muy, uy)
        var = np.where(pos, np.maximum(0.5 * (s2x / safe - mux * mux + s2y / safe
                                              - muy * muy), 0.0), var)
        fl = f_sum
        out[k + 1] = fl
    return out


@numba.njit(cache=True, nogil=True)
def _box_mean_nearest(plane: np.ndarray, size: int, out: np.ndarray, row: np.ndarray) -> None:
    """``scipy.ndimage.uniform_filter(plane, size, mode="nearest")`` of an odd ``size``
    into ``out`` (ny, nx), up to rounding: running sums along the first axis, then the
    second, the edges repeated; ``row`` is scratch (max(ny, nx),)."""
    ny, nx = plane.shape
    half = size // 2
    inv = 1.0 / size
    for i in range(nx):                      # along the first axis
        acc = 0.0
        for t in range(-half, half + 1):
            acc += plane[min(max(t, 0), ny - 1), i]
        for j in range(ny):
            row[j] = acc * inv
            acc += plane[min(j + half + 1, ny - 1), i] - plane[max(j - half, 0), i]
        for j in range(ny):
            out[j, i] = row[j]
    for j in range(ny):                      # then along the second
        acc = 0.0
        for t in range(-half, half + 1):
            acc += out[j, min(max(t, 0), nx - 1)]
        for i in range(nx):
            row[i] = acc * inv
            acc += out[j, min(i + half + 1, nx - 1)] - out[j, max(i - half, 0)]
        for i in range(nx):
            out[j, i] = row[i]


@numba.njit(cache=True, nogil=True)
def range_out_excess(fluence: np.ndarray, depth: np.ndarray, excess: np.ndarray,
                     box_cells: np.ndarray, step_mm: float, table: np.ndarray) -> np.ndarray:
    """Fluence with its excess over 1 in units of the local electrons' dose.

    ``1 + (F - 1) g(z_src) / g(z)`` where ``F > 1`` (``g`` the depth-dose ``table`` on a
    uniform grid of ``step_mm`` from 0, zero beyond; the ratio 1 where ``g(z) <= 1e-3``),
    ``z = depth`` and ``z_src`` the mean of ``depth`` weighted by ``excess`` over a box of
    ``box_cells[k]`` (odd) cells in plane ``k`` (edges repeated; ``depth`` itself where
    the weights are below 1e-9); a plane of ``box_cells`` 0 has no ``F > 1`` and is
    left as it is. See :func:`models.dose.electron._range_out_excess`.

    Parameters
    ----------
    fluence, depth, excess : numpy.ndarray
        (nz, ny, nx) redistributed fluence, water depth (mm) and the scattering beyond
        water's gathered above each node (the weights).
    box_cells : numpy.ndarray
        (nz,) int: box size of each plane with some ``F > 1``, 0 for the others.
    step_mm : float
        Depth step of ``table``.
    table : numpy.ndarray
        Broad-beam depth dose (relative) at ``0, step_mm, 2 step_mm, ...``.

    Returns
    -------
    numpy.ndarray
        (nz, ny, nx) the fluence with the excess re-weighted (a new array).
    """
    nz, ny, nx = fluence.shape
    out = fluence.copy()
    w = np.empty((ny, nx))
    wz = np.empty((ny, nx))
    prod = np.empty((ny, nx))
    row = np.empty(max(ny, nx))
    for k in range(nz):
        if box_cells[k] == 0:
            continue
        for j in range(ny):
            for i in range(nx):
                prod[j, i] = excess[k, j, i] * depth[k, j, i]
        _box_mean_nearest(excess[k], box_cells[k], w, row)
        _box_mean_nearest(prod, box_cells[k], wz, row)
        for j in range(ny):
            for i in range(nx):
                f = fluence[k, j, i]
                if not f > 1.0:
                    continue
                z = depth[k, j, i]
                src = wz[j, i] / w[j, i] if w[j, i] > 1e-9 else z
                g = lookup_uniform_at(z, step_mm, table, 0.0)
                if g > 1e-3:
                    out[k, j, i] = 1.0 + (f - 1.0) * lookup_uniform_at(src, step_mm, table,
                                                                       0.0) / g
    return out


def range_out_excess_numpy(fluence: np.ndarray, depth: np.ndarray, excess: np.ndarray,
                           box_cells: np.ndarray, step_mm: float,
                           table: np.ndarray) -> np.ndarray:
    """Numpy/scipy twin of :func:`range_out_excess`."""
    hot = fluence > 1.0
    source = depth.copy()
    for k in np.nonzero(box_cells)[0]:
        size = int(box_cells[k])
        w = ndimage.uniform_filter(excess[k], size, mode="nearest")
        wz = ndimage.uniform_filter(excess[k] * depth[k], size, mode="nearest")
        found = w > 1e-9
        source[k][found] = wz[found] / w[found]
    grid = step_mm * np.arange(table.size)
    g = lookup_uniform(depth[hot], grid, table)
    g_src = lookup_uniform(source[hot], grid, table)
    out = fluence.copy()
    out[hot] = 1.0 + (fluence[hot] - 1.0) * np.divide(g_src, g, out=np.ones_like(g),
                                                       where=g > 1e-3)
    return out


@numba.njit(cache=True, nogil=True, fastmath=True)
def narrow_tails(sigma: np.ndarray, g: np.ndarray, zeff: np.ndarray, seg_wet: np.ndarray,
                 seg_scatter: np.ndarray, seg_mid: np.ndarray, z: np.ndarray,
                 power_step_mm: float, power: np.ndarray, hold_depth_mm: float
                 ) -> np.ndarray:
    """Pencils' lateral sigma narrowed by the depth dose of their tails' longer paths.

    Along each pencil (column p) the angular variances ``t = T_w(zeff_mid) s`` of the
    segments are gathered twice, with the tissue's scattering thickness ``s`` =
    ``seg_scatter`` and with ``s`` = ``seg_wet`` (water along the same path); ``A`` and
    ``B = sum t u`` at the segment middles give the covariance ``c = z A - B`` of the
    direction there with the lateral position at plane z. Per plane,
    ``K = sum_m wet_m (c_tissue^2 - c_water^2) / (2 sigma^2)`` (mm, >= 0),
    ``kappa = min(K g' / g, 0)`` (``g'`` the central difference of ``g`` over ``zeff``
    along the pencil; 0 where ``g <= 1e-3`` or zeff does not advance), held from the last
    plane whose ``zeff <= hold_depth_mm``, and the result is ``sigma / sqrt(1 - 2 kappa)``.
    See :func:`models.dose.electron.tails_ranging_out`.

    Parameters
    ----------
    sigma, g, zeff : numpy.ndarray
        (nz, P) lateral sigma (mm), central dose and water depth (mm) at the planes.
    seg_wet, seg_scatter, seg_mid : numpy.ndarray
        (nz - 1, P) water-equivalent and scattering thickness (mm) and middle (mm) of the
        segments.
    z : numpy.ndarray
        (nz,) plane depths (mm).
    power_step_mm, power : float, numpy.ndarray
        Water's scattering power (rad^2/mm) on water depths ``0, step, 2 step, ...``
        (beyond the table: its last value).
    hold_depth_mm : float
        Water depth beyond which kappa is held.
    """
    nz, n_p = sigma.shape
    out = sigma.copy()
    n_tab = power.size
    sums = np.zeros((7, n_p))     # A, B of tissue and water; the three moments
    held = np.zeros(n_p)
    for k in range(1, nz):
        m = k - 1
        hi = min(k + 1, nz - 1)
        scale = 0.5 if hi - m == 2 else 1.0
        zk = z[k]
        for p in range(n_p):
            x = (zeff[m, p] + 0.5 * seg_wet[m, p]) / power_step_mm
            pos = max(x, 0.0)
            if pos > n_tab - 1:
                pw = power[n_tab - 1]
            else:
                idx = min(int(pos), n_tab - 2)
                frac = pos - idx
                pw = power[idx] * (1.0 - frac) + power[idx + 1] * frac
            wet = seg_wet[m, p]
            tt = pw * seg_scatter[m, p]
            tw = pw * wet
            u = seg_mid[m, p]
            a_t = sums[0, p] + 0.5 * tt
            b_t = sums[1, p] + 0.5 * tt * u
            a_w = sums[2, p] + 0.5 * tw
            b_w = sums[3, p] + 0.5 * tw * u
            sums[0, p] += tt
            sums[1, p] += tt * u
            sums[2, p] += tw
            sums[3, p] += tw * u
            sums[4, p] += wet * (a_t * a_t - a_w * a_w)
            sums[5, p] += wet * (a_t * b_t - a_w * b_w)
            sums[6, p] += wet * (b_t * b_t - b_w * b_w)
            if zeff[k, p] > hold_depth_mm:
                kappa = held[p]
            else:
                s2 = max(sigma[k, p] * sigma[k, p], 1e-12)
                excess = max(0.5 * (zk * zk * sums[4, p] - 2.0 * zk * sums[5, p]
                                    + sums[6, p]) / s2, 0.0)
                dz = scale * (zeff[hi, p] - zeff[m, p])
                gk = g[k, p]
                kappa = 0.0
                if dz > 1e-6 and gk > 1e-3:
                    kappa = min(excess * (scale * (g[hi, p] - g[m, p]) / dz) / gk, 0.0)
                held[p] = kappa
            out[k, p] = sigma[k, p] / math.sqrt(1.0 - 2.0 * kappa)
    return out


def narrow_tails_numpy(sigma: np.ndarray, g: np.ndarray, zeff: np.ndarray,
                       seg_wet: np.ndarray, seg_scatter: np.ndarray, seg_mid: np.ndarray,
                       z: np.ndarray, power_step_mm: float, power: np.ndarray,
                       hold_depth_mm: float) -> np.ndarray:
    """Numpy twin of :func:`narrow_tails` (cumulative sums over the planes)."""
    pw = lookup_uniform(zeff[:-1] + 0.5 * seg_wet, power_step_mm * np.arange(power.size),
                        power, beyond=float(power[-1]))

    def middles(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (cumsum_planes(t) - 0.5 * t, cumsum_planes(t * seg_mid) - 0.5 * t * seg_mid)

    a_t, b_t = middles(pw * seg_scatter)
    a_w, b_w = middles(pw * seg_wet)
    zeros = np.zeros((1, sigma.shape[1]))
    s_aa, s_ab, s_bb = (np.vstack([zeros, cumsum_planes(seg_wet * v)])
                        for v in (a_t * a_t - a_w * a_w, a_t * b_t - a_w * b_w,
                                  b_t * b_t - b_w * b_w))
    zk = z[:, None]
    excess = np.maximum(0.5 * (zk * zk * s_aa - 2.0 * zk * s_ab + s_bb)
                        / np.maximum(sigma * sigma, 1e-12), 0.0)
    dz = np.gradient(zeff, axis=0)
    ok = (dz > 1e-6) & (g > 1e-3)
    slope = np.divide(np.gradient(g, axis=0), np.where(ok, dz, 1.0))
    kappa = np.where(ok, np.minimum(excess * slope / np.where(ok, g, 1.0), 0.0), 0.0)
    kappa[0] = 0.0
    return sigma / np.sqrt(1.0 - 2.0 * hold_beyond(kappa, zeff, hold_depth_mm))


@numba.njit(cache=True, nogil=True, fastmath=True)
def penetration_variance(d_lambda: np.ndarray, ds: np.ndarray) -> np.ndarray:
    """Variance (nz - 1, P; mm^2) of the depth reached after each segment's path.

    Lewis 1950: ``<u(s).u(t)> = exp(-(L(t) - L(s)))`` with ``L = int k1 ds`` (``d_lambda``
    per segment, (nz - 1, P)) and ``<cos^2>(s) = (1 + 2 exp(-L2(s))) / 3``, ``L2 = 3 L``
    (small-angle ratio of the second to the first transport moment), so ``<z^2> = 2 int dt
    exp(-L(t)) int_0^t <cos^2> exp(L(s)) ds``, ``<z> = int exp(-L) ds``; ``ds`` (nz - 1, P)
    is each segment's path (mm). Each pencil's column in one pass, with one exponential per
    segment (the twin holds ``L`` at 50, where ``exp(-L)`` is 2e-22).
    """
    n_seg, n_pen = ds.shape
    out = np.empty((n_seg, n_pen))
    for p in range(n_pen):
        before = 1.0       # exp(-L) at the end of the segments so far
        k = 0.0            # int_0^t <cos^2> exp(-(L(t) - L(s))) ds, t at the segment's end
        second = 0.0
        mean = 0.0
        for m in range(n_seg):
            half = math.exp(-0.5 * d_lambda[m, p])
            decay = before * half                  # exp(-L) at the segment's middle
            before = decay * half
            cos2 = (1.0 + 2.0 * decay * decay * decay) / 3.0
            step = ds[m, p]
            second = second + 2.0 * step * k * half + cos2 * step * step
            k = k * half * half + cos2 * step * half
            mean += decay * step
            out[m, p] = max(second - mean * mean, 0.0)
    return out


def penetration_variance_numpy(d_lambda: np.ndarray, ds: np.ndarray) -> np.ndarray:
    """Numpy twin of :func:`penetration_variance` (vectorised over pencils)."""
    lam = cumsum_planes(d_lambda) - 0.5 * d_lambda        # at the segment middles
    decay = np.exp(-np.minimum(lam, 50.0))
    cos2 = (1.0 + 2.0 * np.exp(-3.0 * np.minimum(lam, 50.0))) / 3.0
    k = np.zeros(ds.shape[1])
    second = np.zeros(ds.shape[1])
    out = np.empty_like(ds)
    for m in range(ds.shape[0]):
        half = np.exp(-0.5 * d_lambda[m])
        second = second + 2.0 * ds[m] * k * half + cos2[m] * ds[m] * ds[m]
        k = k * half * half + cos2[m] * ds[m] * half
        out[m] = second
    mean = cumsum_planes(decay * ds)
    return np.maximum(out - mean * mean, 0.0)
