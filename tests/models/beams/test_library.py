"""Beam library: shipped machines, catalogue checks, file errors."""

from __future__ import annotations

import json

import pytest

from models.base.errors import InputError
from models.beams.library import BeamLibrary, ElectronBeam, default_library


def test_shipped_machines_and_catalogues():
    lib = default_library()
    assert lib.machines == ("liac", "mobetron")
    liac = lib.machine("liac")
    assert liac.energies_mev == (6.0, 8.0, 10.0, 12.0)
    assert liac.bevels_deg == (0.0, 15.0, 30.0, 45.0)
    assert min(liac.applicator_diameters_mm) == 30.0
    assert max(liac.applicator_diameters_mm) >= 120.0
    mob = lib.machine("mobetron")
    assert mob.energies_mev == (6.0, 9.0, 12.0)
    assert mob.bevels_deg == (0.0, 15.0, 30.0)
    assert "R50" in liac.provenance and "relations" in mob.provenance


@pytest.mark.parametrize("energy", [6.0, 9.0, 12.0])
def test_mobetron_points_follow_the_standard_relations(energy):
    points = default_library().machine("mobetron").energy(energy).points
    assert points.r50_mm == pytest.approx(10.0 * energy / 2.33, abs=0.01)   # E0 = 2.33 R50
    assert points.rp_mm == pytest.approx(5.0 * energy, abs=0.01)            # Rp = E0 / 2 cm
    assert points.r90_mm == pytest.approx(10.0 * energy / 3.2, abs=0.01)    # R90 = E / 3.2 cm


@pytest.mark.parametrize(("beam", "listed"), [
    (ElectronBeam("linac", 12, 100), "liac, mobetron"),
    (ElectronBeam("liac", 9, 100), "6, 8, 10, 12 MeV"),
    (ElectronBeam("liac", 12, 35), "30, 40, 50"),
    (ElectronBeam("mobetron", 12, 50, 45), "0, 15, 30 deg"),
    (ElectronBeam("liac", float("nan"), 100), "6, 8, 10, 12 MeV"),
])
def test_unknown_choices_name_the_valid_ones(beam, listed):
    with pytest.raises(InputError, match=listed):
        default_library().validate(beam)


def _write_machine(directory, **overrides):
    raw = json.loads((default_library().directory / "liac.json").read_text())
    raw.update(overrides)
    (directory / "test.json").write_text(json.dumps(raw))


def test_measured_table_is_used_and_analysed(tmp_path):
    depth = [0, 5, 10, 15, 20, 25, 30, 35, 40]
    dose = [90, 98, 100, 95, 70, 35, 8, 1, 1]
    _write_machine(tmp_path, machine="table", energies_mev=[6],
                   depth_dose={"6": {"depth_mm": depth, "dose_percent": dose}})
    data = BeamLibrary(tmp_path).machine("table").energy(6)
    assert list(data.depth_mm) == depth
    assert 15.0 < data.points.r90_mm < 20.0
    assert 20.0 < data.points.r50_mm < 25.0


def test_missing_field_names_file_and_field(tmp_path):
    raw = json.loads((default_library().directory / "liac.json").read_text())
    del raw["virtual_source_distance_mm"]
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match=r"bad\.json.*virtual_source_distance_mm"):
        BeamLibrary(tmp_path)


def test_energy_without_depth_dose_is_refused(tmp_path):
    _write_machine(tmp_path, energies_mev=[6, 7])
    with pytest.raises(InputError, match="no entry '7'"):
        BeamLibrary(tmp_path)


def test_broken_json_is_reported(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InputError, match=r"broken\.json"):
        BeamLibrary(tmp_path)


def test_directory_without_machines_is_refused(tmp_path):
    (tmp_path / "materials.json").write_text("{}")
    with pytest.raises(InputError, match="no machine beam data"):
        BeamLibrary(tmp_path)


# --- the machine-file schema: every number has a unit and a range -----------------------

