"""kV spherical applicator: table in water, inverse square in light media, prescription."""

from __future__ import annotations

import json

import numpy as np
import pytest

from assets import asset_path
from models.base.errors import InputError
from models.dose.kv import compute_kv_dose, kv_applicator
from models.patient.volume import Volume


def uniform_ct(hu: float) -> Volume:
    array = np.full((60, 60, 60), hu, dtype=np.float32)
    return Volume.from_grid(array, spacing_mm=(2.0, 2.0, 2.0), origin_mm=(-59.0, -59.0, -59.0))


def radial_samples(result, radius_mm: float, depths: np.ndarray) -> np.ndarray:
    """Dose at depths from the surface along +x and -y (grid nodes)."""
    pts = np.stack([radius_mm + depths, np.zeros_like(depths), np.zeros_like(depths)], axis=1)
    return result.dose.sample(pts, order=1)


def table(diameter: float) -> tuple[np.ndarray, np.ndarray]:
    raw = json.loads(asset_path("beams", "kv_spherical.json").read_text())
    entry = next(a for a in raw["applicators"] if a["diameter_mm"] == diameter)
    return np.asarray(raw["depth_mm"]), np.asarray(entry["dose_percent"])


def test_dose_in_water_follows_the_table():
    result = compute_kv_dose(uniform_ct(0.0), np.eye(4), 30.0, prescription_gy=20.0)
    depth_t, dose_t = table(30.0)
    depths = np.arange(2.0, 38.0, 2.0)          # grid nodes from the centre at 16, 18, ...
    got = radial_samples(result, 15.0, depths)
    expected = 20.0 * np.interp(depths, depth_t, dose_t) / 100.0
    np.testing.assert_allclose(got, expected, rtol=0.02)
    assert result.surface_dose_gy == pytest.approx(20.0)


def test_light_medium_falls_off_closer_to_inverse_square():
    water = compute_kv_dose(uniform_ct(0.0), np.eye(4), 30.0)
    light = compute_kv_dose(uniform_ct(-700.0), np.eye(4), 30.0)
    depths = np.array([4.0, 10.0, 20.0, 30.0])
    a = 15.0
    inverse_square = (a / (a + depths)) ** 2
    ratio_water = radial_samples(water, a, depths) / water.surface_dose_gy
    ratio_light = radial_samples(light, a, depths) / light.surface_dose_gy
    assert np.all(ratio_light > ratio_water)
    assert np.all(ratio_light < inverse_square * 1.001)
    # in lung (RSP 0.3, table) attenuation is read at 0.3 x depth: D = ISQ(d) A(0.3 d)
    depth_t, dose_t = table(30.0)
    wepl = 0.3 * depths
    attenuation = np.interp(wepl, depth_t, dose_t) / 100.0 / (a / (a + wepl)) ** 2
    np.testing.assert_allclose(ratio_light, inverse_square * attenuation, rtol=0.03)


def test_prescription_at_depth_and_treatment_time():
    app = kv_applicator(40.0)
    result = compute_kv_dose(uniform_ct(0.0), np.eye(4), 40.0, prescription_gy=5.0,
                             prescription_depth_mm=10.0)
    depth_t, dose_t = table(40.0)
    assert result.surface_dose_gy == pytest.approx(5.0 / (np.interp(10.0, depth_t, dose_t)
                                                          / 100.0))
    assert result.treatment_time_min == pytest.approx(
        result.surface_dose_gy / app.surface_dose_rate_gy_per_min)
    assert radial_samples(result, 20.0, np.array([10.0]))[0] == pytest.approx(5.0, rel=0.02)


def test_numba_and_numpy_backends_agree():
    ct = uniform_ct(0.0)
    ct.array[30:40] = 800.0
    fast = compute_kv_dose(ct, np.eye(4), 20.0, max_depth_mm=20.0).dose.array
    slow = compute_kv_dose(ct, np.eye(4), 20.0, max_depth_mm=20.0, backend="numpy").dose.array
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-4)


def test_no_dose_inside_the_sphere_or_in_air():
    result = compute_kv_dose(uniform_ct(-1000.0), np.eye(4), 20.0)
    assert result.dose.array.max() == 0.0


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ((33.0,), {}, "15, 20, 25"),
    ((30.0,), {"prescription_depth_mm": 500.0}, "beyond the table"),
    ((30.0,), {"prescription_gy": float("nan")}, "prescription_gy"),
])
def test_bad_input_is_refused(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compute_kv_dose(uniform_ct(0.0), np.eye(4), *args, **kwargs)


def test_centre_outside_ct_is_refused():
    pose = np.eye(4)
    pose[:3, 3] = [0.0, 0.0, 400.0]
    with pytest.raises(InputError, match="outside the CT"):
        compute_kv_dose(uniform_ct(0.0), pose, 30.0)
