"""``iort run``: bad input gives one clear line (exit 2); a short scripted session runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from guidance.cli import main
from guidance.session_log import SessionLog


def test_needs_a_display(monkeypatch, capsys) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["run", "phantom"]) == 2
    assert "needs a display" in capsys.readouterr().err


def test_bad_case_and_port(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setenv("DISPLAY", ":99")
    assert main(["run", str(tmp_path / "nope")]) == 2
    assert "not 'phantom'" in capsys.readouterr().err
    assert main(["run", "phantom", "--igtl-port", "70000"]) == 2
    assert "--igtl-port" in capsys.readouterr().err


@pytest.mark.gui
@pytest.mark.slow
def test_scripted_session_writes_log(qtbot, tmp_path: Path, capsys) -> None:
    log_path = tmp_path / "session.sqlite"
    code = main(["run", "phantom", "--source", "scripted", "--igtl-port", "0",
                 "--session-log", str(log_path), "--quit-after", "4"])
    assert code == 0
    assert "session log" in capsys.readouterr().out
    events = SessionLog.open(log_path, readonly=True).events()
    kinds = [e.kind for e in events]
    assert kinds[0] == "session_start" and "action" in kinds
    # the log is never overwritten by a second session
    assert main(["run", "phantom", "--source", "scripted", "--session-log",
                 str(log_path), "--igtl-port", "0", "--quit-after", "1"]) == 2
    assert "never overwritten" in capsys.readouterr().err
