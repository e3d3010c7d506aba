"""Heterogeneity against an independent Monte Carlo (ompmc, EGSnrc-derived): each code
against its own water run, in the slab, edge and disc geometries of ``tests/data/mc``.

The Monte Carlo files (made by ``benchmarks/mc``; geometry, source, code, statistics and
the metrics are in each file) describe a 100 mm field of the LIAC energy's spectrum on a
water phantom with a bone or metal layer. The engine runs the LIAC 100 mm flat applicator
of the same nominal energy on the same layer, with the MC's own water depth dose as its
broad-beam curve (:func:`mc_beam_model`: the same water beam in both codes); only relative
effects are compared:

* slab: R50 shift (mm) within 1.5 mm; the depth dose behind the bone within 3 % of the
  water maximum;
* edge: hot and cold spot (% of the water profile) within 3 % (plus twice the MC's
  statistical sigma);
* disc: backscatter factor upstream and transmission downstream within 0.03 (plus
  twice the MC's sigma), in units of the water dose.

Not independent everywhere: the steel backscatter constants are fitted to the same MC
run 1-12 mm upstream (the test reads the last mm, 19-20 mm), and the strength of the
edge redistribution (``REDEFINE_EXCESS_WEIGHT``) is fitted to the hot and cold spots of
both edge profiles (24-26 and 30-32 mm, two runs with other seeds). Without a fitted
constant: the disc transmission, the detour and the range spread behind bone (Lewis 1950
moments with the physical scattering power), and the pencils' tails ranging out (their
longer paths, Fermi-Eyges moments).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.beams.depth_dose import analyse_depth_dose
from models.beams.library import ElectronBeam, default_library
from models.dose.electron import (
    ElectronModel,
    ShieldingDisc,
    build_electron_model,
    relative_dose,
)
from models.dose.materials import tissue_lookup
from models.dose.water import water_phantom, water_pose
from models.patient.volume import Volume

MC_DIR = Path(__file__).resolve().parents[2] / "data" / "mc"

#: Monte Carlo media -> shielding-disc material of the engine.
METALS = {"STEEL": "steel", "PB": "lead", "LEAD": "lead"}


def _cases(kind: str) -> list[Path]:
    return sorted(MC_DIR.glob(f"heterogeneity_{kind}_*.json"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _hu_of_density(rho: float) -> float:
    t = tissue_lookup()
    bone = t.hu >= 100.0
    return float(np.interp(rho, t.density_g_cm3[bone], t.hu[bone]))


def _phantom(mc: dict, *, lateral: bool) -> Volume:
    """Water phantom (1 mm voxels) with the MC's layer; ``lateral``: only where x > 0."""
    ct = water_phantom(half_width_mm=90.0, depth_mm=100.0, spacing_mm=1.0)
    het = mc["heterogeneity"]
    z0, z1 = het["z_mm"]
    k = np.arange(ct.shape[0], dtype=np.float64)
    i = np.arange(ct.shape[2], dtype=np.float64)
    z = ct.voxel_to_patient(np.stack([0 * k, 0 * k, k], axis=1))[:, 2]
    x = ct.voxel_to_patient(np.stack([i, 0 * i, 0 * i], axis=1))[:, 0]
    array = ct.array.copy()
    rows = (z > z0) & (z < z1)
    cols = x > 0.0 if lateral else np.ones_like(x, dtype=bool)
    array[np.ix_(rows, np.ones(ct.shape[1], dtype=bool), cols)] = _hu_of_density(
        het["density_g_cm3"])
    return ct.with_array(array)


def mc_beam_model(mc: dict) -> ElectronModel:
    """The LIAC 100 mm beam of the MC's nominal energy with the MC's own water depth dose as
    its broad-beam curve: both codes then start from the same water beam, so a change
    against water compares the heterogeneity's physics, not two depth doses (the MC's
    point source has R90 34 mm and its maximum at 25 mm at 12 MeV, the LIAC 28.6 / 17 mm;
    the same shift of R50 then gives other relative changes at a fixed depth)."""
    beam = ElectronBeam("liac", float(mc["source"]["nominal_energy_mev"]), 100.0)
    water = np.asarray(mc["depth_dose_water"], dtype=np.float64)
    depth = np.concatenate([[0.0], np.asarray(mc["depth_mm"], dtype=np.float64)])
    dose = np.concatenate([[water[0]], water])
    return build_electron_model(beam, default_library().validate(beam), depth,
                                100.0 * dose / dose.max())


