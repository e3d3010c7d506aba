"""Electron pencil-beam against independent truth: published ranges, relations, slabs,
symmetry, bevel, shielding disc, gamma against a fine-grid run, bad input."""

from __future__ import annotations

import math

import numpy as np
import pymedphys
import pytest

from assets import asset_path
from models.base.errors import InputError
from models.beams.commissioning import read_beam_curves
from models.beams.depth_dose import analyse_depth_dose, lookup_uniform
from models.beams.library import ElectronBeam
from models.dose.electron import (
    ShieldingDisc,
    _range_out_excess,
    compute_electron_dose,
    electron_model,
)
from models.dose.materials import hu_rsp_table, shield_material
from models.dose.water import bevel_metrics, depth_curve, water_phantom, water_pose
from models.patient.volume import Volume

#: Published LIAC commissioning values, 100 mm flat applicator in water (issue 5).
LIAC_PUBLISHED = {6: (15.0, 23.3, 31.8), 8: (19.2, 29.2, 39.3), 10: (24.1, 36.4, 47.9),
                  12: (28.8, 43.2, 56.2)}


@pytest.fixture(scope="module")
def water() -> Volume:
    return water_phantom(half_width_mm=90.0, depth_mm=100.0, spacing_mm=1.0)


def cax_curve(result) -> tuple[np.ndarray, np.ndarray]:
    """Central-axis depth (mm from the surface) and dose of a flat applicator on water."""
    dose = result.dose
    c = dose.shape[1] // 2
    ijk = np.array([[c, c, k] for k in range(dose.shape[0])], dtype=np.float64)
    depth = dose.voxel_to_patient(ijk)[:, 2]
    keep = depth >= 0.0
    return depth[keep], dose.array[keep, c, c]


@pytest.mark.parametrize("energy", sorted(LIAC_PUBLISHED))
def test_liac_reproduces_published_ranges_within_1mm(water, energy):
    result = compute_electron_dose(water, water_pose(0.0), ElectronBeam("liac", energy, 100.0))
    metrics = analyse_depth_dose(*cax_curve(result))
    r90, r50, rp = LIAC_PUBLISHED[energy]
    assert metrics.r90_mm == pytest.approx(r90, abs=1.0)
    assert metrics.r50_mm == pytest.approx(r50, abs=1.0)
    assert metrics.rp_mm == pytest.approx(rp, abs=1.0)
    # surface dose: commissioned on the Kali MC of the LIAC (89.9-93.6 % in its first voxel,
    # 0.8-1.1 mm deep), no longer the 90-93 % estimate; within the 2 % acceptance there
    mc = next(c for c in read_beam_curves(asset_path("beams", "liac_kali_mc_curves.json"))
              if c.key == (float(energy), 100.0, 0.0))
    depth, dose = cax_curve(result)
    at_first = 100.0 * np.interp(mc.depth_mm[0], depth, dose) / dose.max()
    assert at_first == pytest.approx(mc.depth_dose_percent[0], abs=2.0)


@pytest.mark.parametrize("energy", [6.0, 9.0, 12.0])
def test_mobetron_follows_the_relations_within_2mm(energy):
    m = depth_curve(ElectronBeam("mobetron", energy, 100.0), grid_mm=2.0).metrics
    assert m.r50_mm == pytest.approx(10.0 * energy / 2.33, abs=2.0)   # E0 = 2.33 R50
    assert m.rp_mm == pytest.approx(5.0 * energy, abs=2.0)            # Rp = 0.5 E0 cm/MeV
    assert m.r90_mm == pytest.approx(10.0 * energy / 3.2, abs=2.0)    # R90 = E / 3.2 cm


def slab_phantom(hu: float, *, top_mm: float, thickness_mm: float) -> Volume:
    ct = water_phantom(half_width_mm=90.0, depth_mm=110.0, spacing_mm=1.0)
    z = ct.voxel_to_patient(np.array([[0.0, 0.0, k] for k in range(ct.shape[0])]))[:, 2]
    array = ct.array.copy()
    array[(z > top_mm) & (z < top_mm + thickness_mm)] = hu
    return ct.with_array(array)


