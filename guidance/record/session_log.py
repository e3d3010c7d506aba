"""Session log: one SQLite database (WAL journal) per guidance session.

Everything the team decides or the program warns about during a session is appended as a
timestamped *event*: registrations with their FRE, applicator poses the user confirmed,
dose parameters and coverage, warnings, and user actions. The log is the record of what
happened in the room and the input of a replay.

Crash safety
------------
Every event is its own transaction, committed before :meth:`SessionLog.append` returns,
with ``journal_mode=WAL`` and ``synchronous=FULL``: a process killed with SIGKILL (or a
power cut, as far as the disk honours ``fsync``) loses nothing that was already appended.
The next :func:`open_session_log` replays the WAL automatically (SQLite's own recovery).

Where logs go
-------------
:func:`session_log_path` is the one rule: an explicit path if the user gave one, else a new
``session-<time>.sqlite`` in a folder (``iort demo --out DIR`` passes DIR), by default
:func:`sessions_folder` (``$XDG_DATA_HOME/iort/sessions``, else
``~/.local/share/iort/sessions``). Logs hold patient identifiers: :meth:`SessionLog.create`
makes the file owner-only (0600; SQLite gives its ``-wal``/``-shm`` files the same mode) and
any folder it has to create owner-only (0700).

Never overwriting
-----------------
:meth:`SessionLog.create` refuses an existing file. :meth:`SessionLog.open` checks the
SQLite header, runs ``PRAGMA quick_check`` and the schema *before* writing anything; a
corrupt or foreign file raises :class:`~models.base.errors.InputError` and is left untouched.
:meth:`SessionLog.create` builds the empty log under a hidden sibling name and links it
into place only when its schema is committed, so a kill during creation never leaves an
unopenable file at the log's path.

A clean end is recorded: :meth:`SessionLog.close` (and leaving a ``with`` block) appends
``session_end`` to a log opened for writing, so a log without it is a session that
crashed or was killed.

Events are stored as ``(seq, t_unix_s, t_mono_s, kind, payload JSON, chain)``; 4x4
transforms are stored as nested lists (row-major, mm). ``kind`` is one of
:data:`EVENT_KINDS`; ``tracker`` and ``frames`` hold the tracking stream a replay feeds back
through the loop (:mod:`guidance.record.tracking_record`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.base.errors import InputError
from models.base.files import make_private_folders, private_file
from models.base.validation import as_transform

log = logging.getLogger(__name__)

#: Schema version written in the ``meta`` table; bump when the layout changes.
#: 2 added the hash chain (``events.chain``, ``meta.chain_head``).
SCHEMA_VERSION = 2
#: Identifies our databases among other SQLite files (``PRAGMA application_id``).
APPLICATION_ID = 0x494F5254  # "IORT"
#: Event kinds a session log holds.
EVENT_KINDS: tuple[str, ...] = (
    "session_start", "registration", "confirmed_pose", "dose", "warning", "action",
    "session_end", "tracker", "frames", "anatomy_edit", "anatomy_undo", "anatomy_redo",
)
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: Name of a new session log (``time.strftime`` format, then ``.sqlite``).
SESSION_FILE_FORMAT = "session-%Y%m%d-%H%M%S"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    t_unix_s REAL NOT NULL,
    t_mono_s REAL NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    chain TEXT
);
CREATE INDEX events_kind ON events(kind);
"""


@dataclass(frozen=True)
class SessionEvent:
    """One recorded event.

    Attributes
    ----------
    seq : int
        Order of recording, from 1.
    t_unix_s : float
        Wall-clock time (s since the Unix epoch, UTC).
    t_mono_s : float
        Monotonic clock (s) of the recording process; differences within one process run.
    kind : str
        One of :data:`EVENT_KINDS`.
    payload : dict
        The event's fields (JSON types; transforms as 4x4 nested lists).
    """

    seq: int
    t_unix_s: float
    t_mono_s: float
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)

    def transform(self, key: str) -> np.ndarray:
        """A 4x4 transform stored in the payload under ``key`` as a float64 array."""
        return np.asarray(self.payload[key], dtype=np.float64).reshape(4, 4)