def _dose(ct: Volume, mc: dict, disc: ShieldingDisc | None = None):
    """Unnormalised dose (same scale for every run of one beam) and its beam grid."""
    rel = relative_dose(np.asarray(ct.array, dtype=np.float32),
                        ct.voxel_from_patient @ water_pose(0.0), mc_beam_model(mc),
                        grid_mm=1.0, disc=disc)
    return Volume(rel.dose, water_pose(0.0) @ rel.grid.applicator_from_voxel())


def _depth_dose(dose: Volume, depth: np.ndarray) -> np.ndarray:
    return dose.sample(np.stack([0 * depth, 0 * depth, depth], axis=1), order=1)


@pytest.fixture(scope="module")
def water_runs():
    runs = {}

    def get(mc: dict) -> Volume:
        energy = float(mc["source"]["nominal_energy_mev"])
        if energy not in runs:
            runs[energy] = _dose(water_phantom(half_width_mm=90.0, depth_mm=100.0,
                                               spacing_mm=1.0), mc)
        return runs[energy]
    return get


@pytest.mark.parametrize("path", _cases("slab"), ids=lambda p: p.stem)
def test_slab_shifts_r50_like_the_monte_carlo(path, water_runs):
    mc = _load(path)
    depth = np.arange(0.25, 80.0, 0.25)
    water = _depth_dose(water_runs(mc), depth)
    slab = _depth_dose(_dose(_phantom(mc, lateral=False), mc), depth)
    # each curve against its own maximum, as the MC's metrics
    shift = (analyse_depth_dose(depth, 100 * slab / slab.max()).r50_mm
             - analyse_depth_dose(depth, 100 * water / water.max()).r50_mm)
    assert shift == pytest.approx(mc["metrics"]["r50_shift_mm"], abs=1.5)


def test_slab_depth_dose_behind_bone_follows_the_monte_carlo(water_runs):
    """Behind 10 mm of ICRP bone (12 MeV) the whole depth dose, from 3 mm below the bone
    to where the MC falls under 10 % of the water maximum, within 3 % of that maximum of
    the MC's (each code in units of its own water maximum). Without the range spread
    beyond the bone the pencils fell too steeply: +4.2 % at 31 mm, -1.6 % at 41 mm."""
    mc = _load(MC_DIR / "heterogeneity_slab_12mev.json")
    depth = np.asarray(mc["depth_mm"], dtype=np.float64)
    mc_slab = np.asarray(mc["depth_dose"]) / max(mc["depth_dose_water"])
    behind = (depth > mc["heterogeneity"]["z_mm"][1] + 3.0) & (mc_slab > 0.1)
    assert np.count_nonzero(behind) >= 15
    fine = np.arange(0.25, 80.0, 0.25)
    water_max = float(_depth_dose(water_runs(mc), fine).max())
    slab = _depth_dose(_dose(_phantom(mc, lateral=False), mc), depth[behind]) / water_max
    assert np.abs(slab - mc_slab[behind]).max() <= 0.03


def _edge_change(path: Path, water_runs) -> tuple[dict, np.ndarray]:
    """The MC file and the engine's change of the lateral profile (% of the water profile)."""
    mc = _load(path)
    m = mc["metrics"]
    x = np.arange(m["window_mm"][0], m["window_mm"][1] + 0.1, 0.5)
    d0, d1 = mc["profile_depth_mm"]

    def profile(dose: Volume) -> np.ndarray:
        out = [dose.sample(np.stack([x, 0 * x, np.full_like(x, d)], axis=1), order=1)
               for d in np.linspace(d0, d1, 5)]
        return np.mean(out, axis=0)

    water = profile(water_runs(mc))
    edge = profile(_dose(_phantom(mc, lateral=True), mc))
    norm = float(water[np.abs(x) < 20.0].mean())
    return mc, 100.0 * (edge - water) / norm


@pytest.mark.parametrize("path", _cases("edge"), ids=lambda p: p.stem)
def test_bone_edge_hot_spot_like_the_monte_carlo(path, water_runs):
    mc, change = _edge_change(path, water_runs)
    m = mc["metrics"]
    assert change.max() == pytest.approx(m["hot_spot_percent"],
                                         abs=3.0 + 2.0 * m["sigma_percent"])


