"""Robustness: mutated, truncated and garbled DICOM files never escape as a library exception.

A seeded mutator corrupts real files -- the phantom's CT slices and RT Structure Set, and our
own RT Dose and RT Plan -- in ways seen in the field (truncated transfers, flipped bytes,
broken element lengths, dropped or overwritten attributes, non-DICOM files). Each mutated
input must either import or raise :class:`models.base.errors.InputError` with a message; any
other exception, or a reader running past its time limit, fails the test and is listed with
the seed and mutation so it can be replayed.
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest

from models.base.errors import InputError
from models.dicom.common import Identity, new_uid
from models.dicom.rtdose import read_rtdose, write_rtdose
from models.dicom.rtplan import ElectronPlan, read_rtplan, write_rtplan
from models.patient.volume import Volume

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on invalid values

#: Seconds one import may take before it counts as a hang.
TIME_LIMIT_S = 20.0


class _TimeLimitExceeded(BaseException):
    """Raised by the alarm handler; a BaseException so no reader can swallow it."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def handler(signum, frame):
        raise _TimeLimitExceeded

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class _Element:
    """Byte layout of one top-level data element of a Part 10 file."""

    start: int         # first byte of the tag
    length_at: int     # first byte of the length field
    length_size: int   # 2 or 4
    value_start: int
    value_end: int


def _elements(data: bytes) -> list[_Element]:
    """Top-level explicit-VR elements of a file written by pydicom (for targeted damage)."""
    out = []
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data), defer_size=None)
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)  # still raw: nothing has been converted yet
        tell = getattr(raw, "value_tell", None)
        length = getattr(raw, "length", None)
        if tell is None or length is None or length == 0xFFFFFFFF:
            continue
        long_vr = raw.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "SQ", "UN", "UC", "UR", "UT")
        size = 4 if long_vr else 2
        header = 12 if long_vr else 8
        out.append(_Element(tell - header, tell - size, size, tell, tell + length))
    return out