def _jsonable(value: Any) -> Any:
    """Convert numpy values and nested containers to JSON types (NaN/inf become None)."""
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    raise TypeError(f"session log payload value of type {type(value).__name__} is not "
                    "recordable; pass numbers, strings, lists, dicts or numpy arrays")


def sessions_folder() -> Path:
    """The folder of session logs by default: ``$XDG_DATA_HOME/iort/sessions``.

    ``~/.local/share`` stands in for ``XDG_DATA_HOME`` when it is unset, empty or relative
    (as the XDG Base Directory specification says). Nothing is created.
    """
    data_home = os.environ.get("XDG_DATA_HOME", "")
    root = Path(data_home) if os.path.isabs(data_home) else Path.home() / ".local" / "share"
    return root / "iort" / "sessions"


def session_log_path(path: str | os.PathLike[str] | None = None, *,
                     folder: str | os.PathLike[str] | None = None,
                     when: float | None = None) -> Path:
    """Where a new session log goes: ``path`` if given, else a new file in ``folder``.

    Parameters
    ----------
    path : path-like, optional
        The file the user asked for (``iort run --session-log PATH``); returned as is.
    folder : path-like, optional
        Folder for a new ``session-YYYYmmdd-HHMMSS.sqlite`` (``iort demo --out DIR``);
        :func:`sessions_folder` if omitted. A name already taken (two sessions within one
        second) gets ``-2``, ``-3``... appended.
    when : float, optional
        Time (s since the epoch, local time in the name) of the session; now if omitted.

    Returns
    -------
    Path
        The file to pass to :meth:`SessionLog.create`. Nothing is created here, so a
        caller can pick the path before its inputs are validated.

    Raises
    ------
    InputError
        ``path`` exists: a session log is never overwritten.

    Examples
    --------
    >>> session_log_path(folder="out", when=0.0).parent.as_posix()
    'out'
    >>> session_log_path("mine.sqlite").name
    'mine.sqlite'
    """
    if path is not None:
        _refuse_existing(Path(path))
        return Path(path)
    base = Path(folder) if folder is not None else sessions_folder()
    stem = time.strftime(SESSION_FILE_FORMAT, time.localtime(when))
    candidate, k = base / f"{stem}.sqlite", 1
    while candidate.exists():
        k += 1
        candidate = base / f"{stem}-{k}.sqlite"
    return candidate


def _refuse_existing(path: Path) -> None:
    if path.exists():
        raise InputError(f"session log {path} already exists; a session log is never "
                         "overwritten — choose a new path (or open it to continue)")


def _create_private_file(path: Path) -> None:
    """Create an empty owner-only file; refuse an existing one (no race with a second run)."""
    try:
        private_file(path, exclusive=True)
    except FileExistsError:
        _refuse_existing(path)
        raise


def _link_new(staging: Path, path: Path) -> None:
    """Put the finished ``staging`` file at ``path``; refuse an existing ``path``."""
    try:
        os.link(staging, path)  # atomic and never replaces an existing file
    except FileExistsError:
        _refuse_existing(path)
        raise
    except OSError:  # no hard links on this file system: rename, after a last check
        _refuse_existing(path)
        os.replace(staging, path)


def _check_file(path: Path) -> None:
    """Raise InputError unless ``path`` starts with the SQLite header (read-only check)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise InputError(f"session log {path}: cannot read ({exc.strerror})") from exc
    if head != _SQLITE_MAGIC:
        raise InputError(f"session log {path}: not an SQLite database (bad header); the file "
                         "was left untouched — choose another path or restore a backup")


def record_bytes(seq: int, t_unix_s: float, t_mono_s: float, kind: str, payload: str) -> bytes:
    """The canonical bytes of one record that the hash chain covers (see module docstring)."""
    return f"{int(seq)}\n{float(t_unix_s)!r}\n{float(t_mono_s)!r}\n{kind}\n{payload}".encode()


def chain_link(previous: str, record: bytes) -> str:
    """SHA-256 (hex) of the previous record's chain hash (hex) and this record's bytes."""
    return hashlib.sha256(bytes.fromhex(previous) + record).hexdigest()


def _genesis(meta: Mapping[str, str]) -> str:
    """The hash the first record is chained to: the log's case and creation time."""
    text = f"iort-session-log\n{meta.get('case_id', '')}\n{meta.get('created_unix_s', '')}"
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ChainCheck:
    """What :meth:`SessionLog.verify` found.

    Attributes
    ----------
    status : {"intact", "unchained", "broken"}
        The chain holds; the log predates the chain (schema 1); or it does not hold.
    records : int
        Records checked.
    message : str
        One line for the user (empty when intact).
    bad_seq : int or None
        The first record that does not continue the chain (``broken`` only).
    """

    status: str
    records: int
    message: str = ""
    bad_seq: int | None = None

    @property
    def ok(self) -> bool:
        """True unless the chain is broken."""
        return self.status != "broken"


