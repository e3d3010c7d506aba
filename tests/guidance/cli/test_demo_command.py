"""``iort demo`` with a display opens the monitor, keeping its session log in ``--out``."""

from __future__ import annotations

from pathlib import Path

import guidance.cli.main as cli_main
from guidance.cli.main import main


def test_demo_on_a_display_logs_into_out(monkeypatch, tmp_path: Path) -> None:
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
    out = tmp_path / "out"
    assert main(["demo", "--out", str(out), "--frames", "3"]) == 0
    (argv,) = calls
    assert argv[:2] == ["run", "phantom"]
    log_path = Path(argv[argv.index("--session-log") + 1])
    assert log_path.parent == out and log_path.name.startswith("session-")
    assert not out.exists() and not (tmp_path / "data").exists()  # nothing made yet
