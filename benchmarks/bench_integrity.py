"""Integrity under kills and tampering: session logs, case folders, DICOM exports.

Keys
----
``reliability.kill_runs``
    SIGKILLs of a writer at a random moment: a session-log writer, ``save_case --force``
    swapping a case folder, and ``export --force`` replacing a DICOM-RT folder (the
    ``*_kill_runs`` keys give each).
``reliability.lost_records``
    Session-log records acknowledged (``append`` returned) but missing after the kill and
    recovery, plus case or export folders found damaged or mixed after a kill: 0.
``reliability.acknowledged_records``
    Session-log records the killed writers had acknowledged (what ``lost_records`` checks).
``reliability.kill_damaged_folders``
    The folder part of ``lost_records``: a case or export that did not load whole, or mixed
    two generations.
``reliability.tamper_detected_percent``
    Random edits of sealed case folders (a value of the manifest changed, a key deleted, a
    ``files`` entry removed or pointed outside, a byte of a data file flipped) and of
    hash-chained session logs (a record's payload, time or kind edited, a record deleted,
    two swapped, one inserted or renumbered, the tail cut, the case renamed) that
    ``load_case`` / ``SessionLog.open`` refuse, in percent of all mutations: 100.
``reliability.tamper_mutations``
    How many mutations were tried (both kinds).

The kills fork the writer from this process (modules already imported), so one run costs
milliseconds plus a few writes: :func:`sigkill_runs` is also what the kill tests use.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

GROUP = "reliability"


def sigkill_runs(write: Callable[[int], None], check: Callable[[int], None], *, runs: int,
                 max_delay_s: float, rng: random.Random, max_writes_before: int = 2) -> int:
    """Kill a forked writer ``runs`` times at random moments; check after each kill.

    Each run forks a child that calls ``write(0)``, ``write(1)``... until killed. The
    parent waits until the child has finished a random number of writes (0 to
    ``max_writes_before``: so kills land in the first write and in later ones whatever the
    machine's speed), then a uniform random ``[0, max_delay_s]`` s more (about one write:
    the kill lands anywhere inside it), kills it with SIGKILL and calls ``check(run)``.

    Parameters
    ----------
    write : callable
        ``write(generation)`` writes once.
    check : callable
        ``check(run)`` after the kill: raises ``AssertionError`` when the data is damaged.
    runs : int
        Kills.
    max_delay_s : float
        Longest extra delay before the kill (s).
    rng : random.Random
        Seeded choices.
    max_writes_before : int
        Most writes the child finishes before the delay starts.

    Returns
    -------
    int
        Kills done (``runs``).

    Raises
    ------
    AssertionError
        A child ended before it was killed (its writer failed), or ``check`` failed.
    """
    for run in range(runs):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:   # the writer: never returns into the caller's code
            code = 0
            try:
                os.close(read_end)
                generation = 0
                while True:
                    write(generation)
                    os.write(write_end, b"w")
                    generation += 1
            except BaseException:
                code = 3
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end, "rb", buffering=0) as done:
            for _ in range(rng.randint(0, max_writes_before)):
                if not done.read(1):   # the child ended on its own
                    break
            time.sleep(rng.uniform(0.0, max_delay_s))
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        if not os.WIFSIGNALED(status):
            raise AssertionError(f"kill run {run}: the writer ended on its own "
                                 f"(status {status}) before it was killed")
        check(run)
    return runs


# ----------------------------------------------------------------------------- cases
def _two_cases():
    from models.patient.phantom import make_phantom

    first = make_phantom(spacing_mm=(6.0, 6.0, 8.0), seed=1)
    second = dataclasses.replace(first, ct=first.ct.with_array(first.ct.array + 7.0),
                                 patient_id="SECOND")
    return first, second


def case_kill_runs(folder: Path, *, runs: int, rng: random.Random) -> tuple[int, set[str]]:
    """Kill ``save_case(force=True)`` swapping two cases; the folder must hold one whole.

    Returns the kills and which of the two cases the kills left (both, when kills land
    before and after swaps)."""
    from models.patient.case_store import CASE_FILES, MANIFEST, load_case, save_case

    cases = _two_cases()
    save_case(cases[0], folder)
    start = time.perf_counter()
    save_case(cases[0], folder, force=True)
    once_s = time.perf_counter() - start
    seen: set[str] = set()

    def write(generation: int) -> None:   # always the case that is not there now
        there = json.loads((folder / MANIFEST).read_text())["patient_id"]
        save_case(cases[0] if there == "SECOND" else cases[1], folder, force=True)

    def check(run: int) -> None:
        back = load_case(folder)   # verifies the seal and every checksum
        truth = cases[1] if back.patient_id == "SECOND" else cases[0]
        seen.add(back.patient_id)
        if not np.array_equal(back.ct.array, truth.ct.array):
            raise AssertionError(f"kill run {run}: the case mixes two saves")
        extra = {p.name for p in folder.iterdir()} - set(CASE_FILES)
        if extra:
            raise AssertionError(f"kill run {run}: foreign files {extra} in the case")

    return sigkill_runs(write, check, runs=runs, max_delay_s=1.5 * once_s, rng=rng), seen


# ----------------------------------------------------------------------------- exports
def export_fixture():
    """A small case with a stored dose and its plan: an export writes 3 files, no dose run."""
    from models.dicom.common import ensure_uids, new_uid
    from models.dicom.rt_export import resolve_plan
    from models.patient.phantom import make_phantom

    case = make_phantom(spacing_mm=(9.0, 9.0, 10.0))
    ensure_uids(case)
    case.image_instance_uids = [new_uid("kill-ct", k) for k in range(case.ct.shape[0])]
    ramp = np.linspace(0.0, 12.0, case.ct.array.size, dtype=np.float32)
    case.dose = case.ct.with_array(ramp.reshape(case.ct.shape))
    return case, dataclasses.replace(resolve_plan(case), mu=150.0)


def check_export_whole(folder: Path, run: int) -> str:
    """RS, RP, RD present and of one export (RD -> RP -> RS references resolve); returns
    the RT Structure Set's UID (which export it was)."""
    import pydicom

    names = sorted(p.name for p in folder.iterdir())
    if names != ["RD.dcm", "RP.dcm", "RS.dcm"]:
        raise AssertionError(f"kill run {run}: export folder holds {names}")
    rs = pydicom.dcmread(folder / "RS.dcm", stop_before_pixels=True)
    rp = pydicom.dcmread(folder / "RP.dcm", stop_before_pixels=True)
    rd = pydicom.dcmread(folder / "RD.dcm", stop_before_pixels=True)
    if rd.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID != rp.SOPInstanceUID or \
            rp.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID != rs.SOPInstanceUID:
        raise AssertionError(f"kill run {run}: the export mixes files of two runs")
    return str(rs.SOPInstanceUID)


