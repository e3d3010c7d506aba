"""Session log: round trip, crash safety under SIGKILL, refusal to damage existing files."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from guidance.record.session_log import EVENT_KINDS, SessionLog
from models.base.errors import InputError
from models.base.transforms import transform_from_rotvec

REPO = Path(__file__).resolve().parents[3]


def _pose(rng: np.random.Generator) -> np.ndarray:
    return transform_from_rotvec(rng.normal(size=3) * 0.3, rng.normal(size=3) * 50.0)


def test_round_trip_every_kind(tmp_path: Path, rng: np.random.Generator) -> None:
    pose = _pose(rng)
    reg = _pose(rng)
    path = tmp_path / "session.sqlite"
    with SessionLog.create(path, case_id="phantom", metadata={"calibration": "cam.json"}) as s:
        s.log_registration(method="paired_point", fre_mm=0.61, patient_from_reference=reg,
                           accepted=True, tre_predicted_mm=0.9,
                           residuals_mm={"FID1": 0.4, "FID2": 0.8}, n_points=5)
        s.log_dose(beam={"energy_mev": 9.0, "applicator_diameter_mm": 60.0},
                   coverage={"CTV": {"v90_percent": 97.5}}, compute_ms=np.float32(120.0))
        s.log_confirmed_pose(patient_from_applicator=pose,
                             beam={"energy_mev": 9.0, "bevel_deg": 15.0, "disc": None},
                             coverage={"CTV": {"v90_percent": 97.5, "d90_gy": 10.2}},
                             distance_to_plan_mm=1.2, angle_to_plan_deg=2.5, user="RO")
        s.log_warning("applicator tracking stale", source="applicator")
        s.log_action("mode", mode="oncologist")
    back = SessionLog.open(path, readonly=True)
    events = back.events()
    assert [e.kind for e in events] == ["session_start", "registration", "dose",
                                        "confirmed_pose", "warning", "action", "session_end"]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert all(e.kind in EVENT_KINDS for e in events)
    assert back.meta()["case_id"] == "phantom"
    assert events[0].payload["calibration"] == "cam.json"
    np.testing.assert_allclose(events[1].transform("patient_from_reference"), reg, atol=0)
    assert events[1].payload["residuals_mm"] == {"FID1": 0.4, "FID2": 0.8}
    confirmed = back.last("confirmed_pose")
    np.testing.assert_allclose(confirmed.transform("patient_from_applicator"), pose, atol=0)
    assert confirmed.payload["coverage"]["CTV"]["d90_gy"] == pytest.approx(10.2, abs=0)
    assert events[2].payload["compute_ms"] == pytest.approx(120.0, abs=0)
    times = [e.t_unix_s for e in events]
    assert times == sorted(times) and abs(times[0] - time.time()) < 60
    back.close()


def test_rejects_bad_values(tmp_path: Path) -> None:
    with SessionLog.create(tmp_path / "s.sqlite") as s:
        with pytest.raises(ValueError, match="event kind"):
            s.append("nonsense", {})
        with pytest.raises(ValueError, match="patient_from_applicator"):
            s.log_confirmed_pose(patient_from_applicator=np.diag([1.0, 1.0, -1.0, 1.0]),
                                 beam={}, coverage={})
        with pytest.raises(TypeError, match="not recordable"):
            s.log_action("x", thing=object())
        s.log_warning("nan becomes null", source="x")
        s.log_dose(beam={}, coverage={"CTV": {"d90_gy": float("nan")}})
    dose = SessionLog.open(tmp_path / "s.sqlite", readonly=True).last("dose")
    assert dose.payload["coverage"]["CTV"]["d90_gy"] is None


def test_readonly_refuses_writes(tmp_path: Path) -> None:
    SessionLog.create(tmp_path / "s.sqlite").close()
    ro = SessionLog.open(tmp_path / "s.sqlite", readonly=True)
    with pytest.raises(PermissionError):
        ro.log_warning("x")
    ro.close()


def test_create_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SessionLog.create(path) as s:
        s.log_warning("keep me")
    before = path.read_bytes()
    with pytest.raises(InputError, match="never overwritten"):
        SessionLog.create(path)
    assert path.read_bytes() == before
    # Continuing an existing log appends.
    with SessionLog.open(path) as s:
        s.log_action("resume")
    kinds = [e.kind for e in SessionLog.open(path, readonly=True).events()]
    assert kinds.count("session_start") == 1 and kinds[-2:] == ["action", "session_end"]


@pytest.mark.parametrize("content", [b"", b"hello, not a database" * 100,
                                     b"SQLite format 3\x00" + b"\xff" * 4000])
def test_corrupt_file_clear_error_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.sqlite"
    path.write_bytes(content)
    for readonly in (True, False):
        with pytest.raises(InputError, match=r"bad\.sqlite"):
            SessionLog.open(path, readonly=readonly)
    assert path.read_bytes() == content
    assert not (tmp_path / "bad.sqlite-wal").exists()


def test_truncated_log_is_rejected_untouched(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SessionLog.create(path) as s:
        for i in range(300):
            s.log_action("step", i=i, text="x" * 200)
    data = path.read_bytes()
    cut = data[: len(data) // 2]
    path.write_bytes(cut)
    with pytest.raises(InputError, match=r"s\.sqlite"):
        SessionLog.open(path)
    assert path.read_bytes() == cut


def test_foreign_sqlite_file_rejected(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(InputError, match="not an IORT session log"):
        SessionLog.open(path)


_CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from guidance.record.session_log import SessionLog
    slog = SessionLog.create(sys.argv[1], case_id="killed")
    i = 0
    while True:
        slog.log_confirmed_pose(patient_from_applicator=np.eye(4), beam={"energy_mev": 9.0},
                                coverage={"CTV": {"v90_percent": float(i)}})
        print(i, flush=True)
        i += 1
        if i > 100000:
            break
""")


