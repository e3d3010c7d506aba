"""``iort dose``: depth-curve JSON contract, one-line errors, case -> RT Plan + RT Dose."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from guidance.cli.main import main


def test_depth_curve_json_has_exactly_the_issue_keys(capsys):
    assert main(["dose", "depth-curve", "--machine", "liac", "--energy", "12",
                 "--applicator", "100", "--grid", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"R90_mm", "R50_mm", "Rp_mm", "surface_percent", "depth_mm",
                        "dose_percent"}
    assert out["R50_mm"] == pytest.approx(43.2, abs=1.0)
    assert len(out["depth_mm"]) == len(out["dose_percent"]) > 50
    assert max(out["dose_percent"]) == pytest.approx(100.0, abs=1e-6)


def test_depth_curve_table_for_a_bevel(capsys):
    assert main(["dose", "depth-curve", "--machine", "mobetron", "--energy", "9",
                 "--applicator", "50", "--bevel", "30", "--grid", "2"]) == 0
    assert "R90" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["--machine", "linac", "--energy", "12", "--applicator", "100"], "liac, mobetron"),
    (["--machine", "liac", "--energy", "7", "--applicator", "100"], "6, 8, 10, 12 MeV"),
    (["--machine", "liac", "--energy", "12", "--applicator", "33"], "30, 40, 50"),
    (["--machine", "liac", "--energy", "12", "--applicator", "100", "--bevel", "20"],
     "0, 15, 30, 45 deg"),
    (["--machine", "liac", "--energy", "nan", "--applicator", "100"], "6, 8, 10, 12 MeV"),
])
def test_bad_choices_exit_2_with_one_line(capsys, argv, message):
    assert main(["dose", "depth-curve", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory, coarse_phantom):
    from models.patient.case_store import save_case
    from models.patient.phantom import planned_patient_from_applicator

    case = coarse_phantom
    root = tmp_path_factory.mktemp("dose_case")
    folder = save_case(case, root / "case")
    pose_file = root / "pose.json"
    pose_file.write_text(json.dumps(
        {"patient_from_applicator": planned_patient_from_applicator(case).tolist()}))
    return folder, pose_file


def test_case_writes_rtplan_and_rtdose_and_prints_coverage(case_dir, tmp_path, capsys):
    folder, pose_file = case_dir
    out = tmp_path / "out"
    assert main(["dose", "case", str(folder), "--energy", "12", "--applicator", "100",
                 "--pose", str(pose_file), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["target_v90_percent"] > 90.0
    dose = pydicom.dcmread(out / "rtdose.dcm")
    plan = pydicom.dcmread(out / "rtplan.dcm")
    assert dose.Modality == "RTDOSE" and plan.Modality == "RTPLAN"
    assert (dose.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == plan.SOPInstanceUID)
    grid = dose.pixel_array * float(dose.DoseGridScaling)
    assert np.max(grid) == pytest.approx(summary["dmax_gy"], rel=0.1)


def test_case_needs_a_pose_for_a_case_folder(case_dir, tmp_path, capsys):
    folder, _ = case_dir
    assert main(["dose", "case", str(folder), "--energy", "12", "--applicator", "100",
                 "--out", str(tmp_path)]) == 2
    assert "--pose" in capsys.readouterr().err


def test_bad_pose_file_is_one_line(case_dir, tmp_path, capsys):
    folder, _ = case_dir
    bad = tmp_path / "pose.json"
    bad.write_text(json.dumps([[1, 0, 0], [0, 1, 0]]))
    assert main(["dose", "case", str(folder), "--energy", "12", "--applicator", "100",
                 "--pose", str(bad), "--out", str(tmp_path)]) == 2
    assert "4x4" in capsys.readouterr().err


def test_estimated_output_factor_blocks_mu_until_accepted(case_dir, tmp_path, capsys):
    """Mobetron's output factors are model estimates: no RT Plan with their MU unless the
    user accepts it, and then the plan says so."""
    folder, pose_file = case_dir
    args = ["dose", "case", str(folder), "--machine", "mobetron", "--energy", "12",
            "--applicator", "100", "--pose", str(pose_file), "--json"]
    refused = tmp_path / "refused"
    assert main([*args, "--out", str(refused)]) == 2
    err = capsys.readouterr().err
    assert "estimate" in err and "--accept-estimated-mu" in err and "mobetron" in err
    assert not refused.exists() or not any(refused.iterdir())   # nothing written
    accepted = tmp_path / "accepted"
    assert main([*args, "--out", str(accepted), "--accept-estimated-mu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["mu_estimated"] is True
    assert pydicom.dcmread(accepted / "rtplan.dcm").RTPlanLabel == "ESTIMATED MU"


def test_measured_output_factor_is_not_flagged(case_dir, tmp_path, capsys):
    folder, pose_file = case_dir
    assert main(["dose", "case", str(folder), "--machine", "liac", "--energy", "12",
                 "--applicator", "100", "--pose", str(pose_file), "--json",
                 "--out", str(tmp_path / "o")]) == 0
    assert json.loads(capsys.readouterr().out)["mu_estimated"] is False
    assert pydicom.dcmread(tmp_path / "o" / "rtplan.dcm").RTPlanLabel == "IORT"


def test_a_target_without_voxels_cannot_be_dosed(coarse_phantom, tmp_path, capsys):
    """An empty CTV used to give "target_v90_percent": NaN with exit code 0."""
    import copy

    from models.patient.case import Structure
    from models.patient.case_store import save_case
    from models.patient.phantom import planned_patient_from_applicator

    case = copy.copy(coarse_phantom)
    case.structures = dict(coarse_phantom.structures)
    ctv = coarse_phantom.structures["CTV"]
    case.structures["CTV"] = Structure("CTV", np.zeros_like(ctv.mask), ctv.color_rgb,
                                       ctv.roi_type)
    folder = save_case(case, tmp_path / "case")
    pose = tmp_path / "pose.json"
    pose.write_text(json.dumps(planned_patient_from_applicator(coarse_phantom).tolist()))
    assert main(["dose", "case", str(folder), "--energy", "12", "--applicator", "100",
                 "--pose", str(pose), "--out", str(tmp_path / "out"), "--json"]) == 2
    err = capsys.readouterr().err
    assert "--target 'CTV' encloses no voxel" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_write_plan_is_read_back_by_run_and_export(case_dir, tmp_path, capsys):
    """Issue 13 item 16: ``dose case --write-plan`` writes the one plan format; run's and
    export's readers get the same pose and beam back."""
    from guidance.cli.commands.export import _read_plan_file
    from guidance.cli.commands.run import _plan, _planned_beam
    from guidance.cli.main import build_parser
    from models.dicom.rt_export import resolve_plan
    from models.patient.case_store import load_case

    folder, pose_file = case_dir
    pose = np.asarray(json.loads(pose_file.read_text())["patient_from_applicator"])
    pose[:3, 3] += (3.0, -2.0, 1.5)           # not the phantom's planned pose
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps(pose.tolist()))
    plan_file = tmp_path / "plans" / "plan.json"
    assert main(["dose", "case", str(folder), "--machine", "mobetron", "--energy", "9",
                 "--applicator", "60", "--bevel", "15", "--prescription", "12",
                 "--pose", str(moved), "--out", str(tmp_path / "out"), "--json",
                 "--accept-estimated-mu", "--write-plan", str(plan_file)]) == 0
    assert json.loads(capsys.readouterr().out)["plan_file"] == str(plan_file)
    case = load_case(folder)
    parser = build_parser()
    run_args = parser.parse_args(["run", str(folder), "--plan", str(plan_file)])
    run_pose = _plan(run_args, case)
    np.testing.assert_allclose(run_pose, pose, atol=1e-9)
    planned = _planned_beam(run_args, case, run_pose)
    assert planned.machine == "mobetron"
    assert (planned.beam.energy_mev, planned.beam.applicator_diameter_mm,
            planned.beam.bevel_deg, planned.beam.prescription_gy) == (9.0, 60.0, 15.0, 12.0)
    spec = resolve_plan(case, plan_file=_read_plan_file(plan_file))
    np.testing.assert_allclose(spec.patient_from_applicator, pose, atol=1e-9)
    assert (spec.machine, spec.energy_mev, spec.applicator_diameter_mm, spec.bevel_deg,
            spec.prescription_gy, spec.mu) == ("mobetron", 9.0, 60.0, 15.0, 12.0, None)
    assert main(["dose", "case", str(folder), "--machine", "mobetron", "--energy", "9",
                 "--applicator", "60", "--pose", str(moved), "--out", str(tmp_path / "o2"),
                 "--write-plan", str(tmp_path / "plan.txt")]) == 2
    assert "--write-plan" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()               # refused before anything is made


def test_dose_case_kv_applicator(capsys, tmp_path) -> None:
    """Issue 13 item 13: the kV spherical applicator from the command line."""
    from models.dose.materials import read_beam_asset

    out = tmp_path / "out"
    assert main(["dose", "case", "phantom", "--kv-applicator", "30", "--prescription", "20",
                 "--json", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    catalogue = read_beam_asset("kv_spherical.json")
    rate = next(a["surface_dose_rate_gy_per_min"] for a in catalogue["applicators"]
                if a["diameter_mm"] == 30)
    assert summary["kv_applicator_mm"] == 30.0 and summary["surface_dose_gy"] == 20.0
    assert summary["treatment_time_min"] == pytest.approx(20.0 / rate, abs=0.01)
    assert summary["organs"]["PANCREAS"]["dmax_gy"] <= 20.0 + 1e-6
    assert not out.exists()                           # no RT export for kV
    for argv, message in [(["--kv-applicator", "31"], "choose one of: 15, 20"),
                          (["--kv-applicator", "30", "--energy", "8"], "leave out --energy"),
                          ([], "--energy and --applicator are required")]:
        assert main(["dose", "case", "phantom", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