@pytest.mark.parametrize("path", _cases("edge"), ids=lambda p: p.stem)
def test_bone_edge_cold_spot_like_the_monte_carlo(path, water_runs):
    mc, change = _edge_change(path, water_runs)
    m = mc["metrics"]
    assert change.min() == pytest.approx(m["cold_spot_percent"],
                                         abs=3.0 + 2.0 * m["sigma_percent"])


@pytest.mark.parametrize("path", _cases("edge"), ids=lambda p: p.stem)
def test_bone_edge_spots_within_3_percent_without_the_statistics(path, water_runs):
    """The criterion itself, without the MC's 2 sigma: hot and cold spot within 3 % at both
    depths (the deep hot spot was 3.8 % off before the pencils' tails ranged out)."""
    mc, change = _edge_change(path, water_runs)
    m = mc["metrics"]
    assert change.max() == pytest.approx(m["hot_spot_percent"], abs=3.0)
    assert change.min() == pytest.approx(m["cold_spot_percent"], abs=3.0)


def test_bone_edge_redistribution_puts_the_hot_spot_beside_the_edge(water_runs):
    """Electrons scattered out of the bone: at 24-26 mm the hot spot lies within 8 mm of
    the edge on the water side and the cold spot within 8 mm under the bone, as in the
    Monte Carlo (-5 / +3 mm), not ~11 mm off as with the pencils' own spread alone."""
    path = next(p for p in _cases("edge") if "deep" not in p.stem)
    _, change = _edge_change(path, water_runs)
    x = np.arange(-24.0, 24.1, 0.5)
    assert -8.0 <= x[np.argmax(change)] < 0.0 < x[np.argmin(change)] <= 8.0


def _disc_run(path: Path, water_runs) -> tuple[dict, Volume, Volume]:
    mc = _load(path)
    het = mc["heterogeneity"]
    material = next(v for k, v in METALS.items() if het["medium"].upper().startswith(k))
    z0, z1 = het["z_mm"]
    disc = ShieldingDisc(material=material, diameter_mm=170.0, thickness_mm=z1 - z0,
                         depth_mm=z0)
    shielded = _dose(water_phantom(half_width_mm=90.0, depth_mm=100.0, spacing_mm=1.0),
                     mc, disc)
    return mc, water_runs(mc), shielded


def _mean_over(dose: Volume, span: list[float]) -> float:
    return float(_depth_dose(dose, np.linspace(span[0], span[1], 9)).mean())


@pytest.mark.parametrize("path", _cases("disc"), ids=lambda p: p.stem)
def test_disc_backscatter_like_the_monte_carlo(path, water_runs):
    mc, water, shielded = _disc_run(path, water_runs)
    m = mc["metrics"]
    up = m["backscatter_depth_mm"]
    backscatter = _mean_over(shielded, up) / _mean_over(water, up)
    assert backscatter == pytest.approx(m["backscatter_factor"],
                                        abs=0.03 + 2.0 * m["backscatter_sigma"])


@pytest.mark.parametrize("path", _cases("disc"), ids=lambda p: p.stem)
def test_disc_transmission_like_the_monte_carlo(path, water_runs):
    mc, water, shielded = _disc_run(path, water_runs)
    m = mc["metrics"]
    water_max = float(_depth_dose(water, np.arange(0.5, 60.0, 0.5)).max())
    transmission = _mean_over(shielded, m["transmission_depth_mm"]) / water_max
    assert transmission == pytest.approx(m["transmission_of_water_max"],
                                         abs=0.03 + 2.0 * m["transmission_sigma"])


def test_disc_backscatter_and_transmission_go_the_monte_carlo_way(water_runs):
    """Whatever the gap in size: backscatter raises the dose upstream, falling off over a
    few mm, and the dose 0-1 mm below the metal is a fraction of the water dose."""
    for path in _cases("disc"):
        mc, water, shielded = _disc_run(path, water_runs)
        z0 = mc["heterogeneity"]["z_mm"][0]
        ratio = [_mean_over(shielded, [z - 1.0, z]) / _mean_over(water, [z - 1.0, z])
                 for z in (z0, z0 - 3.0, z0 - 8.0)]
        assert ratio[0] > ratio[1] > ratio[2] > 1.0 and ratio[2] < 1.05
        below = mc["metrics"]["transmission_depth_mm"]
        assert _mean_over(shielded, below) < 0.7 * _mean_over(water, below)
