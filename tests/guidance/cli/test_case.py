"""``iort case phantom`` / ``iort case import`` in-process: outputs, refusals, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from guidance.cli.main import main
from models.patient.case_store import load_case


def test_phantom_then_import(tmp_path: Path, capsys) -> None:
    dicom, case_dir = tmp_path / "dicom", tmp_path / "case"
    assert main(["case", "phantom", "--out", str(dicom), "--spacing", "4", "4", "5",
                 "--seed", "1"]) == 0
    assert "DICOM files" in capsys.readouterr().out
    assert main(["case", "import", str(dicom), "--out", str(case_dir)]) == 0
    assert "11 structures, 5 fiducials" in capsys.readouterr().out
    case = load_case(case_dir)
    assert case.ct.spacing_mm.tolist() == [4.0, 4.0, 5.0]


def test_non_empty_out_refused_with_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "x.txt").write_text("x")
    assert main(["case", "phantom", "--out", str(tmp_path), "--spacing", "4", "4", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not empty" in err and "--force" in err
    assert main(["case", "phantom", "--out", str(tmp_path), "--spacing", "4", "4", "5",
                 "--force"]) == 0


def test_import_errors_are_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["case", "import", str(tmp_path / "empty"), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("iort: error:") and "no image series" in err and "\n" not in err


def test_bad_spacing_and_unknown_option(tmp_path: Path, capsys) -> None:
    assert main(["case", "phantom", "--out", str(tmp_path / "a"), "--spacing", "0", "1",
                 "1"]) == 2
    assert "spacing_mm" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["case", "phantom", "--out", str(tmp_path / "b"), "--bogus"])
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_import_of_one_slice_refused_and_ct_without_rtstruct_said(tmp_path: Path,
                                                                  capsys) -> None:
    """Issue 13 item 15: one slice is refused in one line naming the folder; a CT series
    without RTSTRUCT imports with a warning that it has no structures."""
    import shutil

    import pydicom

    dicom = tmp_path / "dicom"
    assert main(["case", "phantom", "--out", str(dicom), "--spacing", "4", "4", "5"]) == 0
    one, ct_only = tmp_path / "one", tmp_path / "ct_only"
    one.mkdir()
    ct_only.mkdir()
    ct_files = [f for f in sorted(dicom.glob("*.dcm"))
                if pydicom.dcmread(f, stop_before_pixels=True).Modality == "CT"]
    assert len(ct_files) > 2
    shutil.copy(ct_files[0], one)
    for f in ct_files:
        shutil.copy(f, ct_only)
    capsys.readouterr()
    assert main(["case", "import", str(one), "--out", str(tmp_path / "c1")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(one) in err and "only one CT slice" in err
    assert not (tmp_path / "c1").exists()
    assert main(["case", "import", str(ct_only), "--out", str(tmp_path / "c2")]) == 0
    captured = capsys.readouterr()
    assert "0 structures" in captured.out
    assert f"{ct_only}: no RTSTRUCT" in captured.err and captured.err.count("\n") == 1