def export_kill_runs(folder: Path, *, runs: int, rng: random.Random) -> tuple[int, int]:
    """Kill ``export_case(force=True)``; the folder must hold one whole export.

    Returns the kills and how many different exports they left in place."""
    from models.dicom.rt_export import export_case

    case, spec = export_fixture()
    export_case(case, spec, folder)
    start = time.perf_counter()
    export_case(case, spec, folder, force=True)
    once_s = time.perf_counter() - start

    def write(generation: int) -> None:
        export_case(case, spec, folder, force=True)

    seen: set[str] = set()
    done = sigkill_runs(write, lambda run: seen.add(check_export_whole(folder, run)),
                        runs=runs, max_delay_s=1.2 * once_s, rng=rng, max_writes_before=1)
    return done, len(seen)


# ----------------------------------------------------------------------------- session logs
def session_log_kill_runs(folder: Path, *, runs: int,
                          rng: random.Random) -> tuple[int, int, int]:
    """Kill a session-log writer (creation included); returns (kills, lost, acknowledged).

    The child reports each sequence number ``append`` returned through a pipe; after the
    kill the log must open (its hash chain intact) and hold every one of them.
    """
    from guidance.record.session_log import SessionLog

    lost = total = 0
    for run in range(runs):
        path = folder / f"kill-{run}.sqlite"
        read_end, write_end = os.pipe()

        def write(generation: int, path=path, read_end=read_end, write_end=write_end) -> None:
            if generation == 0:
                os.close(read_end)
                write.slog = SessionLog.create(path, case_id="kill")
            seq = write.slog.log_confirmed_pose(
                patient_from_applicator=np.eye(4), beam={"energy_mev": 8.0},
                coverage={"CTV": {"v90_percent": float(generation)}})
            os.write(write_end, f"{seq}\n".encode())

        def check(_run: int) -> None:
            pass

        sigkill_runs(write, check, runs=1, max_delay_s=0.05, rng=rng, max_writes_before=40)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            acknowledged = [int(x) for x in pipe.read().split()]
        total += len(acknowledged)
        if not path.exists():
            if acknowledged:
                lost += len(acknowledged)
            continue
        slog = SessionLog.open(path, readonly=True)   # raises on a broken chain
        present = {e.seq for e in slog.events()}
        slog.close()
        lost += len(set(acknowledged) - present)
    return runs, lost, total