@pytest.mark.parametrize("hu", [1000.0, -700.0])     # cortical-like bone, lung
def test_slab_shifts_r50_by_its_water_equivalent_thickness(water, hu):
    """Lung scatters like its stopping: R50 moves by the stopping-power thickness. Bone
    scatters ~1.3x more than it stops: its electrons lose direction faster and penetrate
    less, so R50 moves further than stopping alone says (MC numbers: test_heterogeneity)."""
    beam = ElectronBeam("liac", 12, 100.0)
    thickness = 10.0
    r50_water = analyse_depth_dose(*cax_curve(
        compute_electron_dose(water, water_pose(0.0), beam, grid_mm=1.0))).r50_mm
    slab = slab_phantom(hu, top_mm=10.0, thickness_mm=thickness)
    r50_slab = analyse_depth_dose(*cax_curve(
        compute_electron_dose(slab, water_pose(0.0), beam, grid_mm=1.0))).r50_mm
    rsp = float(hu_rsp_table()(hu))              # table value, independent of the kernel
    expected_shift = thickness * (1.0 - rsp)     # geometric = water depth - water-eq. thickness
    if hu < 0:
        assert r50_slab - r50_water == pytest.approx(expected_shift, abs=1.0)
    else:
        assert expected_shift - 3.0 < r50_slab - r50_water < expected_shift - 0.5


def test_flat_applicator_dose_is_symmetric_on_water(water):
    dose = compute_electron_dose(water, water_pose(0.0),
                                 ElectronBeam("liac", 10, 60.0)).dose.array
    scale = dose.max()
    assert np.abs(dose - dose[:, ::-1, :]).max() <= 1e-4 * scale
    assert np.abs(dose - dose[:, :, ::-1]).max() <= 1e-4 * scale
    assert np.abs(dose - dose.transpose(0, 2, 1)).max() <= 1e-4 * scale


def test_bevel_shortens_r90_on_the_clinical_axis_and_tilts_isodoses():
    metrics = [bevel_metrics(ElectronBeam("liac", 12, 100.0, b), grid_mm=2.0)
               for b in (0.0, 15.0, 30.0, 45.0)]
    r90 = [m.r90_clinical_mm for m in metrics]
    assert r90[0] > r90[1] > r90[2] > r90[3]
    # isodoses follow the bevelled surface: tilted from the plane normal to the beam axis
    assert metrics[0].tilt_from_beam_normal_deg == pytest.approx(0.0, abs=0.5)
    for m in metrics[1:]:
        assert m.tilt_from_beam_normal_deg > 0.5 * m.bevel_deg
    # a pencil's 90 % depth along the beam is at most R90 of the flat beam: geometric bound
    assert r90[3] <= r90[0] * math.cos(math.radians(45.0)) + 1.0


def _disc_profile(water, disc):
    beam = ElectronBeam("liac", 12, 100.0)
    result = compute_electron_dose(water, water_pose(0.0), beam, grid_mm=1.0, disc=disc)
    return cax_curve(result)


@pytest.mark.parametrize("material", ["lead", "steel"])
def test_disc_backscatter_is_in_the_published_range(water, material):
    disc = ShieldingDisc(material=material, diameter_mm=80.0, thickness_mm=5.0, depth_mm=30.0)
    depth, free = _disc_profile(water, None)
    _, shielded = _disc_profile(water, disc)
    upstream = np.argmin(np.abs(depth - (disc.depth_mm - 1.0)))
    ratio = shielded[upstream] / free[upstream]     # both normalised without backscatter
    # independent: Klevenhagen's EBF at the mean energy E0 (1 - z / Rp) at the interface,
    # decayed 1 mm upstream with the tabulated relaxation length
    model = electron_model(ElectronBeam("liac", 12, 100.0))
    e_disc = model.energy.mean_energy_mev * (1.0 - disc.depth_mm / model.energy.points.rp_mm)
    mat = shield_material(material)
    expected = 1.0 + (mat.backscatter_factor(e_disc) - 1.0) * math.exp(
        -1.0 / mat.backscatter_relaxation_mm)
    assert ratio == pytest.approx(expected, rel=0.03)
    if material == "lead":
        # Klevenhagen et al. 1982: EBF of lead 1.5-1.75 for 1-10 MeV at the interface
        assert 1.5 <= mat.backscatter_factor(e_disc) <= 1.75
    else:
        assert 1.2 <= mat.backscatter_factor(e_disc) <= 1.45


