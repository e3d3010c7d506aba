"""Shared pieces of the fuzz harness: case budget, per-case deadline, oracles, mutations.

Why hypothesis and not atheris: the parsers are pure Python (pydantic, json, pydicom,
struct) where coverage feedback finds little that structured generation does not, and
hypothesis is deterministic (``derandomize``: the same cases on every run, so a failure
in CI reproduces on a laptop), shrinks a failure to its smallest input, and runs inside
pytest with no extra build. Every target checks more than "no crash": an accepted input
must mean exactly what the file says (round-trip oracles), a refused one must raise
:class:`~models.base.errors.InputError` whose one-line message names the file.

Budget: ``IORT_FUZZ_CASES`` cases per parser (``make fuzz`` sets 10,000); without it the
normal test run uses :data:`SUITE_CASES` so that all parsers together stay well under two
minutes. Each case has a wall-clock deadline (:data:`CASE_DEADLINE_S`): a parser that
takes longer is a hang, reported as :class:`FuzzHang`.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import logging
import math
import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from models.base.errors import InputError

#: Cases per parser in the normal test run (bounded profile).
SUITE_CASES = 100
#: A single case taking longer than this (s, wall clock) is a hang.
CASE_DEADLINE_S = float(os.environ.get("IORT_FUZZ_DEADLINE_S", "20"))

#: Cases run so far, per target name (read by ``benchmarks/bench_reliability.py``).
CASES: collections.Counter[str] = collections.Counter()


def workspace(prefix: str) -> Path:
    """A temporary folder for one fuzz module's files, removed when the process exits."""
    import atexit
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=f"iort-fuzz-{prefix}-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def fuzz_cases() -> int:
    """Cases per parser: ``IORT_FUZZ_CASES`` or the bounded suite budget."""
    text = os.environ.get("IORT_FUZZ_CASES", "").strip()
    return int(text) if text else SUITE_CASES


def fuzz_settings(cases: int | None = None) -> settings:
    """Deterministic hypothesis settings for ``cases`` examples, no timing deadline
    (the wall-clock :func:`deadline` is the hang check; hypothesis's own deadline is
    flaky on a shared CPU)."""
    return settings(max_examples=cases or fuzz_cases(), deadline=None, derandomize=True,
                    database=None, print_blob=False,
                    suppress_health_check=list(HealthCheck))


class FuzzHang(BaseException):
    """A case ran past :data:`CASE_DEADLINE_S` (BaseException: parsers that catch
    ``Exception`` must not swallow it)."""


@contextlib.contextmanager
def deadline(seconds: float = CASE_DEADLINE_S) -> Iterator[None]:
    """Raise :class:`FuzzHang` in the main thread if the block runs longer than ``seconds``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expired(signum: int, frame: object) -> None:
        raise FuzzHang(f"case ran longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def fresh_folder(folder: Path, files: dict[str, bytes]) -> Path:
    """``folder`` emptied and filled with ``files`` (name -> bytes): one case on disk."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def logged_warnings(logger: str) -> Iterator[list[str]]:
    """The warning messages ``logger`` (and its children) log inside the block."""
    handler = _Warnings()
    logging.getLogger(logger).addHandler(handler)
    try:
        yield handler.lines
    finally:
        logging.getLogger(logger).removeHandler(handler)


def run_case(target: str, path: Path | str | None, read: Callable[[], Any]) -> Any | None:
    """Run one case of ``target``: the parsed result, or None when it was refused.

    A refusal must be an :class:`InputError` whose message is one line and names the
    file (``path``); anything else propagates and fails the case.
    """
    CASES[target] += 1
    with deadline():
        try:
            return read()
        except InputError as exc:
            message = str(exc)
            assert message and "\n" not in message, f"refusal is not one line: {message!r}"
            if path is not None:
                name = Path(path).name
                assert name in message, f"refusal does not name the file {name}: {message!r}"
            return None


# --------------------------------------------------------------------------- mutations

#: Values that have broken parsers before: wrong types, special floats, huge numbers.
NASTY = st.sampled_from([
    None, True, False, 0, -1, 1, 2, 0.0, -0.0, 0.5, -1e-320, 1e-320, 1e308, -1e308, 3e38,
    2**31, 2**63, 2**64, -(2**63) - 1, 10**30, "", "NaN", "nan", "Infinity", "-inf", "1e400",
    "0", "1.0", "x", "\x00", "é", [], {}, [0], [1, 2, 3], [[1, 2], [3]], [None], {"a": 1},
    [[0.0] * 4] * 4, [float("1e308")] * 3]).map(copy.deepcopy)   # fresh lists and dicts
JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12), NASTY),
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def json_paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every node of a parsed JSON document as a key/index path (root is ``()``)."""
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += json_paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out += json_paths(value, (*prefix, index))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _set(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def _scaled(value: Any, factor: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    result = value * factor
    if isinstance(result, float) and not math.isfinite(result):
        return 1e308
    return result


@st.composite
def mutated_json(draw: st.DrawFn, doc: Any, *, max_edits: int = 3) -> Any:
    """``doc`` (a parsed JSON document) after 1-``max_edits`` structural edits: a node
    replaced by an arbitrary or nasty value, deleted, scaled, a list truncated or an item
    duplicated, a key added. Returns a new document (``doc`` is not changed)."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, max_edits))):
        paths = json_paths(doc)
        path = draw(st.sampled_from(paths))
        node = _get(doc, path)
        op = draw(st.sampled_from(["replace", "nasty", "delete", "scale", "truncate",
                                   "duplicate", "add", "wrap"]))
        if op == "replace":
            doc = _set(doc, path, draw(JSON_VALUE))
        elif op == "nasty":
            doc = _set(doc, path, draw(NASTY))
        elif op == "delete" and path:
            parent = _get(doc, path[:-1])
            del parent[path[-1]]
        elif op == "scale":
            factor = draw(st.sampled_from([-1.0, 0.0, 0.5, 2.0, 1.0001, 1e10, 1e-10, -1e300]))
            doc = _set(doc, path, _scaled(node, factor))
        elif op == "truncate" and isinstance(node, list) and node:
            del node[draw(st.integers(0, len(node) - 1)):]
        elif op == "duplicate" and isinstance(node, list) and node:
            node.append(copy.deepcopy(node[draw(st.integers(0, len(node) - 1))]))
        elif op == "add" and isinstance(node, dict):
            node[draw(st.text(max_size=8))] = draw(JSON_VALUE)
        elif op == "wrap":
            doc = _set(doc, path, [node])
    return doc


@st.composite
def mutated_bytes(draw: st.DrawFn, data: bytes, *, max_edits: int = 4) -> bytes:
    """``data`` after byte-level edits: flips, deletions, insertions, truncation."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, max_edits))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "set"]))
        if not buf:
            buf += draw(st.binary(min_size=1, max_size=4))
            continue
        at = draw(st.integers(0, len(buf) - 1))
        if op == "flip":
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete":
            del buf[at:at + draw(st.integers(1, 16))]
        elif op == "insert":
            buf[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "truncate":
            del buf[at:]
        else:
            buf[at] = draw(st.sampled_from(b"\x00\xff-.e9 ,:[]{}\"\n\t"))
    return bytes(buf)
