"""Each numba kernel against its plain-numpy twin, and the fast spreading against the exact."""

from __future__ import annotations

import numpy as np
import pytest

from models.dose import kernels
from models.dose.materials import rsp_lookup_table


@pytest.fixture
def ct(rng) -> np.ndarray:
    return rng.uniform(-1000.0, 1500.0, size=(20, 24, 28)).astype(np.float32)


@pytest.fixture
def ct_from_grid(rng) -> np.ndarray:
    """An oblique map from a small grid into (and partly out of) the CT."""
    angle = 0.4
    rot = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0],
                    [0.0, 0.0, 1.0]])
    out = np.eye(4)
    out[:3, :3] = 0.7 * rot
    out[:3, 3] = [3.3, -1.7, 2.2]
    return out


def test_sample_rsp_matches_numpy_twin(ct, ct_from_grid):
    lut = rsp_lookup_table()
    fast, out_fast, nan_fast = kernels.sample_rsp(ct, ct_from_grid, (16, 18, 20), lut)
    slow, out_slow, nan_slow = kernels.sample_rsp_numpy(ct, ct_from_grid, (16, 18, 20), lut)
    assert out_fast == out_slow > 0 and nan_fast == nan_slow == 0
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)


def test_sample_rsp_points_matches_grid_and_twin(ct, ct_from_grid, rng):
    lut = rsp_lookup_table()
    grid, _, _ = kernels.sample_rsp(ct, ct_from_grid, (6, 7, 8), lut)
    k, j, i = np.meshgrid(np.arange(6), np.arange(7), np.arange(8), indexing="ij")
    pts = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(np.float64)
    at, _, _ = kernels.sample_rsp_points(ct, ct_from_grid, pts, lut)
    np.testing.assert_allclose(at, grid.ravel(), rtol=1e-6, atol=1e-6)
    random_pts = rng.uniform(0.0, 10.0, size=(200, 3))
    a, n_a, _ = kernels.sample_rsp_points(ct, ct_from_grid, random_pts, lut)
    b, n_b, _ = kernels.sample_rsp_points_numpy(ct, ct_from_grid, random_pts, lut)
    assert n_a == n_b
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_sample_luts_matches_one_table_at_a_time_and_its_twin(ct, ct_from_grid):
    from models.dose.materials import tissue_lookup

    tissue = tissue_lookup()
    luts = np.stack([tissue.rsp, tissue.scatter])
    ct = ct.copy()
    ct[5:8, 5:8, 5:8] = np.nan
    both, n_out, n_nan = kernels.sample_luts(ct, ct_from_grid, (16, 18, 20), luts)
    twin, n_out_twin, n_nan_twin = kernels.sample_luts_numpy(ct, ct_from_grid, (16, 18, 20),
                                                             luts)
    assert n_out == n_out_twin > 0 and n_nan == n_nan_twin > 0
    np.testing.assert_allclose(both, twin, rtol=1e-5, atol=1e-5)
    for table, values in zip(luts, both, strict=True):
        np.testing.assert_allclose(values, kernels.sample_rsp(ct, ct_from_grid, (16, 18, 20),
                                                              table)[0], rtol=1e-6, atol=1e-6)


def test_sample_rsp_counts_nan(ct, ct_from_grid):
    ct = ct.copy()
    ct[5:10, 5:10, 5:10] = np.nan
    lut = rsp_lookup_table()
    _, _, n_nan = kernels.sample_rsp(ct, ct_from_grid, (16, 18, 20), lut)
    _, _, n_nan_twin = kernels.sample_rsp_numpy(ct, ct_from_grid, (16, 18, 20), lut)
    assert n_nan == n_nan_twin > 0


@pytest.fixture
def pencils(rng):
    n_planes, n_pencils, n = 6, 40, 31
    amp = rng.uniform(0.0, 1.0, size=(n_planes, n_pencils))
    amp[amp < 0.1] = 0.0
    sigma = rng.uniform(0.5, 6.0, size=(n_planes, n_pencils))
    pi = rng.integers(0, n, size=n_pencils)
    pj = rng.integers(0, n, size=n_pencils)
    return amp, sigma, pi, pj, 2.0, n, n


def test_spread_matches_numpy_twin(pencils):
    np.testing.assert_allclose(kernels.spread_pencils(*pencils),
                               kernels.spread_pencils_numpy(*pencils), rtol=1e-9, atol=1e-12)


def test_binned_spread_matches_its_twin_and_the_exact_kernel(pencils):
    fast = kernels.spread_pencils_binned(*pencils, 0.02)
    twin = kernels.spread_pencils_binned_numpy(*pencils, 0.02)
    exact = kernels.spread_pencils(*pencils)
    np.testing.assert_allclose(fast, twin, rtol=1e-9, atol=1e-12)
    # sigma rounded by <= 1 %: the dose moves by well under 1 % of the maximum
    assert np.abs(fast - exact).max() <= 0.01 * exact.max()