# ----------------------------------------------------------------------------- tampering
def _json_leaves(obj, prefix=()):
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _json_leaves(value, (*prefix, key))
    elif isinstance(obj, list):
        for n, value in enumerate(obj):
            yield from _json_leaves(value, (*prefix, n))
    else:
        yield prefix, obj


def _changed(value, rng: random.Random):
    """A different JSON value of a similar kind (a plausible edit)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + rng.choice([1, -1, 0.5, 10, 20, 1e-3]) if value == value else 0.0
    if isinstance(value, str):
        return (value[:-1] + ("X" if value[-1:] != "X" else "Y")) if value else "X"
    return 1


def _mutate_case(root: Path, rng: random.Random) -> str:
    """One random edit of a sealed case folder; returns what was done."""
    from models.patient.case_store import MANIFEST

    manifest_path = root / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    kind = rng.choice(["value", "value", "value", "delete", "files", "outside", "byte"])
    if kind == "byte":
        name = rng.choice(sorted(manifest["files"]))
        data = bytearray((root / name).read_bytes())
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        (root / name).write_bytes(bytes(data))
        return f"byte of {name}"
    if kind == "files":
        del manifest["files"][rng.choice(sorted(manifest["files"]))]
    elif kind == "outside":
        manifest["ct"]["file"] = "../" + manifest["ct"]["file"]
    elif kind == "delete":
        del manifest[rng.choice(sorted(manifest))]
    else:
        leaves = list(_json_leaves(manifest))
        path, value = rng.choice(leaves)
        node = manifest
        for key in path[:-1]:
            node = node[key]
        if path:
            node[path[-1]] = _changed(value, rng)
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return kind


def case_tamper(folder: Path, *, mutations: int, rng: random.Random) -> tuple[int, int]:
    """(detected, tried) random edits of a sealed case folder."""
    from models.base.errors import InputError
    from models.patient.case_store import load_case, save_case

    case = _two_cases()[0]
    case.plan = {"patient_from_applicator": np.eye(4).tolist(), "energy_mev": 8.0}
    case.dose = case.ct.with_array(np.zeros(case.ct.shape, np.float32))
    pristine = save_case(case, folder / "pristine")
    detected = 0
    for n in range(mutations):
        root = folder / f"m{n}"
        shutil.copytree(pristine, root)
        _mutate_case(root, rng)
        try:
            load_case(root)
        except InputError:
            detected += 1
        shutil.rmtree(root)
    return detected, mutations


_LOG_MUTATIONS = (
    "UPDATE events SET payload = replace(payload, '9', '8') WHERE seq = {a}",
    "UPDATE events SET payload = '{{}}' WHERE seq = {a}",
    "UPDATE events SET t_unix_s = t_unix_s + 1 WHERE seq = {a}",
    "UPDATE events SET t_mono_s = t_mono_s - 0.5 WHERE seq = {a}",
    "UPDATE events SET kind = 'warning' WHERE seq = {a}",
    "DELETE FROM events WHERE seq = {a}",
    "UPDATE events SET seq = -1 WHERE seq = {a};"
    "UPDATE events SET seq = {a} WHERE seq = {b};UPDATE events SET seq = {b} WHERE seq = -1",
    "INSERT INTO events(seq, t_unix_s, t_mono_s, kind, payload, chain) "
    "SELECT {last} + 1, t_unix_s, t_mono_s, kind, payload, chain FROM events WHERE seq = {a}",
    "UPDATE events SET seq = seq + 100 WHERE seq = {last}",
    "DELETE FROM events WHERE seq = {last}",
    "DELETE FROM events WHERE seq >= {a}",
    "UPDATE meta SET value = value || 'x' WHERE key = 'case_id'",
    "UPDATE events SET chain = (SELECT chain FROM events WHERE seq = {b}) WHERE seq = {a}",
)


def _chained_log(path: Path, rng: random.Random) -> None:
    from guidance.record.session_log import SessionLog

    with SessionLog.create(path, case_id="case-tamper") as slog:
        slog.log_registration(method="paired_point", fre_mm=0.49, accepted=True,
                              patient_from_reference=np.eye(4))
        for i in range(8):
            slog.log_confirmed_pose(patient_from_applicator=np.eye(4), beam={"energy_mev": 9},
                                    coverage={"CTV": {"v90_percent": 90.0 + rng.random()}})
            slog.log_warning(f"warning {i}", source="bench")


def log_tamper(folder: Path, *, mutations: int, rng: random.Random) -> tuple[int, int]:
    """(detected, tried) random edits of a hash-chained session log."""
    from guidance.record.session_log import SessionLog
    from models.base.errors import InputError

    pristine = folder / "pristine.sqlite"
    _chained_log(pristine, rng)
    last = 19   # session_start, registration, 8 x (pose, warning), session_end
    detected = tried = 0
    for n in range(mutations):
        path = folder / f"t{n}.sqlite"
        shutil.copy(pristine, path)
        a, b = rng.sample(range(1, last + 1), 2)
        statement = rng.choice(_LOG_MUTATIONS).format(a=a, b=b, last=last)
        conn = sqlite3.connect(path)
        before = conn.execute("SELECT * FROM events ORDER BY seq").fetchall() + \
            conn.execute("SELECT * FROM meta ORDER BY key").fetchall()
        conn.executescript(statement)
        after = conn.execute("SELECT * FROM events ORDER BY seq").fetchall() + \
            conn.execute("SELECT * FROM meta ORDER BY key").fetchall()
        conn.close()
        if after != before:   # an edit that changed nothing is no tampering
            tried += 1
            try:
                SessionLog.open(path, readonly=True).close()
            except InputError:
                detected += 1
        path.unlink()
    return detected, tried


def run(*, quick: bool = False) -> dict[str, float]:
    rng = random.Random(20261202)
    log_runs, case_runs, export_runs = (20, 20, 12) if quick else (30, 30, 20)
    mutations = 100 if quick else 400
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("logs", "case", "export", "tamper_case", "tamper_log"):
            (root / name).mkdir()
        logs, lost, acknowledged = session_log_kill_runs(root / "logs", runs=log_runs,
                                                         rng=rng)
        damaged = 0
        try:
            cases, _ = case_kill_runs(root / "case" / "c", runs=case_runs, rng=rng)
        except AssertionError:
            cases, damaged = case_runs, damaged + 1
        try:
            exports, _ = export_kill_runs(root / "export" / "e", runs=export_runs, rng=rng)
        except AssertionError:
            exports, damaged = export_runs, damaged + 1
        case_hit, case_tried = case_tamper(root / "tamper_case", mutations=mutations, rng=rng)
        log_hit, log_tried = log_tamper(root / "tamper_log", mutations=mutations, rng=rng)
    tried = case_tried + log_tried
    return {
        "reliability.kill_runs": float(logs + cases + exports),
        "reliability.session_log_kill_runs": float(logs),
        "reliability.case_kill_runs": float(cases),
        "reliability.export_kill_runs": float(exports),
        "reliability.acknowledged_records": float(acknowledged),
        "reliability.lost_records": float(lost + damaged),
        "reliability.kill_damaged_folders": float(damaged),
        "reliability.tamper_mutations": float(tried),
        "reliability.tamper_detected_percent": 100.0 * (case_hit + log_hit) / max(tried, 1),
        "reliability.tamper_case_detected_percent": 100.0 * case_hit / max(case_tried, 1),
        "reliability.tamper_log_detected_percent": 100.0 * log_hit / max(log_tried, 1),
    }
