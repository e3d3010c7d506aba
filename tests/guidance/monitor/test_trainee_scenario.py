"""Trainee scenarios: the shipped files load, differ clinically and are solvable."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from guidance.monitor.rehearsal import phantom_view
from guidance.monitor.trainee_scenario import (
    load_scenario,
    scenario_case,
    scenario_names,
    tilt_toward,
)
from guidance.treatment.dose_check import check_dose
from guidance.treatment.dose_service import (
    HIDDEN_ROI_TYPES,
    electron_dose_function,
    evaluate_dose,
)
from models.base.errors import InputError
from models.base.transforms import angle_between_vectors_deg
from models.evaluation.dvh import structure_bounds_mm
from models.patient.phantom import planned_patient_from_applicator

SHIPPED = ("pancreas_bed_8mev", "pelvic_sidewall_bevel30", "sarcoma_lead_disc",
           "shallow_bed_bolus")


@pytest.fixture(scope="module")
def world():
    scenarios = [load_scenario(n) for n in scenario_names()]
    case = scenario_case(phantom_view().case, scenarios)
    bounds = {n: structure_bounds_mm(case.ct, s.mask) for n, s in case.structures.items()
              if s.roi_type not in HIDDEN_ROI_TYPES}
    return case, bounds


def _metrics(case, bounds, scenario, pose, beam):
    result = electron_dose_function()(
        case, pose, beam)
    dvhs, _ = evaluate_dose(case, result.dose, beam, bounds)
    metrics = {n: d.metrics for n, d in dvhs.items()}
    check = check_dose(metrics, target=scenario.target_name,
                       prescription_gy=beam.prescription_gy,
                       dose_max_gy=float(result.dose.array.max()), limits=scenario.limits(),
                       disc=beam.disc)
    return metrics, check


def test_four_clinically_different_scenarios_ship() -> None:
    assert set(SHIPPED) <= set(scenario_names())
    beams = {n: load_scenario(n).beam() for n in SHIPPED}
    assert beams["pancreas_bed_8mev"].energy_mev == 8.0
    assert beams["pancreas_bed_8mev"].bevel_deg == 0.0
    assert beams["pelvic_sidewall_bevel30"].bevel_deg == 30.0
    assert beams["sarcoma_lead_disc"].disc == "lead"
    assert beams["shallow_bed_bolus"].bolus_mm > 0.0
    assert len({b.key for b in beams.values()}) == 4


@pytest.mark.parametrize("name", SHIPPED)
def test_the_intended_plan_covers_the_target(world, name) -> None:
    """Solvable on the phantom: the target V90 >= 95 % and no organ over its limit at
    the scenario's intended plan (electron engine)."""
    case, bounds = world
    scenario = load_scenario(name)
    metrics, check = _metrics(case, bounds, scenario, scenario.plan(case), scenario.beam())
    assert metrics[scenario.target_name].v90_percent >= 95.0
    assert not [r for r in check.reasons if "over limit" in r], check.reasons


def test_the_shallow_bed_needs_its_bolus(world) -> None:
    """Without the bolus (applicator on the bed) the pancreas under it is over its limit."""
    case, bounds = world
    scenario = load_scenario("shallow_bed_bolus")
    beam = replace(scenario.beam(), bolus_mm=0.0)
    metrics, check = _metrics(case, bounds, scenario, planned_patient_from_applicator(case),
                              beam)
    assert metrics["PANCREAS"].v90_percent > 10.0
    assert any(r.startswith("PANCREAS V90") for r in check.reasons)


def test_plan_geometry_follows_the_file() -> None:
    base = planned_patient_from_applicator()
    bevel = load_scenario("pelvic_sidewall_bevel30")
    assert angle_between_vectors_deg(bevel.plan()[:3, 2], base[:3, 2]) == pytest.approx(30.0)
    shallow = load_scenario("shallow_bed_bolus")
    # the applicator sits on the bolus: 5 mm back along the beam axis
    np.testing.assert_allclose(shallow.plan()[:3, 3], base[:3, 3] - 5.0 * base[:3, 2],
                               atol=1e-9)
    start = load_scenario("pancreas_bed_8mev").start_pose()
    assert angle_between_vectors_deg(start[:3, 2], base[:3, 2]) == pytest.approx(6.0)


def test_tilt_toward_turns_the_beam_axis_to_the_direction() -> None:
    pose = np.eye(4)   # beam along +z
    tilted = tilt_toward(pose, np.array([1.0, 0.0, 0.0]), 10.0)
    assert tilted[0, 2] == pytest.approx(np.sin(np.radians(10.0)))
    np.testing.assert_allclose(tilted[:3, 3], 0.0)


def test_a_bad_name_lists_the_available_scenarios() -> None:
    with pytest.raises(InputError, match=r"available: .*pancreas_bed_8mev"):
        load_scenario("liver_bed")


def test_a_bad_field_names_the_file_and_field(tmp_path) -> None:
    data = json.loads(json.dumps(load_scenario("pancreas_bed_8mev").spec.model_dump()))
    data["beam"]["bevel_deg"] = 70
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"mine.json: field beam.bevel_deg"):
        load_scenario(path)
    data["beam"]["bevel_deg"] = 0
    data["faults"] = [{"t_s": 3, "kind": "earthquake"}]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"faults\[0\].kind"):
        load_scenario(path)