def test_spread_conserves_the_amplitude_inside_the_grid():
    amp = np.array([[2.0]])
    dose = kernels.spread_pencils(amp, np.array([[3.0]]), np.array([30]), np.array([30]), 1.0,
                                  61, 61)
    # square beamlet fully inside; the window is cut at >= 3 sigma (loses < 0.3 %)
    assert dose.sum() == pytest.approx(2.0, rel=3e-3)
    assert dose.sum() < 2.0


def test_kv_wepl_matches_numpy_twin(rng):
    rsp = rng.uniform(0.2, 1.6, size=(21, 21, 21)).astype(np.float32)
    centre = np.array([10.0, 10.0, 10.0])
    d1, w1 = kernels.kv_wepl(rsp, centre, 2.0, 5.0, 1.0, 12.0)
    d2, w2 = kernels.kv_wepl_numpy(rsp, centre, 2.0, 5.0, 1.0, 12.0)
    np.testing.assert_allclose(d1, d2, atol=1e-9)
    np.testing.assert_allclose(w1, w2, rtol=1e-6, atol=1e-6)


def test_kv_wepl_in_water_equals_the_distance():
    rsp = np.ones((21, 21, 21), dtype=np.float32)
    depth, wepl = kernels.kv_wepl(rsp, np.array([10.0, 10.0, 10.0]), 2.0, 5.0, 1.0, 12.0)
    inside = (depth > 0) & (depth <= 12.0)
    np.testing.assert_allclose(wepl[inside], depth[inside], rtol=1e-6)


