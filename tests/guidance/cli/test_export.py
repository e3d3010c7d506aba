"""``iort export`` and ``iort dose case`` on the command line: files, refusals, one RT reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from guidance.cli.main import main
from models.dicom.reader import read_case
from models.dicom.rtplan import read_rtplan
from models.dicom.writer import write_phantom
from models.patient.case_store import save_case
from models.patient.phantom import planned_patient_from_applicator

pytestmark = pytest.mark.slow  # phantom DICOM, import, dose, export


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory) -> Path:
    """The coarse phantom through the clinical path: DICOM -> import -> case folder."""
    root = tmp_path_factory.mktemp("export_cli")
    write_phantom(root / "dicom", spacing_mm=(3.0, 3.0, 4.0))
    return save_case(read_case(root / "dicom"), root / "case")


def test_cli_export_and_its_refusals(case_dir, tmp_path, capsys):
    assert main(["export", str(case_dir), "--out", str(tmp_path / "cli")]) == 0
    assert "RP.dcm" in capsys.readouterr().out
    # non-empty output folder
    assert main(["export", str(case_dir), "--out", str(tmp_path / "cli")]) == 2
    assert "not empty" in capsys.readouterr().err
    # not a case folder
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "not a case folder" in capsys.readouterr().err
    # a plan file with a pose and another energy
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps({"patient_from_applicator":
                                     planned_patient_from_applicator().tolist()}))
    assert main(["export", str(case_dir), "--out", str(tmp_path / "p"), "--plan",
                 str(plan_file), "--energy", "10"]) == 0
    assert read_rtplan(tmp_path / "p" / "RP.dcm").electron_plan().energy_mev == 10.0
    # an unknown energy is refused by the beam library with the valid choices
    assert main(["export", str(case_dir), "--out", str(tmp_path / "e"), "--energy", "9"]) == 2
    assert "choose one of" in capsys.readouterr().err


def test_dose_case_and_export_write_the_same_reference_point(case_dir, tmp_path, capsys):
    """One rule for the RT reference point: same pose and beam, same DoseReference."""
    pose_file = tmp_path / "pose.json"
    pose_file.write_text(json.dumps(
        {"patient_from_applicator": planned_patient_from_applicator().tolist()}))
    assert main(["export", str(case_dir), "--out", str(tmp_path / "export"), "--plan",
                 str(pose_file)]) == 0
    assert main(["dose", "case", str(case_dir), "--energy", "8", "--applicator", "70",
                 "--pose", str(pose_file), "--out", str(tmp_path / "dose")]) == 0
    capsys.readouterr()
    exported = pydicom.dcmread(tmp_path / "export" / "RP.dcm")
    dosed = pydicom.dcmread(tmp_path / "dose" / "rtplan.dcm")
    for ds in (exported, dosed):
        assert len(ds.DoseReferenceSequence) == 1
        assert (ds.FractionGroupSequence[0].ReferencedDoseReferenceSequence[0]
                .ReferencedDoseReferenceNumber == ds.DoseReferenceSequence[0]
                .DoseReferenceNumber)
    np.testing.assert_allclose(
        np.asarray(dosed.DoseReferenceSequence[0].DoseReferencePointCoordinates, float),
        np.asarray(exported.DoseReferenceSequence[0].DoseReferencePointCoordinates, float),
        atol=1e-6, rtol=0)
    assert (read_rtplan(dosed).electron_plan().prescription_gy
            == read_rtplan(exported).electron_plan().prescription_gy)


def test_anonymised_export_and_dose_agree_under_one_site_key(case_dir, tmp_path, capsys):
    """``export --anonymise`` and ``dose case --anonymise`` with one key: the same pseudonym
    and the same replaced Frame of Reference, owner-only files; a key readable by others
    is refused in one line."""
    key = tmp_path / "keys" / "site-key"
    pose_file = tmp_path / "pose.json"
    pose_file.write_text(json.dumps(
        {"patient_from_applicator": planned_patient_from_applicator().tolist()}))
    assert main(["export", str(case_dir), "--out", str(tmp_path / "anon"), "--anonymise",
                 "--with-ct", "--site-key", str(key), "--plan", str(pose_file)]) == 0
    assert "exported anonymised plan" in capsys.readouterr().out
    assert key.stat().st_mode & 0o777 == 0o600
    assert main(["dose", "case", str(case_dir), "--energy", "8", "--applicator", "70",
                 "--pose", str(pose_file), "--out", str(tmp_path / "dose"), "--anonymise",
                 "--site-key", str(key)]) == 0
    capsys.readouterr()
    exported = pydicom.dcmread(tmp_path / "anon" / "RS.dcm")
    dosed = pydicom.dcmread(tmp_path / "dose" / "rtdose.dcm", stop_before_pixels=True)
    assert dosed.PatientID == exported.PatientID and dosed.PatientID.startswith("ANON-")
    assert dosed.FrameOfReferenceUID == exported.FrameOfReferenceUID
    assert dosed.FrameOfReferenceUID.startswith("2.25.")
    for folder in (tmp_path / "anon", tmp_path / "dose"):
        assert folder.stat().st_mode & 0o777 == 0o700
        assert {p.stat().st_mode & 0o777 for p in folder.iterdir()} == {0o600}
    key.chmod(0o644)
    assert main(["export", str(case_dir), "--out", str(tmp_path / "again"), "--anonymise",
                 "--site-key", str(key)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "chmod 600" in err

def test_cli_exports_the_edited_anatomy_from_the_case_folder_or_a_session_log(
        case_dir, tmp_path, capsys):
    import shutil

    from guidance.record.session_log import SessionLog
    from models.patient.case_store import save_edits
    from models.patient.edits import EditList, Retraction, edit_to_json

    folder = tmp_path / "case"
    shutil.copytree(case_dir, folder)
    assert main(["export", str(folder), "--out", str(tmp_path / "none"), "--edited"]) == 2
    assert "no anatomy edits" in capsys.readouterr().err
    move = np.eye(4)
    move[:3, 3] = (12.0, -33.0, 0.0)
    edit = Retraction("BOWEL", move)
    save_edits(folder, EditList([edit]))
    assert main(["export", str(folder), "--out", str(tmp_path / "ed"), "--edited"]) == 0
    out = capsys.readouterr().out
    assert "edited CT slices (derived series)" in out and "1 edit(s)" in out
    slices = sorted((tmp_path / "ed").glob("CT_EDITED_*.dcm"))
    assert slices and "BOWEL moved 35 mm" in pydicom.dcmread(slices[0]).DerivationDescription
    # the same edits replayed from a session log (an undone one left out)
    log = tmp_path / "s.sqlite"
    with SessionLog.create(log) as s:
        s.log_anatomy_edit(edit_to_json(edit), description="BOWEL moved 35 mm, 0 deg")
        s.log_anatomy_edit(edit_to_json(Retraction("STOMACH", move)), description="x")
        s.log_anatomy_undo(edit_to_json(Retraction("STOMACH", move)), description="x")
    assert main(["export", str(case_dir), "--out", str(tmp_path / "log"), "--edits",
                 str(log)]) == 0
    assert "1 edit(s)" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"kind": "retraction", "structure": "BOWEL"}]))
    assert main(["export", str(case_dir), "--out", str(tmp_path / "bad"), "--edits",
                 str(bad)]) == 2
    err = capsys.readouterr().err
    assert "entry 0 is not a valid edit" in err and len(err.strip().splitlines()) == 1

def test_export_phantom_without_with_ct_passes_dciodvfy(tmp_path, capsys):
    """Issue 13 item 16: the phantom exports without --with-ct (its CT is written, it has no
    other DICOM), every object carries StudyDate/StudyTime, the machine name is the one
    given; dciodvfy (dicom3tools) reports no warning and no error."""
    import shutil
    import subprocess

    out = tmp_path / "rt"
    assert main(["export", "phantom", "--out", str(out), "--machine-name", "LIAC_OR3"]) == 0
    assert "CT slices" in capsys.readouterr().out
    plan = pydicom.dcmread(out / "RP.dcm")
    assert plan.BeamSequence[0].TreatmentMachineName == "LIAC_OR3"
    files = [out / "RS.dcm", out / "RP.dcm", out / "RD.dcm", sorted(out.glob("CT_*.dcm"))[0]]
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert len(ds.StudyDate) == 8 and len(ds.StudyTime) >= 6, path.name
    assert len({pydicom.dcmread(p, stop_before_pixels=True).StudyDate for p in files}) == 1
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) not installed")
    for path in files:
        report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True,
                                timeout=60)
        text = report.stdout + report.stderr
        problems = [line for line in text.splitlines()
                    if line.startswith(("Warning", "Error"))]
        assert problems == [], (path.name, problems)
    assert main(["export", "phantom", "--out", str(tmp_path / "x"), "--machine-name",
                 "A_NAME_LONGER_THAN_16"]) == 2
    assert "at most 16" in capsys.readouterr().err
