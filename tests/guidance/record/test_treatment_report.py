"""The treatment record: from a session log to a PDF a physicist can read and sign."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import asdict

import cv2
import numpy as np
import pytest

from guidance.cli.commands.report import _dvh_function
from guidance.record.session_log import SessionLog
from guidance.record.session_report import content_from_session
from guidance.record.treatment_report import write_pdf
from guidance.treatment.dose_check import load_plan_limits
from guidance.treatment.dose_service import (
    HIDDEN_ROI_TYPES,
    BeamChoice,
    electron_dose_function,
    evaluate_dose,
)
from models.evaluation.dvh import structure_bounds_mm
from models.patient.phantom import planned_patient_from_applicator

BEAM = BeamChoice(energy_mev=8.0, applicator_diameter_mm=70.0)


def _session(tmp_path, case, *, tamper_v90: float | None = None):
    """A session as the monitor writes it: registration, a confirm with its coverage."""
    pose = planned_patient_from_applicator(case)
    result = electron_dose_function("liac")(case, pose, BEAM)
    bounds = {n: structure_bounds_mm(case.ct, s.mask) for n, s in case.structures.items()
              if s.roi_type not in HIDDEN_ROI_TYPES}
    dvhs, _ = evaluate_dose(case, result.dose, BEAM, bounds)
    coverage = {n: {k: v for k, v in asdict(d.metrics).items() if k != "name"}
                for n, d in dvhs.items()}
    if tamper_v90 is not None:
        coverage["CTV"]["v90_percent"] = tamper_v90
    path = tmp_path / f"session{tamper_v90 or ''}.sqlite"
    # the plan said 9 MeV, 8 MeV was delivered (an override the record must show)
    planned = {**asdict(BEAM), "energy_mev": 9.0}
    with SessionLog.create(path, case_id="PHANTOM-1",
                           metadata={"planned_beam": planned, "machine": "liac"}) as slog:
        slog.log_registration(method="paired_point", fre_mm=0.41, accepted=True,
                              patient_from_reference=np.eye(4), tre_predicted_mm=0.62,
                              residuals_mm={"FID1": 0.3, "FID2": 0.5})
        slog.log_warning("TRACKING LOST - applicator", source="tracking")
        slog.log_confirmed_pose(patient_from_applicator=pose,
                                beam={**asdict(BEAM), "machine": "liac"}, coverage=coverage,
                                distance_to_plan_mm=0.4, angle_to_plan_deg=0.2, user="RO")
        slog.log_action("confirm_override", override_reason="bowel retracted, checked")
    return path, result


def test_recomputed_record_matches_the_log_and_renders(tmp_path, coarse_phantom) -> None:
    case = coarse_phantom
    path, result = _session(tmp_path, case)
    content = content_from_session(path, dvh_fn=_dvh_function(case, "liac"),
                                   colors={"CTV": (200, 0, 0)}, limits=load_plan_limits())
    assert [n for n in content.notes if not n.startswith("Limits:")] == []   # = the log
    rows = {(r.structure, r.metric): r for r in content.coverage}
    v90 = rows["CTV", "v90_percent"]
    assert v90.limit == ">= 95 %" and v90.passed is (v90.value >= 95.0)
    stomach = rows["STOMACH", "dmax_gy"]
    assert stomach.limit == "<= 12.4 Gy" and stomach.passed is (stomach.value <= 12.4)
    assert rows["PANCREAS", "dmax_gy"].passed is None     # no limit for it
    assert content.beam["mu"] == pytest.approx(result.mu, abs=0.05)
    assert content.mu_estimated == result.mu_estimated
    assert content.registration["fre_mm"] == 0.41
    assert content.coverage[0].structure == "CTV"
    assert any("bowel retracted" in o for o in content.overrides)
    assert content.warnings == ["TRACKING LOST - applicator"]
    pdf = write_pdf(content, tmp_path / "record.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) not installed")
    subprocess.run(["pdftoppm", "-r", "60", "-png", str(pdf), str(tmp_path / "page")],
                   check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert pages
    red = 0
    for page in pages:
        rgb = cv2.cvtColor(cv2.imread(str(page)), cv2.COLOR_BGR2RGB).astype(int)
        red += int(np.sum((rgb[..., 0] > 170) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)))
    assert red > 150                                 # the CTV curve and legend drawn
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert content.planned_beam["energy_mev"] == 9.0
    assert content.planned_beam["machine"] == "liac"
    assert text.count("DIFFERS") == 1 and "Planned" in text and "Delivered" in text
    for words in ("Monitor units", "Energy (MeV)", "Predicted TRE", "Signatures",
                  "Medical physicist", "bowel retracted", "V90 (%)", "<= 12.4 Gy",
                  "PUBLISHED DEFAULTS"):
        assert words in text, words
    assert "energy_mev" not in text and "v90_percent" not in text   # human labels


def test_a_log_that_disagrees_with_the_dose_is_flagged(tmp_path, coarse_phantom) -> None:
    path, _ = _session(tmp_path, coarse_phantom, tamper_v90=12.5)
    content = content_from_session(path, dvh_fn=_dvh_function(coarse_phantom, "liac"))
    assert any("CTV v90_percent" in n and "12.500" in n for n in content.notes)


def test_cli_report_without_case_and_bad_session(tmp_path, coarse_phantom, capsys) -> None:
    from guidance.cli.main import main

    path, _ = _session(tmp_path, coarse_phantom)
    assert main(["report", str(path), "--pdf", str(tmp_path / "r.pdf")]) == 0
    assert "give the case" in capsys.readouterr().out
    assert (tmp_path / "r.pdf").stat().st_size > 2000
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"not a database at all" * 10)
    assert main(["report", str(broken), "--pdf", str(tmp_path / "b.pdf")]) == 2
    err = capsys.readouterr().err
    assert "broken.sqlite" in err and len(err.strip().splitlines()) == 1
    assert main(["report", str(path), "--pdf", str(tmp_path / "r.txt")]) == 2


def test_cli_report_names_the_patient_only_when_asked(tmp_path, coarse_phantom, capsys) -> None:
    """``iort report --case``: the record names the case by the log's pseudonym and says
    whether the log's hash chain holds; the patient's name and ID only with --identifiers.
    The PDF is owner-only."""
    from guidance.cli.main import main
    from models.patient.case_store import save_case

    path, _ = _session(tmp_path, coarse_phantom)
    case_dir = save_case(coarse_phantom, tmp_path / "Phantom_Abdomen")
    content = content_from_session(path)
    assert content.patient["Log integrity"].startswith("hash chain intact")
    assert content.patient["Case"] == "PHANTOM-1"
    out = tmp_path / "rec.pdf"
    assert main(["report", str(path), "--pdf", str(out), "--case", str(case_dir)]) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed")
    text = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "IORT-PHANTOM" not in text and "Phantom" not in text
    assert "hash chain intact" in text
    assert main(["report", str(path), "--pdf", str(tmp_path / "named.pdf"), "--case",
                 str(case_dir), "--identifiers"]) == 0
    named = subprocess.run(["pdftotext", str(tmp_path / "named.pdf"), "-"],
                           capture_output=True, text=True, check=True).stdout
    assert "IORT-PHANTOM" in named
