"""``iort rehearse``: a headless scripted rehearsal prints and writes its score; bad input
is one line."""

from __future__ import annotations

import json

import pytest

from guidance.cli.main import main
from guidance.record.score import trainee_history

#: Undoes the sarcoma scenario's start (10 mm left, 10 mm anterior, 4 mm cranial of the
#: plan, beam axis 7 deg towards the left): at 10 mm/s and 5 deg/s.
SCRIPT = {"commands": [
    {"t_s": 0.1, "do": "hold", "motion": "translate", "toward": "right", "for_s": 1.0},
    {"t_s": 0.1, "do": "hold", "motion": "translate", "toward": "posterior", "for_s": 1.0},
    {"t_s": 0.1, "do": "hold", "motion": "translate", "toward": "caudal", "for_s": 0.4},
    {"t_s": 0.2, "do": "hold", "motion": "tilt", "toward": "right", "for_s": 1.4},
    {"t_s": 0.5, "do": "fault", "kind": "marker_occlusion", "duration_s": 0.3},
    {"t_s": 0.9, "do": "report_fault"},
    {"t_s": 1.7, "do": "confirm"}]}


@pytest.fixture()
def script(tmp_path):
    path = tmp_path / "path.json"
    path.write_text(json.dumps(SCRIPT))
    return path


def test_headless_rehearsal_writes_the_score(tmp_path, script, capsys) -> None:
    out, scores = tmp_path / "out", tmp_path / "scores"
    assert main(["rehearse", "--trainee", "Ana", "--scenario", "sarcoma_lead_disc",
                 "--headless", "--script", str(script), "--out", str(out),
                 "--scores", str(scores)]) == 0
    text = capsys.readouterr().out
    assert "sarcoma_lead_disc - Ana: score" in text and "position error" in text
    result = json.loads((out / "score.json").read_text())
    assert result["score"]["confirmed"]
    # the script brings the applicator from the scenario's start onto the plan
    assert result["truth"]["position_error_mm"] < 1e-6
    assert result["truth"]["angle_error_deg"] < 1e-6
    assert result["score"]["components"]["position_error_mm"] < 1.0   # + registration
    assert result["score"]["components"]["faults_noticed_percent"] == 100.0
    assert len(list(out.glob("session-*.sqlite"))) == 1
    assert trainee_history("Ana", folder=scores)[-1]["total"] == result["total"]
    # scoring the log again reads the scenario's plan, target and limits from it
    session = next(out.glob("session-*.sqlite"))
    assert main(["trainee", "score", str(session), "--trainee", "Ana",
                 "--scores", str(scores)]) == 0
    again = trainee_history("Ana", folder=scores)[-1]
    assert again["components"] == result["score"]["components"]


@pytest.mark.parametrize("argv, message", [
    (["--scenario", "liver_bed", "--headless"], "not found; available: pancreas_bed_8mev"),
    (["--scenario", "pancreas_bed_8mev", "--headless"], "--headless needs --script"),
    (["liver", "--scenario", "pancreas_bed_8mev", "--headless"], "built-in phantom"),
])
def test_bad_input_is_one_line(argv, message, tmp_path, capsys) -> None:
    assert main(["rehearse", "--trainee", "Ana", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()    # nothing created before the input is right


def test_a_bad_script_names_its_field(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"commands": [{"t_s": -1, "do": "confirm"}]}))
    assert main(["rehearse", "--trainee", "Ana", "--scenario", "pancreas_bed_8mev",
                 "--headless", "--script", str(bad)]) == 2
    assert "bad.json: field commands[0].t_s" in capsys.readouterr().err


@pytest.mark.gui
def test_the_window_opens_in_trainee_mode(tmp_path, capsys, qapp) -> None:
    assert main(["rehearse", "--trainee", "Ana", "--scenario", "pancreas_bed_8mev",
                 "--out", str(tmp_path), "--scores", str(tmp_path / "s"),
                 "--quit-after", "3"]) == 0
    assert "session log:" in capsys.readouterr().out
