"""Monte Carlo second check on the coarse phantom: a wrong pencil-beam energy is caught."""

from __future__ import annotations

import json

import pytest

from guidance.treatment.dose_service import BeamChoice
from guidance.treatment.mc_check import McCheckThresholds, compare_doses
from models.beams.library import ElectronBeam
from models.dose.montecarlo.engine import ompmc_available

pytestmark = pytest.mark.skipif(not ompmc_available(), reason="ompmc not installed")

GRID_MM = 4.0      # coarse voxels: few histories give a usable Monte Carlo


@pytest.fixture(scope="module")
def plan_and_mc(coarse_phantom):
    from models.dicom.rt_export import resolve_plan
    from models.dose.montecarlo.engine import McOptions, compute_mc_dose

    spec = resolve_plan(coarse_phantom)
    mc = compute_mc_dose(coarse_phantom.ct, spec.patient_from_applicator, spec.beam,
                         prescription_gy=spec.prescription_gy,
                         isodose_percent=spec.isodose_percent,
                         options=McOptions(grid_mm=GRID_MM, histories=40_000))
    return spec, mc


def _pb(case, spec, energy):
    from models.dose.electron import compute_electron_dose

    beam = ElectronBeam(spec.machine, energy, spec.applicator_diameter_mm, spec.bevel_deg)
    return compute_electron_dose(case.ct, spec.patient_from_applicator, beam,
                                 prescription_gy=spec.prescription_gy, grid_mm=GRID_MM,
                                 isodose_percent=spec.isodose_percent)


def test_wrong_energy_is_caught_and_right_energy_is_not(coarse_phantom, plan_and_mc):
    spec, mc = plan_and_mc
    choice = BeamChoice(energy_mev=spec.energy_mev,
                        applicator_diameter_mm=spec.applicator_diameter_mm,
                        bevel_deg=spec.bevel_deg, prescription_gy=spec.prescription_gy)
    right = compare_doses(coarse_phantom, _pb(coarse_phantom, spec, spec.energy_mev), mc,
                          choice, target="CTV")
    wrong = compare_doses(coarse_phantom, _pb(coarse_phantom, spec, 6.0), mc, choice,
                          target="CTV")
    assert spec.energy_mev == 8.0
    assert wrong.verdict == "disagree"
    assert any("gamma 3%/2mm" in r for r in wrong.reasons)
    # the right energy agrees far better on every measure the verdict uses
    assert right.gamma_3_2_percent > wrong.gamma_3_2_percent + 10.0
    assert abs(right.mc_d90_gy - right.pb_d90_gy) < abs(wrong.mc_d90_gy - wrong.pb_d90_gy)
    # few histories: the noisy Monte Carlo is not conclusive, but the D90 rule passes
    limit = McCheckThresholds().d90_max_percent
    assert abs(right.mc_d90_gy - right.pb_d90_gy) / spec.prescription_gy * 100 <= limit
    assert json.loads(json.dumps(right.as_json()))["target"] == "CTV"


def test_cli_mc_check_writes_rtdose_and_json(tmp_path, capsys):
    from guidance.cli.main import main
    from models.dicom.rtdose import read_rtdose

    code = main(["dose", "mc-check", "phantom", "--histories", "40000", "--grid", "4",
                 "--pencil-beam-energy", "6", "--out", str(tmp_path), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "disagree" and out["beam"]["energy_mev"] == 6.0
    assert out["mc_beam"]["energy_mev"] == 8.0
    dose = read_rtdose(tmp_path / "rtdose_mc.dcm")
    assert dose.dose.array.max() > 0
    assert (tmp_path / "mc_check.json").is_file()


def test_cli_mc_check_needs_a_plan_for_a_case(tmp_path):
    from guidance.cli.main import main

    assert main(["dose", "mc-check", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