def _bone_stripe(n: int = 24, nz: int = 30, h: float = 1.0) -> np.ndarray:
    """Angular variance per step: water (0.01 rad^2/mm) with bone (2.4x) at 10-20 mm, x > 0."""
    d_var = np.full((nz - 1, 6, n), 0.01 * h)
    d_var[int(10 / h):int(20 / h), :, n // 2:] *= 2.4
    return d_var


def _all_live(d_var: np.ndarray) -> np.ndarray:
    return np.full(d_var.shape[1:], d_var.shape[0], dtype=np.int64)


def _ranging_out(d_var: np.ndarray) -> np.ndarray:
    """Columns whose transport ends at different steps (an oblique end of range)."""
    ny, nx = d_var.shape[1:]
    return (12 + np.arange(nx)[None, :] // 2 + np.zeros((ny, 1), dtype=np.int64)).astype(
        np.int64)


def test_redefinition_keeps_a_uniform_medium_uniform():
    d_var = np.full((20, 8, 9), 0.02)
    for f in (kernels.redefine_fluence, kernels.redefine_fluence_numpy):
        for live in (_all_live(d_var), _ranging_out(d_var)):
            assert np.allclose(f(d_var, 1.0, 0.0, 0.5, live), 1.0, atol=1e-12)


def test_redefinition_numba_matches_numpy_twin():
    d_var = _bone_stripe()
    for live in (_all_live(d_var), _ranging_out(d_var)):
        a = kernels.redefine_fluence(d_var, 1.0, 0.001, 0.5, live)
        b = kernels.redefine_fluence_numpy(d_var, 1.0, 0.001, 0.5, live)
        assert np.allclose(a, b, atol=1e-9)


def test_redefinition_holds_a_column_after_its_last_step():
    """A column whose electrons have ranged out keeps its last fluence; until the first
    column stops, the transport is the full one, and after it the neighbours differ by
    little (they see copies of themselves in place of the stopped columns)."""
    d_var = _bone_stripe()
    live = _ranging_out(d_var)
    f = kernels.redefine_fluence(d_var, 1.0, 0.001, 0.5, live)
    full = kernels.redefine_fluence(d_var, 1.0, 0.001, 0.5, _all_live(d_var))
    for i in range(d_var.shape[2]):
        last = live[0, i]
        assert np.all(f[last:, :, i] == f[last, :, i])
        assert np.abs(f[: last + 1, :, i] - full[: last + 1, :, i]).max() < 0.02
    first = int(live.min())
    np.testing.assert_array_equal(f[: first + 1], full[: first + 1])
    assert not np.array_equal(f, full)


def test_redefinition_scatters_electrons_out_of_the_bone():
    """Beside a lateral bone edge the stronger scatterer loses electrons to the weaker:
    a hot spot on the water side, a cold one under the bone, the total conserved away from
    the grid border, and nothing above the bone."""
    n = 24
    d_var = _bone_stripe(n)
    f = kernels.redefine_fluence(d_var, 1.0, 0.0, 0.5, _all_live(d_var))
    row = f[25, 3]
    assert np.allclose(f[:10], 1.0)
    assert row[: n // 2].max() > 1.03 and row[n // 2:].min() < 0.97
    assert n // 2 - 8 <= int(np.argmax(row)) < n // 2 <= int(np.argmin(row)) < n // 2 + 8
    assert row[2:-2].sum() == pytest.approx(n - 4, rel=0.01)


def _tail_pencils(bone_mm: float = 10.0) -> tuple:
    """Pencils through water with a bone layer (10-20 mm) of ``bone_mm`` (0: water): the
    narrowing kernels' inputs, the depth dose falling beyond 30 mm of water depth."""
    h = 1.0
    z = np.arange(0.0, 60.0 + h / 2, h)
    n_p = 3
    bone = ((z[:-1] >= 10.0) & (z[:-1] < 10.0 + bone_mm))[:, None]
    seg_wet = np.where(bone, 1.7, 1.0) * np.ones((z.size - 1, n_p)) * h
    seg_scatter = np.where(bone, 2.4, 1.0) * np.ones((z.size - 1, n_p)) * h
    seg_mid = np.repeat((z[:-1] + 0.5 * h)[:, None], n_p, axis=1)
    zeff = np.vstack([np.zeros((1, n_p)), np.cumsum(seg_wet, axis=0)])
    g = np.clip(1.0 - np.maximum(zeff - 30.0, 0.0) / 20.0, 0.0, None) + 0.01
    sigma = 0.2 + 0.3 * np.sqrt(z)[:, None] * np.ones((1, n_p))
    power_step = 0.5
    power = 1e-3 * (1.0 + np.arange(0.0, 80.0, power_step) / 40.0)
    return sigma, g, zeff, seg_wet, seg_scatter, seg_mid, z, power_step, power, 45.0


def test_tail_narrowing_matches_numpy_twin():
    args = _tail_pencils()
    a = kernels.narrow_tails(*args)
    b = kernels.narrow_tails_numpy(*args)
    np.testing.assert_allclose(a, b, rtol=1e-9)


def test_tail_narrowing_only_beyond_water_and_where_the_dose_falls():
    """Water keeps its sigma exactly; behind bone the pencils narrow where the depth dose
    falls (never widen), and the narrowing is held beyond the hold depth."""
    for f in (kernels.narrow_tails, kernels.narrow_tails_numpy):
        water = _tail_pencils(0.0)
        np.testing.assert_array_equal(f(*water), water[0])
        args = _tail_pencils()
        sigma, zeff = args[0], args[2]
        out = f(*args)
        assert np.all(out <= sigma)
        np.testing.assert_array_equal(out[zeff < 29.0], sigma[zeff < 29.0])
        falling = (zeff > 32.0) & (zeff < 44.0)
        assert np.all(out[falling] < 0.99 * sigma[falling])
        ratio = out / sigma
        beyond = zeff > 45.0
        assert np.allclose(ratio[beyond], ratio[beyond][0])


def test_penetration_variance_matches_its_twin_and_vanishes_without_scattering(rng):
    d_lambda = rng.uniform(0.0, 0.3, size=(40, 25))
    ds = rng.uniform(0.5, 2.0, size=(40, 25))
    fast = kernels.penetration_variance(d_lambda, ds)
    np.testing.assert_allclose(fast, kernels.penetration_variance_numpy(d_lambda, ds),
                               rtol=1e-9, atol=1e-9)
    assert np.all(np.diff(fast, axis=0) >= -1e-9) and fast[-1].min() > 0.0
    # straight paths (no scattering): every electron reaches the depth of its path
    assert np.abs(kernels.penetration_variance(np.zeros_like(ds), ds)).max() < 1e-9


def test_range_out_excess_matches_its_twin_and_scipy_box(rng):
    """The excess fluence (F > 1) beside a random bone pattern re-weighted by the depth dose
    of where it came from: the numba kernel equals its twin (scipy's uniform_filter), the
    deficit and the planes without excess are untouched, and NaN-free inputs stay so."""
    nz, ny, nx = 6, 17, 23
    fluence = 1.0 + 0.2 * rng.standard_normal((nz, ny, nx))
    fluence[2] = np.minimum(fluence[2], 1.0)           # a plane with no excess
    depth = np.cumsum(rng.uniform(1.0, 3.0, (nz, ny, nx)), axis=0)
    excess = np.cumsum(np.maximum(rng.uniform(-1.0, 1.5, (nz, ny, nx)), 0.0), axis=0)
    excess[:, :, :5] = 0.0                              # no bone on the left: source = depth
    box = np.array([1, 3, 0, 7, 9, 11], dtype=np.int64)   # plane 2 has no excess
    table = np.exp(-np.arange(40) / 10.0)
    fast = kernels.range_out_excess(fluence, depth, excess, box, 0.5, table)
    twin = kernels.range_out_excess_numpy(fluence, depth, excess, box, 0.5, table)
    np.testing.assert_allclose(fast, twin, rtol=1e-12, atol=1e-12)
    assert not np.allclose(fast, fluence)              # the excess was re-weighted
    np.testing.assert_array_equal(fast[fluence <= 1.0], fluence[fluence <= 1.0])
    np.testing.assert_array_equal(fast[2], fluence[2])
