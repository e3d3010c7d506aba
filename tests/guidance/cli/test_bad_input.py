"""Wrong input is one line naming the option and file, before any work is done."""

from __future__ import annotations

import numpy as np
import pytest

from guidance.cli.main import main


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("iort: error: ")
    return err[0]


def test_binary_pose_file_names_the_option_and_file(tmp_path, capsys) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(np.random.default_rng(0).integers(128, 256, 300, np.uint8).tobytes())
    assert main(["dose", "case", "phantom", "--energy", "8", "--applicator", "70",
                 "--pose", str(garbage), "--out", str(tmp_path / "o")]) == 2
    line = _error(capsys)
    assert "--pose" in line and "garbage.json" in line and "UTF-8" in line
    assert "codec" not in line


@pytest.mark.parametrize("command", [
    ["dose", "case", "phantom", "--energy", "8", "--applicator", "70"],
    ["export", "phantom"],
    ["sweep", "phantom", "--energy", "8", "--applicator", "70", "--tre-mm", "1",
     "--tracking-mm", "1", "--serial"],
])
def test_unwritable_out_is_refused_before_the_work(command, capsys, monkeypatch) -> None:
    import models.dicom.rt_export as rt_export
    import models.dose.engine as engine

    def no_work(*_args, **_kwargs):
        raise AssertionError("the dose was computed or written before --out was checked")
    monkeypatch.setattr(engine.ElectronDoseEngine, "compute", no_work)
    monkeypatch.setattr(rt_export, "write_dose_of_pose", no_work)
    monkeypatch.setattr(rt_export, "export_case", no_work)
    assert main([*command, "--out", "/proc/nope"]) == 2
    line = _error(capsys)
    assert "--out /proc/nope: cannot create the folder" in line and "[Errno" not in line


def test_calibrate_refuses_a_wrong_out_type_before_calibrating(tmp_path, capsys) -> None:
    assert main(["calibrate", "camera", "--images", str(tmp_path), "--out",
                 str(tmp_path / "c.txt")]) == 2
    assert "unknown file type '.txt'" in _error(capsys)


def test_calibrate_does_not_ignore_a_dictionary_without_squares(tmp_path, capsys) -> None:
    assert main(["calibrate", "camera", "--images", str(tmp_path), "--dictionary",
                 "DICT_4X4_50", "--out", str(tmp_path / "c.json")]) == 2
    assert "--dictionary applies only" in _error(capsys)


def test_target_on_a_case_without_structures_says_so(tmp_path, capsys, monkeypatch) -> None:
    from guidance.cli import inputs
    from models.patient.case import Case
    from models.patient.phantom import make_phantom

    phantom = make_phantom(spacing_mm=(4.0, 4.0, 5.0))
    bare = Case(ct=phantom.ct, structures={})     # a CT imported without its RTSTRUCT
    monkeypatch.setattr("guidance.cli.commands.dose.load_case_spec", lambda spec: bare)
    pose = tmp_path / "pose.json"
    pose.write_text('{"patient_from_applicator": [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}')
    assert main(["dose", "case", "somecase", "--energy", "8", "--applicator", "70",
                 "--pose", str(pose), "--out", str(tmp_path / "o")]) == 2
    line = _error(capsys)
    assert inputs.NO_STRUCTURES in line
