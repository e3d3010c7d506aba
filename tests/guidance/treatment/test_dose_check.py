"""Dose acceptance: coverage, organ limits, hot spot, estimated MU; limits as data."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from guidance.treatment.dose_check import PlanLimits, check_dose, load_plan_limits
from guidance.treatment.plan_check import Light
from models.base.errors import InputError


def _target(v90: float, d90: float) -> SimpleNamespace:
    return SimpleNamespace(v90_percent=v90, d90_gy=d90, dmax_gy=11.0)


def _organ(dmax: float) -> SimpleNamespace:
    return SimpleNamespace(dmax_gy=dmax)


LIMITS = load_plan_limits()


def _check(metrics, dose_max_gy: float = 11.1, **kw):
    return check_dose(metrics, target="CTV", prescription_gy=10.0, dose_max_gy=dose_max_gy,
                      limits=LIMITS, **kw)


def test_shipped_limits_are_labelled_published_defaults() -> None:
    assert "PUBLISHED DEFAULTS" in LIMITS.provenance and "TG-101" in LIMITS.provenance
    assert LIMITS.v90_green_percent == 95.0 and LIMITS.organ("STOMACH").dmax_gy == 12.4


@pytest.mark.parametrize(("v90", "d90", "light"), [
    (100.0, 10.2, Light.GREEN), (95.0, 10.0, Light.GREEN), (93.0, 10.2, Light.YELLOW),
    (97.0, 9.5, Light.YELLOW), (80.8, 0.0, Light.RED), (99.0, 8.0, Light.RED)])
def test_target_coverage_grades_the_light(v90, d90, light) -> None:
    check = _check({"CTV": _target(v90, d90)})
    assert check.light is light
    assert (light is Light.GREEN) == (check.reasons == ())


def test_bevel_30_coverage_names_its_numbers() -> None:
    check = _check({"CTV": _target(80.8, 0.0)})
    assert check.reasons == ("CTV V90 80.8 % (need >= 95 %)", "CTV D90 0.00 Gy (need >= 10.00 Gy)")


def test_organ_over_its_limit_is_red_and_unlisted_organs_are_not_judged() -> None:
    metrics = {"CTV": _target(100.0, 10.2), "STOMACH": _organ(13.0), "LIVER": _organ(40.0)}
    check = _check(metrics)
    assert check.light is Light.RED
    assert check.reasons == ("STOMACH Dmax 13.0 Gy over limit 12.4 Gy",)
    assert _check({"CTV": _target(100.0, 10.2), "STOMACH": _organ(12.3)}).ok


def test_hot_spot_and_estimated_mu() -> None:
    good = {"CTV": _target(100.0, 10.2)}
    assert _check(good, dose_max_gy=11.5).ok            # the beam's own 111-115 %
    amber = _check(good, dose_max_gy=12.5, disc="lead")
    assert amber.light is Light.YELLOW and "lead disc" in amber.reasons[0]
    assert _check(good, dose_max_gy=15.6).light is Light.RED  # 156 % of Rx
    # the organ where it is, named (issue 13 item 13: lead, pancreas at 156 % of Rx)
    lead = _check({**good, "PANCREAS": _organ(15.6), "BOWEL": _organ(12.8)},
                  dose_max_gy=15.6, disc="lead")
    assert lead.light is Light.RED
    assert lead.reasons == ("hot spot 156.0 % of Rx in PANCREAS (Dmax 156 %) (limit 120 %) "
                            "(lead disc backscatter?)",)
    mu = _check(good, mu_estimated=True)
    assert mu.light is Light.YELLOW and mu.reasons == ("MU ESTIMATED: output factor not measured",)


def test_plan_overrides_limits_and_bad_files_name_themselves(tmp_path) -> None:
    limits = LIMITS.with_overrides({"organs": {"PANCREAS": {"dmax_gy": 11.0}},
                                    "target": {"v90_green_percent": 98}}, what="plan")
    assert limits.organ("PANCREAS").dmax_gy == 11.0 and limits.organ("STOMACH") is not None
    assert limits.v90_green_percent == 98.0
    bad = tmp_path / "limits.json"
    bad.write_text(json.dumps({"organs": {"BOWEL": {"dose": 3}}}))
    with pytest.raises(InputError, match=r"limits\.json.*BOWEL.*dmax_gy"):
        load_plan_limits(bad)
    with pytest.raises(InputError, match="v90_red_percent"):
        PlanLimits(v90_red_percent=99.0, v90_green_percent=95.0)


# --- found by the fuzzer (tests/fuzz/test_fuzz_json.py) -----------------------------------

@pytest.mark.parametrize("edit, match", [
    ({"target": True}, "target must be a JSON object"),
    ({"target": {"v90_green_percent": True}}, "v90_green_percent must be a number"),
    ({"target": {"v90_green_percent": "95"}}, "v90_green_percent must be a number"),
    ({"hot_spot": {"red_percent_of_rx": 1e308}}, "red_percent_of_rx must be a number"),
    ({"organs": {"BOWEL": {"dmax_gy": -1}}}, "dmax_gy must be a number"),
    ({"organs": {"BOWEL": {"dmax_gy": 0}}}, "dmax_gy must be above 0"),
    ({"organs": []}, "organs must be a JSON object"),
    ({"target": {"v90_green_percent": 1.0}}, "v90_red_percent .* not above"),
])
def test_a_wrong_limits_file_is_refused_naming_it(tmp_path, edit, match) -> None:
    """true, "95" and 1e308 used to be float()-converted; a list section raised
    AttributeError; an order error did not name the file."""
    from assets import asset_path

    data = json.loads(asset_path("plan_limits.json").read_text())
    data.update(edit)
    path = tmp_path / "limits.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=match) as info:
        load_plan_limits(path)
    assert "limits.json" in str(info.value)