_BAD_VALUES = ["NaN", [], -1.0, 0.0, 1e308, True, "12"]


@pytest.mark.parametrize("value", _BAD_VALUES)
def test_absurd_reference_output_is_refused_naming_file_and_field(tmp_path, value):
    raw = json.loads((default_library().directory / "liac.json").read_text())
    raw["reference_output_cgy_per_mu"] = value
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match=r"bad\.json: field reference_output_cgy_per_mu "
                                         r"\(.*cGy/MU.*\): ") as info:
        BeamLibrary(tmp_path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("where", [
    ("virtual_source_distance_mm",), ("reference_applicator_mm",),
    ("lateral_spread", "sigma0_mm"), ("lateral_spread", "sigma_theta_rad"),
    ("lateral_spread", "scattering_energy_mev"), ("energies_mev", 0),
    ("applicator_diameters_mm", 1), ("bevels_deg", 2),
    ("output_factors", "table", 0, "factor")])
def test_every_number_of_a_machine_file_is_range_checked(tmp_path, where):
    refused = 0
    bad = [v for v in _BAD_VALUES if not (where[0] == "bevels_deg" and v == 0.0)]  # flat end
    for value in bad:
        raw = json.loads((default_library().directory / "liac.json").read_text())
        node = raw
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = value
        (tmp_path / "bad.json").write_text(json.dumps(raw))
        name = ".".join(str(k) for k in where[:1])
        with pytest.raises(InputError, match=rf"bad\.json: field {name}"):
            BeamLibrary(tmp_path)
        refused += 1
    assert refused == len(bad)


def test_mutated_machine_files_are_refused_in_one_line_never_a_traceback(tmp_path):
    from tests.conftest import json_mutants

    raw = json.loads((default_library().directory / "liac.json").read_text())
    outcomes = {"accepted": 0, "refused": 0}
    for what, mutant in json_mutants(raw, 300, seed=17):
        (tmp_path / "m.json").write_text(json.dumps(mutant))
        try:
            BeamLibrary(tmp_path)
            outcomes["accepted"] += 1
        except InputError as exc:
            assert "\n" not in str(exc), what
            outcomes["refused"] += 1
    assert outcomes["refused"] >= 250, outcomes   # most damage is refused ...
    # ... and nothing else escapes (any other exception fails the test with its mutation)


@pytest.mark.parametrize(("key", "value"), [("diameter_mm", False), ("sigma0_mm", "NaN"),
                                            ("sigma_scale", -1), ("halo_fraction", 2.0)])
def test_commissioned_rows_are_range_checked(tmp_path, key, value):
    """A fitted beam row is physics: a boolean diameter, a 'NaN' string or a negative scale
    loaded silently before."""
    raw = json.loads((default_library().directory / "liac.json").read_text())
    raw["commissioned"]["beams"][1][key] = value
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match=rf"commissioned\.beams\[1\]\.{key}"):
        BeamLibrary(tmp_path)


def test_commissioned_fluence_must_not_be_negative(tmp_path):
    raw = json.loads((default_library().directory / "liac.json").read_text())
    raw["commissioned"]["beams"][1]["fluence"][0] = -1
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match=r"commissioned\.beams\[1\]\.fluence\[0\]"):
        BeamLibrary(tmp_path)


@pytest.mark.parametrize("key", ["energies_mev", "applicator_diameters_mm", "bevels_deg"])
def test_a_machine_file_listing_a_value_twice_is_refused(tmp_path, key) -> None:
    """Found by the fuzzer: a repeated energy was merged silently."""
    import json

    from assets import asset_path
    from models.beams.library import read_machine_file

    raw = json.loads(asset_path("beams", "mobetron.json").read_text())
    raw[key] = [*raw[key], raw[key][0]]
    path = tmp_path / "machine.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(InputError, match=rf"machine\.json: {key} lists a value twice"):
        read_machine_file(path)