def test_lead_thick_enough_for_the_interface_energy_transmits_under_5_percent(water):
    model = electron_model(ElectronBeam("liac", 12, 100.0))
    depth_mm = 30.0
    e_disc = model.energy.mean_energy_mev * (1.0 - depth_mm / model.energy.points.rp_mm)
    thick = ShieldingDisc("lead", 80.0, e_disc / 2.0 + 1.0, depth_mm)  # rule: E/2 mm lead (+1)
    thin = ShieldingDisc("lead", 80.0, 1.0, depth_mm)
    depth, free = _disc_profile(water, None)
    below = np.argmin(np.abs(depth - (depth_mm + thick.thickness_mm + 2.0)))
    transmission_thick = _disc_profile(water, thick)[1][below] / free.max()
    transmission_thin = _disc_profile(water, thin)[1][below] / free.max()
    assert transmission_thick < 0.05
    assert transmission_thin > 2.0 * transmission_thick


def test_gamma_fast_kernel_against_fine_grid_run():
    ct = slab_phantom(400.0, top_mm=8.0, thickness_mm=6.0)
    beam = ElectronBeam("liac", 8, 40.0)
    fast = compute_electron_dose(ct, water_pose(0.0), beam, grid_mm=2.0).dose
    fine = compute_electron_dose(ct, water_pose(0.0), beam, grid_mm=1.0, fast=False).dose

    def axes(vol: Volume) -> tuple[np.ndarray, ...]:
        origin = vol.patient_from_voxel[:3, 3]
        step = vol.spacing_mm
        nk, nj, ni = vol.shape
        return (origin[2] + step[2] * np.arange(nk), origin[1] + step[1] * np.arange(nj),
                origin[0] + step[0] * np.arange(ni))

    gamma = pymedphys.gamma(axes(fine), fine.array.astype(np.float64), axes(fast),
                            fast.array.astype(np.float64), dose_percent_threshold=2,
                            distance_mm_threshold=2, lower_percent_dose_cutoff=10,
                            max_gamma=2.0)
    valid = np.isfinite(gamma)
    assert valid.sum() > 1000
    assert np.mean(gamma[valid] <= 1.0) >= 0.98


def test_prescription_is_delivered_at_the_90_percent_isodose(water):
    result = compute_electron_dose(water, water_pose(0.0), ElectronBeam("liac", 10, 100.0),
                                   prescription_gy=12.0)
    _, dose = cax_curve(result)
    assert dose.max() == pytest.approx(12.0 / 0.9, rel=1e-6)
    assert result.isodose_gy() == pytest.approx(12.0, rel=1e-12)
    # MU = Dmax (cGy) / (reference output x output factor); 100 mm is the reference
    assert result.output_factor == pytest.approx(1.0, abs=1e-9)
    assert result.mu == pytest.approx(100.0 * 12.0 / 0.9, rel=1e-9)


def test_dose_on_the_ct_grid_keeps_the_maximum():
    ct = water_phantom(half_width_mm=50.0, depth_mm=40.0, spacing_mm=2.0)
    result = compute_electron_dose(ct, water_pose(0.0), ElectronBeam("liac", 6, 50.0))
    on_ct = result.dose_on(ct)
    assert on_ct.shape == ct.shape
    assert on_ct.array.max() == pytest.approx(result.dose.array.max(), rel=0.03)
    assert on_ct.array[ct.array < -900].max() == 0.0       # no dose in air


def test_unknown_energy_names_valid_choices(water):
    with pytest.raises(InputError, match="6, 8, 10, 12"):
        compute_electron_dose(water, water_pose(0.0), ElectronBeam("liac", 9, 100.0))


def test_pose_outside_ct_is_refused(water):
    pose = water_pose(0.0)
    pose[:3, 3] = [500.0, 0.0, 0.0]
    with pytest.raises(InputError, match="outside the CT"):
        compute_electron_dose(water, pose, ElectronBeam("liac", 6, 100.0))


def test_applicator_facing_away_from_tissue_is_refused(water):
    pose = water_pose(0.0)
    pose[:3, :3] = np.diag([1.0, -1.0, -1.0])          # beam pointing up into the air
    with pytest.raises(InputError, match="does not face tissue"):
        compute_electron_dose(water, pose, ElectronBeam("liac", 6, 100.0))


