"""``iort demo``: with a display it opens the monitor on the given beam (session log and
plan in ``--out``); headless it applies the same options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import guidance.cli.main as cli_main
from guidance.cli.main import main


def _window_runs(monkeypatch, tmp_path: Path) -> list[list[str]]:
    """Display set; the monitor's `iort run` replaced by a recorder of its argv."""
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    calls: list[list[str]] = []
    real_main = cli_main.main

    def fake_main(argv: list[str]) -> int:
        if argv[0] == "demo":
            return real_main(argv)
        calls.append(argv)
        return 0

    monkeypatch.setattr(cli_main, "main", fake_main)
    return calls


def test_demo_on_a_display_logs_into_out(monkeypatch, tmp_path: Path) -> None:
    calls = _window_runs(monkeypatch, tmp_path)
    out = tmp_path / "out"
    assert main(["demo", "--out", str(out), "--frames", "3"]) == 0
    (argv,) = calls
    assert argv[:2] == ["run", "phantom"]
    log_path = Path(argv[argv.index("--session-log") + 1])
    assert log_path.parent == out and log_path.name.startswith("session-")
    assert not out.exists() and not (tmp_path / "data").exists()  # nothing made yet


BEAM = ["--machine", "mobetron", "--energy", "9", "--applicator", "60", "--bevel", "15",
        "--prescription", "12"]


def test_demo_beam_options_reach_the_monitor(monkeypatch, tmp_path: Path) -> None:
    """Issue 13 item 4: with a display the beam options become the plan the monitor
    starts on (written to --out/plan.json), not silently dropped."""
    import numpy as np

    from guidance.cli.commands.run import _plan, _planned_beam
    from models.patient.phantom import make_phantom, planned_patient_from_applicator

    calls = _window_runs(monkeypatch, tmp_path)
    out = tmp_path / "out"
    assert main(["demo", "--out", str(out), "--frames", "3", *BEAM]) == 0
    (argv,) = calls
    plan_path = Path(argv[argv.index("--plan") + 1])
    assert plan_path == out / "plan.json" and plan_path.is_file()
    args = cli_main.build_parser().parse_args(argv)
    case = make_phantom()
    pose = _plan(args, case)
    np.testing.assert_allclose(pose, planned_patient_from_applicator(case), atol=1e-9)
    planned = _planned_beam(args, case, pose)       # what MonitorLogic starts on
    assert planned.machine == "mobetron"
    assert (planned.beam.energy_mev, planned.beam.applicator_diameter_mm,
            planned.beam.bevel_deg, planned.beam.prescription_gy) == (9.0, 60.0, 15.0, 12.0)


@pytest.mark.parametrize(("extra", "message"), [
    (["--spacing", "3x3x4"], "--spacing: only for the headless demo"),
    (["--seed", "2", "--no-video"], "--seed, --no-video: only for the headless demo"),
    (["--energy", "7"], "unknown energy"),
])
def test_demo_with_a_display_refuses_what_it_cannot_do(monkeypatch, tmp_path: Path, capsys,
                                                       extra: list[str], message: str) -> None:
    calls = _window_runs(monkeypatch, tmp_path)
    out = tmp_path / "out"
    assert main(["demo", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert calls == [] and not out.exists()


def test_headless_demo_applies_the_beam_options(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["demo", "--headless", "--out", str(out), "--frames", "2", "--spacing",
                 "3x3x4", "--no-video", "--quiet", *BEAM]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {k: summary[k] for k in ("beam.machine", "beam.energy_mev", "beam.applicator_mm",
                                    "beam.bevel_deg", "beam.prescription_gy")} == {
        "beam.machine": "mobetron", "beam.energy_mev": 9.0, "beam.applicator_mm": 60.0,
        "beam.bevel_deg": 15.0, "beam.prescription_gy": 12.0}


def test_demo_field_option_reaches_the_monitor(monkeypatch, tmp_path: Path) -> None:
    calls = _window_runs(monkeypatch, tmp_path)
    assert main(["demo", "--out", str(tmp_path / "out"), "--frames", "3",
                 "--field", "realistic"]) == 0
    (argv,) = calls
    assert argv[argv.index("--field") + 1] == "realistic"
    assert cli_main.build_parser().parse_args(argv).field == "realistic"
