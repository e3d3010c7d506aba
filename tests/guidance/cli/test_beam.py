"""``iort beam commission``: a PTW .mcc file is fitted, written with provenance and reported."""

from __future__ import annotations

import json
from pathlib import Path

from guidance.cli.main import main
from models.beams.library import ElectronBeam, read_machine_file

MCC = Path(__file__).resolve().parents[2] / "data" / "synthetic_12mev_100mm.mcc"


def test_commission_from_mcc_writes_fit_provenance_and_report(tmp_path, capsys):
    out = tmp_path / "liac.json"
    assert main(["beam", "commission", "--mcc", str(MCC), "--energy", "12", "--applicator",
                 "100", "--machine", "liac", "--out", str(out),
                 "--report", str(tmp_path / "report")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["fitted"] == 1 and summary["pass_percent"] == 100.0
    machine = read_machine_file(out)
    fitted = machine.commissioned_beam(ElectronBeam("liac", 12.0, 100.0))
    assert fitted is not None and fitted.diameter_mm == 100.0
    assert "synthetic_12mev_100mm.mcc" in machine.commissioning_provenance
    assert "fitted" in machine.commissioning_provenance
    html = (tmp_path / "report" / "commissioning.html").read_text()
    assert "data:image/png;base64," in html and "Output factors" in html
    assert (tmp_path / "report" / "commissioning.pdf").read_bytes().startswith(b"%PDF")


def test_commission_bad_csv_is_one_line_naming_file_and_row(tmp_path, capsys):
    bad = tmp_path / "pdd.csv"
    bad.write_text("depth_mm,dose\n0,90\n2,nan\n4,80\n")
    assert main(["beam", "commission", "--csv", str(bad), "--energy", "12", "--applicator",
                 "100", "--out", str(tmp_path / "liac.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(bad) in err and "row 3" in err and "NaN" in err


def test_commission_needs_the_beam_for_a_csv(tmp_path, capsys):
    assert main(["beam", "commission", "--csv", str(tmp_path / "x.csv"),
                 "--out", str(tmp_path / "liac.json")]) == 2
    assert "--energy" in capsys.readouterr().err