def test_sigkill_loses_nothing_recorded(tmp_path: Path) -> None:
    """A writer killed with SIGKILL mid-session: every event it reported written is back."""
    path = tmp_path / "killed.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE,
                            text=True, cwd=REPO)
    acknowledged = -1
    deadline = time.monotonic() + 30.0
    try:
        while acknowledged < 40 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acknowledged = int(line)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert acknowledged >= 40, "child did not write"
    assert (tmp_path / "killed.sqlite-wal").exists()  # not checkpointed: recovery needed
    events = SessionLog.open(path, readonly=True).events("confirmed_pose")
    recorded = [e.payload["coverage"]["CTV"]["v90_percent"] for e in events]
    assert len(recorded) >= acknowledged + 1
    assert recorded[: acknowledged + 1] == [float(i) for i in range(acknowledged + 1)]
    # The recovered log can be continued.
    with SessionLog.open(path) as s:
        s.log_action("resumed after crash")
    assert SessionLog.open(path, readonly=True).last("action").payload["action"] == \
        "resumed after crash"


def test_sessions_folder_follows_xdg(monkeypatch, tmp_path: Path) -> None:
    from guidance.record.session_log import sessions_folder

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert sessions_folder() == tmp_path / "data" / "iort" / "sessions"
    for unset in ("", "relative/data"):  # the XDG spec: unset, empty or relative -> default
        monkeypatch.setenv("XDG_DATA_HOME", unset)
        assert sessions_folder() == tmp_path / "home" / ".local" / "share" / "iort" / "sessions"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert sessions_folder() == tmp_path / "home" / ".local" / "share" / "iort" / "sessions"


def test_session_log_path_rule(monkeypatch, tmp_path: Path) -> None:
    from guidance.record.session_log import session_log_path

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    when = time.mktime((2026, 12, 1, 9, 30, 5, 0, 0, -1))
    assert session_log_path(when=when) == \
        tmp_path / "data" / "iort" / "sessions" / "session-20261201-093005.sqlite"
    assert session_log_path(folder=tmp_path / "out", when=when) == \
        tmp_path / "out" / "session-20261201-093005.sqlite"
    assert session_log_path(tmp_path / "mine.sqlite") == tmp_path / "mine.sqlite"
    assert not (tmp_path / "data").exists() and not (tmp_path / "out").exists()
    # a second session in the same second gets a new name; a named file is never reused
    SessionLog.create(session_log_path(folder=tmp_path, when=when)).close()
    assert session_log_path(folder=tmp_path, when=when).name == "session-20261201-093005-2.sqlite"
    with pytest.raises(InputError, match="never overwritten"):
        session_log_path(tmp_path / "session-20261201-093005.sqlite")