def _mutate(data: bytes, elements: list[_Element], rng: np.random.Generator
            ) -> tuple[str, bytes]:
    """One random corruption of ``data``; returns (description, new bytes)."""
    kinds = ("truncate", "flip", "garble", "delete", "insert", "length", "value", "drop",
             "empty", "text")
    weights = np.array([3, 3, 2, 1, 1, 3, 4, 2, 0.3, 0.3])
    kind = str(rng.choice(kinds, p=weights / weights.sum()))
    size = len(data)
    header_end = min((e.value_start for e in elements if e.value_end - e.value_start > 4096),
                     default=size)

    def where() -> int:
        # most damage in the header, where the structure lives
        limit = header_end if rng.random() < 0.85 else size
        return int(rng.integers(0, max(1, limit)))

    buf = bytearray(data)
    if kind == "truncate":
        cut = int(rng.integers(0, size))
        return f"truncate at {cut}", bytes(buf[:cut])
    if kind == "flip":
        spots = [where() for _ in range(int(rng.integers(1, 9)))]
        for spot in spots:
            buf[spot] ^= int(rng.integers(1, 256))
        return f"flip bytes {spots}", bytes(buf)
    if kind == "garble":
        at, n = where(), int(rng.integers(1, 65))
        buf[at:at + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        return f"garble {n} bytes at {at}", bytes(buf)
    if kind == "delete":
        at, n = where(), int(rng.integers(1, 33))
        del buf[at:at + n]
        return f"delete {n} bytes at {at}", bytes(buf)
    if kind == "insert":
        at, n = where(), int(rng.integers(1, 33))
        buf[at:at] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        return f"insert {n} bytes at {at}", bytes(buf)
    if kind == "empty":
        return "empty file", b""
    if kind == "text":
        return "text file", b"This is not a DICOM file.\n" * int(rng.integers(1, 50))
    elem = elements[int(rng.integers(0, len(elements)))]
    if kind == "length":
        choice = [0, 1, 3, 0xFF, 0xFFFF, 0xFFFFFFFF, int(rng.integers(0, 2**16))]
        value = int(rng.choice(choice)) & ((1 << (8 * elem.length_size)) - 1)
        buf[elem.length_at:elem.length_at + elem.length_size] = value.to_bytes(
            elem.length_size, "little")
        return f"length of element at {elem.start} -> {value}", bytes(buf)
    if kind == "value":
        n = elem.value_end - elem.value_start
        pick = rng.integers(0, 3)
        if pick == 0:
            junk = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        elif pick == 1:
            junk = bytes(rng.choice(list(b"0123456789.-+eE\\ ab"), n).astype(np.uint8))
        else:
            junk = b"\x00" * n
        buf[elem.value_start:elem.value_end] = junk
        return f"value of element at {elem.start} overwritten ({pick})", bytes(buf)
    del buf[elem.start:elem.value_end]
    return f"drop element at {elem.start}", bytes(buf)


@dataclass(frozen=True)
class _Outcome:
    case: str
    result: str  # "ok", "input_error" or a failure description


def _run(case: str, func: Callable[[], object], check: Callable[[object], None]) -> _Outcome:
    try:
        with _time_limit(TIME_LIMIT_S):
            value = func()
        check(value)
        return _Outcome(case, "ok")
    except InputError as exc:
        if not str(exc).strip():
            return _Outcome(case, "InputError without a message")
        return _Outcome(case, "input_error")
    except _TimeLimitExceeded:
        return _Outcome(case, f"hang: more than {TIME_LIMIT_S} s")
    except Exception as exc:  # the point is to catch whatever escapes
        return _Outcome(case, f"uncaught {type(exc).__name__}: {str(exc)[:160]}")


def _fuzz(source: Path, count: int, rng: np.random.Generator, tmp: Path,
          load: Callable[[Path], object], check: Callable[[object], None]) -> list[_Outcome]:
    data = source.read_bytes()
    elements = _elements(data)
    outcomes = []
    for n in range(count):
        what, mutated = _mutate(data, elements, rng)
        path = tmp / f"{source.stem}-{n:03d}.dcm"
        path.write_bytes(mutated)
        outcomes.append(_run(f"{source.name} #{n}: {what}", lambda p=path: load(p), check))
    return outcomes


def _failures(outcomes: list[_Outcome]) -> list[str]:
    return [f"{o.case} -> {o.result}" for o in outcomes if o.result not in ("ok", "input_error")]


def _check_dose(result: object) -> None:
    dose = result.dose  # type: ignore[attr-defined]
    assert isinstance(dose, Volume)
    assert np.all(np.isfinite(dose.patient_from_voxel))
    assert all(n >= 1 for n in dose.shape)


def _check_plan(result: object) -> None:
    result.electron_plan()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def rt_files(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("rt")
    ident = Identity(patient_id="FUZZ", patient_name="Fuzz^Test", study_instance_uid=new_uid(),
                     frame_of_reference_uid=new_uid())
    rng = np.random.default_rng(7)
    dose = Volume.from_grid(rng.uniform(0, 11, (6, 8, 9)), spacing_mm=(2, 2, 2.5),
                            origin_mm=(-8, -8, -6))
    plan_uid = new_uid()
    pose = np.eye(4)
    pose[:3, 3] = [0.0, -20.0, 5.0]
    plan = ElectronPlan(machine="IORT-LINAC", energy_mev=9.0, applicator_id="A50B15",
                        applicator_diameter_mm=50.0, bevel_deg=15.0, mu=950.0,
                        prescription_gy=10.0, reference_point_lps=[0.0, -5.0, 5.0],
                        patient_from_applicator=pose)
    return {
        "rtdose": write_rtdose(out / "rd.dcm", dose, ident, referenced_plan_uid=plan_uid),
        "rtplan": write_rtplan(out / "rp.dcm", plan, ident,
                               structure_set_uid=new_uid()),
    }


def test_mutator_is_deterministic(rt_files):
    data = rt_files["rtplan"].read_bytes()
    elements = _elements(data)
    first = [_mutate(data, elements, np.random.default_rng(3)) for _ in range(5)]
    again = [_mutate(data, elements, np.random.default_rng(3)) for _ in range(5)]
    assert first == again
    assert any(m != data for _, m in first)


def test_time_limit_catches_a_hang():
    def spin() -> None:
        while True:
            pass

    outcome = _run("spin", lambda: (signal.setitimer(signal.ITIMER_REAL, 0.05), spin()),
                   lambda _: None)
    assert outcome.result.startswith("hang")


def test_unmutated_files_import(rt_files):
    _check_dose(read_rtdose(rt_files["rtdose"]))
    _check_plan(read_rtplan(rt_files["rtplan"]))


def test_mutated_rt_dose_and_plan(rt_files, tmp_path):
    rng = np.random.default_rng(20261123)
    outcomes = _fuzz(rt_files["rtdose"], 120, rng, tmp_path, read_rtdose, _check_dose)
    outcomes += _fuzz(rt_files["rtplan"], 120, rng, tmp_path, read_rtplan, _check_plan)
    assert len(outcomes) >= 200
    assert not _failures(outcomes), "\n".join(_failures(outcomes))
    print(collections.Counter(o.result for o in outcomes))
    # the mutator must actually hurt: many inputs are refused, some still import
    results = [o.result for o in outcomes]
    assert results.count("input_error") > 50
    assert results.count("ok") > 5
    shutil.rmtree(tmp_path, ignore_errors=True)


# --- the image import path: CT slices and RTSTRUCT of the phantom --------------------------

MINI_SLICES = 8


@pytest.fixture(scope="module")
def phantom_mini(tmp_path_factory, coarse_phantom) -> Path:
    """Eight CT slices through the tumour bed and the phantom's RTSTRUCT (fast to import)."""
    from models.dicom.writer import write_phantom

    full = write_phantom(tmp_path_factory.mktemp("phantom") / "dicom", spacing_mm=(3, 3, 4))
    first = int(np.argwhere(coarse_phantom.structures["CTV"].mask)[:, 0].min())
    mini = tmp_path_factory.mktemp("mini")
    for k in range(first, first + MINI_SLICES):
        shutil.copy(full / f"CT_{k + 1:04d}.dcm", mini)
    shutil.copy(full / "RS.dcm", mini)
    return mini


def _check_case(result: object) -> None:
    ct = result.ct  # type: ignore[attr-defined]
    assert isinstance(ct, Volume)
    assert np.all(np.isfinite(ct.patient_from_voxel))
    assert ct.shape[0] >= 1


def _fuzz_folder(mini: Path, target: str, count: int, rng: np.random.Generator,
                 tmp: Path) -> list[_Outcome]:
    """Import copies of ``mini`` where ``target`` (a CT slice or RS.dcm) is corrupted."""
    from models.dicom.reader import read_case

    files = sorted(mini.glob("*.dcm"))
    outcomes = []
    cache: dict[Path, tuple[bytes, list[_Element]]] = {}
    for n in range(count):
        if target == "ct":
            victim = files[int(rng.integers(0, MINI_SLICES))]
        else:
            victim = mini / "RS.dcm"
        if victim not in cache:
            data = victim.read_bytes()
            cache[victim] = (data, _elements(data))
        what, mutated = _mutate(*cache[victim], rng)
        folder = tmp / f"{target}-{n:03d}"
        folder.mkdir()
        for path in files:
            if path == victim:
                (folder / path.name).write_bytes(mutated)
            else:
                (folder / path.name).symlink_to(path)
        outcomes.append(_run(f"{victim.name} #{n}: {what}",
                             lambda f=folder: read_case(f), _check_case))
        shutil.rmtree(folder)
    return outcomes


def test_unmutated_mini_series_imports(phantom_mini):
    from models.dicom.reader import read_case

    case = read_case(phantom_mini)
    assert case.ct.shape[0] == MINI_SLICES
    assert "CTV" in case.structures


@pytest.mark.slow
def test_mutated_ct_slices_and_structure_sets(phantom_mini, tmp_path):
    rng = np.random.default_rng(4242)
    outcomes = _fuzz_folder(phantom_mini, "ct", 70, rng, tmp_path)
    outcomes += _fuzz_folder(phantom_mini, "rtstruct", 70, rng, tmp_path)
    assert len(outcomes) >= 140
    assert not _failures(outcomes), "\n".join(_failures(outcomes))
    print(collections.Counter(o.result for o in outcomes))