def _check_rows(rows: list[tuple], meta: Mapping[str, str], path: Path) -> ChainCheck:
    """Walk the chain of ``rows`` (seq, t_unix_s, t_mono_s, kind, payload, chain)."""
    where = f"session log {path}"
    previous, expected_seq = _genesis(meta), 1
    for seq, t_unix, t_mono, kind, payload, chain in rows:
        seq = int(seq)
        label = f"record {seq} ({kind})"
        if seq > expected_seq:
            gap = (f"record {expected_seq}" if seq == expected_seq + 1
                   else f"records {expected_seq}-{seq - 1}")
            return ChainCheck("broken", len(rows), f"{where}: {gap} missing before {label} "
                              "(deleted or renumbered); do not use it, keep it for inspection",
                              seq)
        if seq < expected_seq:
            return ChainCheck("broken", len(rows), f"{where}: {label} out of order or "
                              "inserted; do not use it, keep it for inspection", seq)
        own = record_bytes(seq, t_unix, t_mono, kind, payload)
        if chain is None or not isinstance(chain, str) or len(chain) != 64:
            return ChainCheck("broken", len(rows), f"{where}: {label} has no chain hash: it "
                              "was inserted by hand; do not use it, keep it for inspection",
                              seq)
        try:
            link = chain_link(previous, own)
        except ValueError:   # a previous hash that is not hex
            link = ""
        if link != chain:
            return ChainCheck("broken", len(rows), f"{where}: {label} was edited, moved or "
                              "inserted after it was written (its hash does not continue "
                              "the chain); do not use it, keep it for inspection", seq)
        previous, expected_seq = chain, seq + 1
    head = meta.get("chain_head", "")
    last = f"{expected_seq - 1}:{previous}" if rows else ""
    if head != last:
        what = ("the last record(s) were deleted or the head was edited" if rows else
                "its records were deleted")
        return ChainCheck("broken", len(rows), f"{where}: {what} (chain head "
                          f"{head.split(':')[0] or 'missing'} != last record "
                          f"{expected_seq - 1}); do not use it, keep it for inspection",
                          expected_seq)
    return ChainCheck("intact", len(rows))