def test_create_is_owner_only(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        path = tmp_path / "new" / "sessions" / "s.sqlite"
        with SessionLog.create(path, case_id="patient") as slog:
            slog.log_warning("w", source="test")
            modes = {p.name: p.stat().st_mode & 0o777 for p in path.parent.iterdir()}
    finally:
        os.umask(old_umask)
    assert modes and set(modes.values()) == {0o600}, modes  # the log and its -wal/-shm
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_failed_create_leaves_no_file(monkeypatch, tmp_path: Path) -> None:
    def broken(conn) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(SessionLog, "_configure", staticmethod(broken))
    path = tmp_path / "s.sqlite"
    with pytest.raises(sqlite3.OperationalError):
        SessionLog.create(path)
    assert list(tmp_path.iterdir()) == []


def test_close_records_a_clean_end(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    slog = SessionLog.create(path, case_id="c")
    slog.log_action("start")
    slog.close()
    slog.close()   # idempotent: one end only
    kinds = [e.kind for e in SessionLog.open(path, readonly=True).events()]
    assert kinds == ["session_start", "action", "session_end"]


def test_session_ended_by_an_exception_says_so(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with pytest.raises(ZeroDivisionError), SessionLog.create(path) as slog:
        slog.log_action("dose")
        _ = 1 / 0
    end = SessionLog.open(path, readonly=True).last("session_end")
    assert end is not None and end.payload == {"reason": "ZeroDivisionError"}


_CREATOR = textwrap.dedent("""
    import sys
    from pathlib import Path
    from guidance.record.session_log import SessionLog
    folder = Path(sys.argv[1])
    n = 0
    while True:
        SessionLog.create(folder / f"s{n:05d}.sqlite", case_id="kill").close()
        n += 1
""")


@pytest.mark.slow
def test_sigkill_during_create_never_leaves_an_unopenable_log(tmp_path: Path,
                                                               rng: np.random.Generator) -> None:
    """Killed at random moments while creating logs: every log at its path opens."""
    logs = 0
    for run in range(12):
        folder = tmp_path / f"run{run}"
        folder.mkdir()
        proc = subprocess.Popen([sys.executable, "-c", _CREATOR, str(folder)], cwd=REPO)
        time.sleep(1.5 + float(rng.uniform(0.0, 0.5)))   # imports, then creations
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        created = sorted(folder.glob("s*.sqlite"))
        assert created, "child created nothing"
        for path in created:
            SessionLog.open(path, readonly=True).close()   # raises if unopenable
        logs += len(created)
    assert logs >= 12


# ----------------------------------------------------------------------------- hash chain
def _chained_log(path: Path) -> Path:
    with SessionLog.create(path, case_id="case-1") as slog:
        slog.log_registration(method="paired_point", fre_mm=0.5, accepted=True,
                              patient_from_reference=np.eye(4))
        for i in range(4):
            slog.log_confirmed_pose(patient_from_applicator=np.eye(4), beam={"energy_mev": 8},
                                    coverage={"CTV": {"v90_percent": 90.0 + i}})
    return path   # records: 1 start, 2 registration, 3-6 confirmed_pose, 7 end


def _tamper(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_untouched_log_verifies_intact(tmp_path: Path) -> None:
    path = _chained_log(tmp_path / "s.sqlite")
    check = SessionLog.open(path, readonly=True).verify()
    assert (check.status, check.records, check.ok) == ("intact", 7, True)
    # continuing the log extends the chain
    with SessionLog.open(path) as slog:
        slog.log_action("resumed")
    assert SessionLog.open(path, readonly=True).verify().records == 9


_SWAP_4_5 = ("UPDATE events SET payload = (SELECT payload FROM events WHERE seq = 5), "
             "seq = -4 WHERE seq = 4",
             "UPDATE events SET payload = (SELECT payload FROM events WHERE seq = -4) "
             "WHERE seq = 5", "UPDATE events SET seq = 4 WHERE seq = -4")


@pytest.mark.parametrize(("statements", "bad_seq", "words"), [
    (("UPDATE events SET payload = replace(payload, '92.0', '99.0') WHERE seq = 5",),
     5, "record 5 (confirmed_pose) was edited"),
    (("UPDATE events SET t_unix_s = t_unix_s + 60 WHERE seq = 2",),
     2, "record 2 (registration) was edited"),
    (("UPDATE events SET kind = 'dose' WHERE seq = 3",), 3, "record 3 (dose) was edited"),
    (("DELETE FROM events WHERE seq = 4",), 5, "record 4 missing before record 5"),
    (("DELETE FROM events WHERE seq = 7",), 7, "last record(s) were deleted"),
    (_SWAP_4_5, 4, "record 4 (confirmed_pose) was edited"),
    (("INSERT INTO events(seq, t_unix_s, t_mono_s, kind, payload) "
      "VALUES (8, 0, 0, 'action', '{}')",), 8, "record 8 (action) has no chain hash"),
    (("UPDATE events SET seq = seq + 10 WHERE seq = 7",), 17,
     "records 7-16 missing before record 17"),
    (("UPDATE meta SET value = 'someone-else' WHERE key = 'case_id'",), 1,
     "record 1 (session_start) was edited"),
], ids=["payload", "time", "kind", "delete", "delete-last", "reorder", "insert", "renumber",
        "meta"])
def test_tampering_is_detected_and_named(tmp_path: Path, statements, bad_seq, words) -> None:
    path = _chained_log(tmp_path / "s.sqlite")
    _tamper(path, *statements)
    check = SessionLog.open(path, readonly=True, verify=False).verify()
    assert check.status == "broken" and check.bad_seq == bad_seq, check
    assert words in check.message and "\n" not in check.message
    for readonly in (True, False):   # open (so every report and replay) refuses it
        with pytest.raises(InputError, match=re.escape(words) + ".*keep it for inspection"):
            SessionLog.open(path, readonly=readonly)
    # a replay goes on with what is there, but says first that the log was altered
    from guidance.record.replay import read_session

    assert words in read_session(path).problems[0]


_SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, t_unix_s REAL NOT NULL,
                     t_mono_s REAL NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL);
PRAGMA application_id = 1229935188;
INSERT INTO meta VALUES ('schema_version', '1'), ('case_id', 'old'), ('created_unix_s', '0');
INSERT INTO events(t_unix_s, t_mono_s, kind, payload) VALUES (1, 1, 'session_start', '{}');
"""


def test_a_log_from_before_the_chain_reads_as_unchained(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA_1)
    conn.close()
    with SessionLog.open(path) as slog:   # still continued, still unchained
        slog.log_action("later")
    back = SessionLog.open(path, readonly=True)
    check = back.verify()
    assert check.status == "unchained" and check.ok and check.records == 3
    assert "unchained" in check.message
    assert [e.kind for e in back.events()] == ["session_start", "action", "session_end"]

def test_anatomy_edits_and_undo_are_logged_with_their_json(tmp_path: Path) -> None:
    from models.patient.edits import EditList, Provenance, Retraction, edit_to_json

    move = transform_from_rotvec([0.0, 0.0, np.radians(4.0)], [0.0, -35.0, 0.0])
    edit = Retraction("BOWEL", move, provenance=Provenance("surgeon", 12.0, "tracked retractor"))
    path = tmp_path / "s.sqlite"
    with SessionLog.create(path) as s:
        s.log_anatomy_edit(edit_to_json(edit), description="BOWEL moved 35 mm, 4 deg",
                           n_edits=1)
        s.log_anatomy_undo(edit_to_json(edit), description="BOWEL moved 35 mm, 4 deg",
                           n_edits=0)
    back = SessionLog.open(path, readonly=True)
    logged = back.last("anatomy_edit")
    again = EditList.from_json([logged.payload["edit"]])
    np.testing.assert_array_equal(next(iter(again)).patient_from_retracted, move)
    assert logged.payload["description"] == "BOWEL moved 35 mm, 4 deg"
    assert back.last("anatomy_undo").payload["n_edits"] == 0
    back.close()