def test_nan_pose_is_refused(water):
    pose = water_pose(0.0)
    pose[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compute_electron_dose(water, pose, ElectronBeam("liac", 6, 100.0))


def test_nan_in_ct_along_the_beam_is_refused(water):
    array = water.array.copy()
    array[40:45, 80:100, 80:100] = np.nan
    with pytest.raises(InputError, match="NaN"):
        compute_electron_dose(water.with_array(array), water_pose(0.0),
                              ElectronBeam("liac", 6, 100.0))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"prescription_gy": -1.0}, "prescription_gy"),
    ({"grid_mm": float("nan")}, "grid_mm"),
    ({"isodose_percent": 120.0}, "isodose_percent"),
    ({"disc": ShieldingDisc("gold")}, "lead, steel"),
    ({"backend": "cuda"}, "numba, numpy"),
])
def test_bad_options_are_refused(water, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compute_electron_dose(water, water_pose(0.0), ElectronBeam("liac", 6, 50.0), **kwargs)


def test_bolus_under_the_end_face_shifts_the_ranges_by_its_thickness(water):
    beam = ElectronBeam("liac", 10, 100.0)
    lifted = water_pose(0.0)
    lifted[2, 3] = -10.0                     # end face 10 mm above the water, bolus fills it
    with_bolus = compute_electron_dose(water, lifted, beam, grid_mm=1.0, bolus_mm=10.0)
    air_gap = compute_electron_dose(water, lifted, beam, grid_mm=1.0)
    depth, dose = cax_curve(with_bolus)
    depth_gap, dose_gap = cax_curve(air_gap)
    # cax_curve gives water depths (patient z), from the water surface
    r50_bolus = analyse_depth_dose(depth, dose).r50_mm
    r50_gap = analyse_depth_dose(depth_gap, dose_gap).r50_mm
    assert r50_bolus == pytest.approx(LIAC_PUBLISHED[10][1] - 10.0, abs=1.0)
    assert r50_gap == pytest.approx(LIAC_PUBLISHED[10][1], abs=1.0)


def test_numba_and_numpy_backends_give_the_same_dose():
    ct = slab_phantom(1000.0, top_mm=6.0, thickness_mm=5.0)
    pose = water_pose(15.0)
    pose[:3, 3] = [3.0, -2.0, 0.0]
    beam = ElectronBeam("liac", 8, 40.0, 15.0)
    disc = ShieldingDisc("steel", 50.0, 2.0, 20.0)
    for fast in (True, False):
        a = compute_electron_dose(ct, pose, beam, disc=disc, fast=fast).dose.array
        b = compute_electron_dose(ct, pose, beam, disc=disc, fast=fast, backend="numpy").dose.array
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(a.max()))


def test_beam_leaving_the_ct_is_reported(caplog):
    shallow = water_phantom(half_width_mm=90.0, depth_mm=15.0, spacing_mm=2.0)
    with caplog.at_level("WARNING", logger="models.dose.electron"):
        result = compute_electron_dose(shallow, water_pose(0.0), ElectronBeam("liac", 12, 100))
    assert result.outside_ct_percent > 10.0
    assert "outside the CT" in caplog.text


@pytest.mark.parametrize("rho", [1.0, 0.3, 1.6])
def test_fermi_eyges_along_a_uniform_path_obeys_density_scaling(rho):
    # Fermi-Eyges in a medium of relative density rho: sigma(z) = sigma_water(rho z) / rho
    from models.dose.scattering import fermi_eyges_along_path, fermi_eyges_sigma_mm

    model = electron_model(ElectronBeam("liac", 12, 100.0))
    e = model.energy
    h = 0.5
    z = np.arange(0.0, 40.0 / rho, h)
    n_seg = z.size - 1
    seg_wet = np.full((n_seg, 1), rho * h)
    seg_mid = (z[:-1] + 0.5 * h)[:, None]
    zeff = (rho * z)[:, None]
    sigma = fermi_eyges_along_path(z, seg_wet, seg_mid, zeff, model.depth_mm,
                                   model.scatter_power_per_mm, e.points.r50_mm)[:, 0]
    fine = np.arange(0.0, 40.0, 0.01)
    fitted = model.machine.commissioned_beam(model.beam)     # its multiple-scattering scale
    scale = fitted.sigma_scale if fitted is not None else 1.0
    water = fermi_eyges_sigma_mm(fine, e.mean_energy_mev, e.points.rp_mm,
                                 model.machine.spread.scattering_energy_mev * scale)
    expected = np.interp(rho * z, fine, water) / rho
    check = (rho * z > 5.0) & (rho * z < e.points.r50_mm)
    np.testing.assert_allclose(sigma[check], expected[check], rtol=0.02)