class SessionLog:
    """Append-only, crash-safe record of one session (SQLite WAL).

    Use :meth:`create` for a new session and :meth:`open` to read back or continue one.
    Thread safe: the GUI thread and workers may append concurrently.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "s.sqlite"
    >>> with SessionLog.create(path, case_id="phantom") as slog:
    ...     _ = slog.log_warning("tracking lost", source="applicator")
    >>> [e.kind for e in SessionLog.open(path, readonly=True).events()]
    ['session_start', 'warning', 'session_end']
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, *, readonly: bool) -> None:
        self._conn = conn
        self.path = path
        self.readonly = readonly
        self._lock = threading.Lock()
        self._closed = False
        columns = {r[1] for r in conn.execute("PRAGMA table_info(events)")}
        self._chained = "chain" in columns
        self._genesis = _genesis(dict(conn.execute("SELECT key, value FROM meta").fetchall()))

    # ----------------------------------------------------------------- life cycle
    @classmethod
    def create(cls, path: str | os.PathLike[str], *, case_id: str = "",
               metadata: Mapping[str, Any] | None = None) -> SessionLog:
        """Create a new session log at ``path``; refuses an existing file.

        Parameters
        ----------
        path : path-like
            New database file, created owner-only (0600); missing parent folders are
            created owner-only (0700). See :func:`session_log_path`.
        case_id : str
            Which case the session belongs to (recorded in ``meta`` and the start event).
        metadata : mapping, optional
            Extra fields recorded in the ``session_start`` event (versions, calibration...).
        """
        path = Path(path)
        _refuse_existing(path)
        make_private_folders(path.parent)
        staging = path.with_name(f".{path.name}.creating-{os.getpid()}")
        leftovers = [Path(f"{staging}{suffix}") for suffix in ("", "-journal", "-wal", "-shm")]
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
        _create_private_file(staging)
        conn = None
        try:
            cls._write_schema(staging, case_id)
            _link_new(staging, path)
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            cls._configure(conn)
        except BaseException:
            if conn is not None:
                conn.close()
                path.unlink(missing_ok=True)  # no half-made log left behind
            raise
        finally:
            for leftover in leftovers:
                leftover.unlink(missing_ok=True)
        slog = cls(conn, path, readonly=False)
        slog.append("session_start", {"case_id": case_id, **dict(metadata or {})})
        log.info("session log created: %s", path)
        return slog

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, readonly: bool = False,
             verify: bool = True) -> SessionLog:
        """Open an existing session log to read it back or continue appending.

        Parameters
        ----------
        path : path-like
            The log.
        readonly : bool
            Read only (reports, replays).
        verify : bool
            Check the hash chain (:meth:`verify`) and refuse a broken one; ``False`` opens a
            tampered log for inspection (read-only only).

        Raises
        ------
        InputError
            The file is missing, not SQLite, corrupt, not a session log, or its hash chain
            is broken (the message names the first bad record). Nothing is written to the
            file before these checks pass.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(f"session log {path} does not exist")
        _check_file(path)
        # Open read-only first: a damaged file is diagnosed without writing a byte to it.
        # (Read-only still lets SQLite read a WAL left behind by a killed writer.)
        probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                check_same_thread=False, isolation_level=None)
        try:
            cls._validate(probe, path)
            if verify or not readonly:
                check = cls(probe, path, readonly=True).verify()
                if not check.ok:
                    raise InputError(check.message)
        except sqlite3.DatabaseError as exc:
            probe.close()
            raise InputError(f"session log {path} is damaged ({exc}); the file was left "
                             "untouched — keep it for inspection and start a new log") from exc
        except BaseException:
            probe.close()
            raise
        if readonly:
            return cls(probe, path, readonly=True)
        probe.close()
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        cls._configure(conn)
        return cls(conn, path, readonly=False)

    @staticmethod
    def _write_schema(path: Path, case_id: str) -> None:
        """Create tables and meta in the (staging) file, committed and closed.

        The file is switched to WAL here, before it gets its real name: switching later
        writes a rollback journal, and a kill during the switch would leave a hot journal
        that a read-only open cannot roll back.
        """
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN")
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", [
                ("schema_version", str(SCHEMA_VERSION)),
                ("case_id", case_id),
                ("created_unix_s", repr(time.time())),
                ("chain_head", ""),
            ])
            conn.execute("COMMIT")
        finally:
            conn.close()

    @staticmethod
    def _configure(conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("session log: journal mode is %s, not WAL", mode)
        conn.execute("PRAGMA synchronous=FULL")

    @staticmethod
    def _validate(conn: sqlite3.Connection, path: Path) -> None:
        check = conn.execute("PRAGMA quick_check").fetchall()
        if [r[0] for r in check] != ["ok"]:
            problems = "; ".join(str(r[0]) for r in check[:3])
            raise InputError(f"session log {path} failed the integrity check ({problems}); "
                             "the file was left untouched — start a new log")
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        if app_id != APPLICATION_ID or not {"meta", "events"} <= tables:
            raise InputError(f"session log {path} is an SQLite file but not an IORT session "
                             "log; choose another path")
        version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if version is None or int(version[0]) > SCHEMA_VERSION:
            raise InputError(f"session log {path} has schema version "
                             f"{None if version is None else version[0]}; this program reads "
                             f"up to {SCHEMA_VERSION} — update the program")

    def close(self, *, reason: str = "", exit_code: int | None = None) -> None:
        """End the session cleanly: append ``session_end`` (writable logs), then close.

        Idempotent. A clean close checkpoints the WAL. ``reason`` (e.g. the exception that
        ended the session) and the program's ``exit_code`` are recorded in the
        ``session_end`` event.
        """
        if not self.readonly and not self._closed:
            payload: dict[str, Any] = {"reason": reason} if reason else {}
            if exit_code is not None:
                payload["exit_code"] = int(exit_code)
            try:
                self.append("session_end", payload)
            except (sqlite3.Error, RuntimeError):  # a closing log must still close
                log.exception("session log %s: could not record session_end", self.path)
        with self._lock:
            if not self._closed:
                self._conn.close()
                self._closed = True

    def __enter__(self) -> SessionLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close(reason="" if exc_type is None else exc_type.__name__)

    # ------------------------------------------------------------------ writing
    def append(self, kind: str, payload: Mapping[str, Any]) -> int:
        """Record one event durably; returns its sequence number.

        The event is committed (fsync'ed in WAL mode with ``synchronous=FULL``) before
        this returns.
        """
        if kind not in EVENT_KINDS:
            raise InputError(f"kind {kind!r} is not an event kind; choose one of: "
                             f"{', '.join(EVENT_KINDS)}")
        if self.readonly:
            raise PermissionError(f"session log {self.path} was opened read-only")
        text = json.dumps(_jsonable(dict(payload)), allow_nan=False, sort_keys=True)
        with self._lock:
            if self._closed:
                raise RuntimeError(f"session log {self.path} is closed")
            t_unix, t_mono = time.time(), time.monotonic()
            if not self._chained:   # a schema-1 log stays unchained
                cur = self._conn.execute(
                    "INSERT INTO events(t_unix_s, t_mono_s, kind, payload) VALUES (?, ?, ?, ?)",
                    (t_unix, t_mono, kind, text))
                return int(cur.lastrowid)
            return self._append_chained(t_unix, t_mono, kind, text)

    def _append_chained(self, t_unix: float, t_mono: float, kind: str, text: str) -> int:
        """Insert one record and move the chain head, in one transaction."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT seq, chain FROM events ORDER BY seq DESC LIMIT 1"
                               ).fetchone()
            seq = 1 if row is None else int(row[0]) + 1
            previous = self._genesis if row is None else str(row[1])
            chain = chain_link(previous, record_bytes(seq, t_unix, t_mono, kind, text))
            conn.execute("INSERT INTO events(seq, t_unix_s, t_mono_s, kind, payload, chain) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (seq, t_unix, t_mono, kind, text, chain))
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('chain_head', ?)",
                         (f"{seq}:{chain}",))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return seq

    def log_registration(self, *, method: str, fre_mm: float,
                         patient_from_reference: np.ndarray, accepted: bool,
                         tre_predicted_mm: float | None = None,
                         residuals_mm: Mapping[str, float] | None = None,
                         n_points: int | None = None) -> int:
        """Record a registration result (paired-point or surface) and whether it was accepted."""
        m = as_transform(patient_from_reference, name="patient_from_reference", rigid=True)
        return self.append("registration", {
            "method": method, "fre_mm": float(fre_mm), "accepted": bool(accepted),
            "tre_predicted_mm": None if tre_predicted_mm is None else float(tre_predicted_mm),
            "residuals_mm": dict(residuals_mm or {}), "n_points": n_points,
            "patient_from_reference": m})

    def log_confirmed_pose(self, *, patient_from_applicator: np.ndarray,
                           beam: Mapping[str, Any], coverage: Mapping[str, Any],
                           distance_to_plan_mm: float | None = None,
                           angle_to_plan_deg: float | None = None,
                           user: str = "") -> int:
        """Record an applicator pose the user confirmed with its dose parameters and coverage.

        ``beam`` holds energy_mev, applicator_diameter_mm, bevel_deg, disc, prescription_gy;
        ``coverage`` e.g. ``{"CTV": {"v90_percent": .., "d90_gy": ..}, "BOWEL": {...}}``.
        """
        m = as_transform(patient_from_applicator, name="patient_from_applicator", rigid=True)
        return self.append("confirmed_pose", {
            "patient_from_applicator": m, "beam": dict(beam), "coverage": dict(coverage),
            "distance_to_plan_mm": distance_to_plan_mm, "angle_to_plan_deg": angle_to_plan_deg,
            "user": user})

    def log_dose(self, *, beam: Mapping[str, Any], coverage: Mapping[str, Any],
                 compute_ms: float | None = None) -> int:
        """Record a dose computation's parameters and coverage numbers."""
        return self.append("dose", {"beam": dict(beam), "coverage": dict(coverage),
                                    "compute_ms": compute_ms})

    def log_warning(self, message: str, *, source: str = "") -> int:
        """Record a warning shown to the user (lost tracking, poor registration, ...)."""
        return self.append("warning", {"message": str(message), "source": str(source)})

    def log_action(self, action: str, **detail: Any) -> int:
        """Record a user action (mode switch, energy change, confirm, ...)."""
        return self.append("action", {"action": str(action), **detail})

    def log_anatomy_edit(self, edit: Mapping[str, Any], *, description: str = "",
                         n_edits: int | None = None) -> int:
        """Record an intraoperative anatomy edit as it was made.

        ``edit`` is the edit's JSON (:func:`models.patient.edits.edit_to_json`: kind,
        structure, transform or disc, who/when/how); ``description`` the list line shown
        ("BOWEL moved 35 mm, 4 deg"); ``n_edits`` the length of the list after it.
        """
        return self.append("anatomy_edit", {"edit": dict(edit), "description": description,
                                            "n_edits": n_edits})

    def log_anatomy_undo(self, edit: Mapping[str, Any], *, description: str = "",
                         n_edits: int | None = None, redo: bool = False) -> int:
        """Record an edit taken back (``redo``: put back) with its JSON, as it was logged."""
        return self.append("anatomy_redo" if redo else "anatomy_undo",
                           {"edit": dict(edit), "description": description,
                            "n_edits": n_edits})

    # ------------------------------------------------------------------ reading
    def verify(self) -> ChainCheck:
        """Walk the hash chain: intact, unchained (schema 1) or broken (which record).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "s.sqlite"
        >>> SessionLog.create(path).close()
        >>> SessionLog.open(path, readonly=True).verify().status
        'intact'
        """
        with self._lock:
            if not self._chained:
                count = self._conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
                return ChainCheck("unchained", int(count), f"session log {self.path}: written "
                                  "before records were hash-chained (unchained): edits "
                                  "cannot be detected")
            rows = self._conn.execute("SELECT seq, t_unix_s, t_mono_s, kind, payload, chain "
                                      "FROM events ORDER BY seq").fetchall()
            meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        return _check_rows(rows, meta, self.path)

    def meta(self) -> dict[str, str]:
        """The ``meta`` table (schema_version, case_id, created_unix_s)."""
        with self._lock:
            return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def events(self, kind: str | None = None) -> list[SessionEvent]:
        """All events in recording order, optionally only those of one ``kind``."""
        return list(self.iter_events(kind))

    def iter_events(self, kind: str | None = None) -> Iterator[SessionEvent]:
        """Iterate events in recording order (a replay reads these)."""
        query = "SELECT seq, t_unix_s, t_mono_s, kind, payload FROM events"
        args: tuple[Any, ...] = ()
        if kind is not None:
            query += " WHERE kind = ?"
            args = (kind,)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY seq", args).fetchall()
        for seq, t_unix, t_mono, k, payload in rows:
            yield SessionEvent(int(seq), float(t_unix), float(t_mono), str(k),
                               self._payload(seq, k, payload))

    def _payload(self, seq: int, kind: str, text: str) -> dict[str, Any]:
        try:
            payload = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise InputError(f"session log {self.path}: event #{seq} ({kind}) is damaged "
                             f"({exc}); 'iort replay' reads what is intact") from None
        if not isinstance(payload, dict):
            raise InputError(f"session log {self.path}: event #{seq} ({kind}) is not a "
                             "JSON object; 'iort replay' reads what is intact")
        return payload

    def last(self, kind: str) -> SessionEvent | None:
        """The most recent event of ``kind`` or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT seq, t_unix_s, t_mono_s, kind, payload FROM events WHERE kind = ? "
                "ORDER BY seq DESC LIMIT 1", (kind,)).fetchone()
        if row is None:
            return None
        return SessionEvent(int(row[0]), float(row[1]), float(row[2]), str(row[3]),
                            self._payload(int(row[0]), str(row[3]), row[4]))
