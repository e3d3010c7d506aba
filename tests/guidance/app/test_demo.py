"""End to end: the demo on a coarse phantom, checked against the simulation's truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from guidance.app.demo import DemoResult
from guidance.cli.main import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    """``iort demo --headless`` as a user runs it, in its own process: whatever it dies of
    (a native library's exit included) fails these tests with its last words, instead of
    ending the test session silently."""
    out = tmp_path_factory.mktemp("demo")
    command = [sys.executable, "-m", "guidance", "demo", "--headless", "--frames", "14",
               "--spacing", "3x3x4", "--out", str(out), "--quiet"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"iort demo still running after {exc.timeout:g} s:\n{str(exc.stderr)[-6000:]}")
    if done.returncode != 0:
        pytest.fail(f"iort demo exited {done.returncode}:\n{done.stdout[-3000:]}\n"
                    f"{done.stderr[-6000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return DemoResult(summary=summary, out_dir=out,
                      images=sorted(out.glob("overlay_*.png")), video=out / "demo.mp4",
                      report=out / "report.html")


def test_outputs_written(demo_run) -> None:
    out: Path = demo_run.out_dir
    assert len(list(out.glob("overlay_*.png"))) == 14
    assert (out / "demo.mp4").stat().st_size > 10_000
    html = (out / "report.html").read_text()
    assert "V90" in html and 'src="data:image/png;base64,' in html
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
    summary = json.loads((out / "summary.json").read_text())
    for key in ("registration.fre_mm", "registration.tre_mm", "applicator.position_error_mm",
                "applicator.angle_error_deg", "dose.target_v90_percent", "timing.frames",
                "timing.fps", "timing.dose_ms", "versions"):
        assert key in summary, key
    assert summary["timing.frames"] == 14
    from guidance.record.session_log import SessionLog

    assert (out / summary["session_log"]).stat().st_mode & 0o777 == 0o600  # names a patient
    with SessionLog.open(out / summary["session_log"], readonly=True) as log:
        registrations = log.events("registration")
        doses = log.events("dose")
    assert len(registrations) == 1 and len(doses) == summary["dose.updates"]


def test_the_retraction_step_is_shown_and_reported(demo_run) -> None:
    """The tracked retractor pulls the bowel out of the way; the edit reaches the summary,
    both reports and the session log."""
    s, out = demo_run.summary, demo_run.out_dir
    assert s["anatomy.edit_count"] == 1
    [line] = s["anatomy.edits"]
    assert line.startswith("BOWEL moved 3") and line.endswith("4 deg, by tracked retractor")
    assert s["anatomy.retraction_error_mm"] < 2.0 and s["anatomy.retraction_error_deg"] < 1.0
    assert "BOWEL_preoperative_dmax_gy" in " ".join(s)
    assert "Intraoperative anatomy" in (out / "report.html").read_text()
    from guidance.record.session_log import SessionLog

    with SessionLog.open(out / s["session_log"], readonly=True) as log:
        [edit] = log.events("anatomy_edit")
    assert edit.payload["edit"]["how"] == "tracked retractor"


def test_registration_and_tracking_against_truth(demo_run) -> None:
    s = demo_run.summary
    assert s["registration.fiducials"] == 5
    assert s["registration.fre_mm"] < 1.5
    assert s["registration.tre_mm"] <= 2.0
    assert s["applicator.position_error_mm"] <= 2.0
    assert s["applicator.angle_error_deg"] <= 1.0


def test_dose_covers_target(demo_run) -> None:
    s = demo_run.summary
    assert s["dose.updates"] >= 1 and s["dose.failures"] == 0
    # 8 MeV (R90 ~19 mm) from a 70 mm applicator on an 11 mm deep, 52 mm wide tumour bed
    assert s["dose.target_v90_percent"] > 90.0


def test_overlay_target_where_it_really_is(demo_run) -> None:
    s = demo_run.summary
    assert s["overlay.frames_drawn"] >= 5
    assert s["overlay.target_error_max_px"] <= 3.0


def test_last_overlay_shows_target_and_isodose(demo_run) -> None:
    image = cv2.imread(str(demo_run.images[-1]))
    b, g, r = (image[..., c].astype(int) for c in range(3))
    reddish = (r > 150) & (g < 120) & (b < 120)
    yellowish = (r > 150) & (g > 130) & (b < 90)
    assert reddish.sum() > 200, "target (red) not drawn"
    assert yellowish.sum() > 100, "isodose (yellow) not drawn"   # a ring seen through the tube


def test_cli_refuses_bad_beam_choice(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--headless", "--energy", "7", "--frames", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("iort: error:") and "6" in err[0]


def test_cli_refuses_unknown_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--no-such-option"])
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_target_error_metric_is_zero_for_true_pose() -> None:
    from guidance.app.demo import _target_error_px

    k = np.array([[1000.0, 0, 640], [0, 1000.0, 360], [0, 0, 1]])
    pose = np.eye(4)
    pose[2, 3] = 400.0
    moved = pose.copy()
    moved[0, 3] += 1.0  # 1 mm at 400 mm -> 2.5 px
    point = np.array([10.0, 5.0, 0.0])
    assert _target_error_px(k, pose, pose, point) == pytest.approx(0.0, abs=1e-9)
    assert _target_error_px(k, moved, pose, point) == pytest.approx(2.5, rel=1e-6)


# -- replay of the recorded demo session (iort replay) -------------------------------------
def _session_of(demo_run) -> Path:
    return demo_run.out_dir / demo_run.summary["session_log"]


def test_replay_reproduces_every_logged_number(demo_run, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay", str(_session_of(demo_run)), "--headless", "--json",
                 "--out", str(tmp_path)])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0, summary
    assert summary["frames"] == demo_run.summary["timing.frames"]
    assert summary["pose_mismatches"] == 0
    assert summary["dose_triggers_logged"] == demo_run.summary["dose.updates"] >= 1
    assert summary["dose_triggers_match"]
    # every dose's Dmax/MU/prescription and the confirmed pose's coverage of 8 structures
    assert summary["numbers_checked"] >= 3 * demo_run.summary["dose.updates"] + 8 * 5
    assert summary["numbers_different"] == 0 and summary["reproduced"]
    assert json.loads((tmp_path / "replay.json").read_text()) == summary
    png = next(tmp_path.glob("dvh_confirm_*.png"))
    image = cv2.imread(str(png))
    assert image is not None and image.std() > 10   # curves drawn, not a blank page


def test_replay_catches_a_logged_number_that_was_changed(demo_run, tmp_path: Path,
                                                          capsys) -> None:
    import shutil
    import sqlite3

    copy = tmp_path / "edited.sqlite"
    shutil.copy(_session_of(demo_run), copy)
    conn = sqlite3.connect(copy)
    seq, payload = conn.execute("SELECT seq, payload FROM events WHERE kind = "
                                "'confirmed_pose'").fetchone()
    data = json.loads(payload)
    data["coverage"]["CTV"]["v90_percent"] += 1e-9
    conn.execute("UPDATE events SET payload = ? WHERE seq = ?", (json.dumps(data), seq))
    conn.commit()
    conn.close()
    code = main(["replay", str(copy), "--headless"])
    out = capsys.readouterr().out
    assert code == 3
    assert f"event {seq} (confirmed_pose) CTV.v90_percent" in out and "NOT reproduced" in out


def test_replay_of_a_truncated_log_replays_what_is_intact(demo_run, tmp_path: Path,
                                                           capsys) -> None:
    data = _session_of(demo_run).read_bytes()
    cut = tmp_path / "cut.sqlite"
    cut.write_bytes(data[: int(len(data) * 0.8)])
    code = main(["replay", str(cut), "--headless", "--json"])
    captured = capsys.readouterr().out
    assert code == 3
    assert "damaged" in captured and "replaying what is intact" in captured
    summary = json.loads(captured[captured.index("{"):])
    assert summary["numbers_checked"] > 0 and summary["numbers_different"] == 0
    # a file with nothing left: one line, exit 2
    (tmp_path / "zero.sqlite").write_bytes(data[:50])
    code = main(["replay", str(tmp_path / "zero.sqlite")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "zero.sqlite" in err[0]


def test_replay_refuses_another_ct(demo_run, capsys) -> None:
    code = main(["replay", str(_session_of(demo_run)), "--case", "phantom"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is not the one" in err[0]