def _penumbra_mm(result, z_mm: float) -> float:
    """80-20 % lateral penumbra along x at depth z (mm from the applicator plane)."""
    x = np.arange(0.0, 60.0, 0.1)
    profile = result.dose.sample(np.stack([x, 0.0 * x, np.full_like(x, z_mm)], axis=1))
    profile = profile / profile[0]
    return float(np.interp(-0.2, -profile, x) - np.interp(-0.8, -profile, x))


def test_lung_widens_the_penumbra_below_it(water):
    beam = ElectronBeam("liac", 12, 60.0)
    in_water = compute_electron_dose(water, water_pose(0.0), beam, grid_mm=1.0)
    lung = slab_phantom(-700.0, top_mm=5.0, thickness_mm=20.0)
    below_lung = compute_electron_dose(lung, water_pose(0.0), beam, grid_mm=1.0)
    # same water depth (20 mm): 20 mm in water, 20 + 20 (1 - 0.3) = 34 mm below the lung
    assert _penumbra_mm(below_lung, 34.0) > 1.3 * _penumbra_mm(in_water, 20.0)


def test_excess_beside_bone_ranges_out_with_the_bone_columns_depth():
    """The fluence in excess of 1 beside a bone stripe gets the depth dose of the bone
    columns (deeper in water, in the fall-off); the deficit and uniform columns keep F."""
    model = electron_model(ElectronBeam("liac", 12, 100.0))
    n = 21
    s_seg = np.ones((1, 1, n))
    s_seg[..., n // 2:] = 2.4                          # bone on the right half
    depth = np.where(s_seg[0] > 1.0, 45.0, 30.0)[None].repeat(2, axis=0)
    depth[0] = 0.0
    fluence = np.ones((2, 1, n))
    fluence[1, 0, n // 2 - 1] = 1.1                    # beside the edge, water side
    fluence[1, 0, n // 2] = 0.9                        # under the bone
    out = _range_out_excess(fluence, depth, s_seg, model, 1.0)
    g = lookup_uniform(np.array([30.0, 45.0]), model.depth_mm, model.dose_fraction)
    assert out[1, 0, n // 2 - 1] == pytest.approx(1.0 + 0.1 * g[1] / g[0])
    assert g[1] < 0.8 * g[0]
    assert out[1, 0, n // 2] == pytest.approx(0.9)
    np.testing.assert_array_equal(np.delete(out[1, 0], [n // 2 - 1, n // 2]), 1.0)


@pytest.mark.xfail(strict=True, reason="known limit (docs/dose.md, heterogeneity): over an "
                   "oblique entrance the bone-edge redistribution, once on, redistributes "
                   "the whole field")
def test_a_bone_chip_does_not_change_the_dose_far_from_it_under_a_bevel():
    """A 10 mm bone cube 30 mm off the axis of a 100 mm 45 deg beam whose face lies on
    the water (the commissioning pose) may change the dose near it, not 40 mm away and
    beyond: there, in water, the dose must stay the commissioned one (within 1 % of the
    maximum). Today the cube turns the redistribution on for the whole field and the far
    dose moves by ~6 % of the maximum."""
    ct = water_phantom(half_width_mm=100.0, depth_mm=110.0, spacing_mm=2.0)
    beam = ElectronBeam("liac", 12, 100.0, 45.0)
    pose = water_pose(45.0)
    plain = compute_electron_dose(ct, pose, beam, grid_mm=2.0).dose

    def patient_points(volume):
        ijk = np.indices(volume.shape[::-1]).reshape(3, -1).T.astype(np.float64)
        return ijk, volume.voxel_to_patient(ijk)

    ijk, p = patient_points(ct)
    chip = (np.abs(p[:, 0] - 30.0) < 5.0) & (np.abs(p[:, 1]) < 5.0) & \
        (np.abs(p[:, 2] - 30.0) < 5.0)
    array = ct.array.copy()
    i, j, k = ijk[chip].astype(int).T
    array[k, j, i] = 1000.0
    with_chip = compute_electron_dose(ct.with_array(array), pose, beam, grid_mm=2.0).dose
    ijk_d, q = patient_points(plain)
    i, j, k = ijk_d.astype(int).T
    a = plain.array[k, j, i].astype(np.float64)
    b = with_chip.array[k, j, i].astype(np.float64)
    far = (np.hypot(q[:, 0] - 30.0, q[:, 1]) > 40.0) & (a > 0.2 * a.max())
    assert far.sum() > 1000
    assert np.abs(b - a)[far].max() < 0.01 * a.max()
