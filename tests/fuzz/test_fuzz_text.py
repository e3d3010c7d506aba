"""Fuzz the text formats: OpenCV YAML/XML calibrations, depth-dose CSV, PTW .mcc.

Edits are either a number token replaced by another number (the edited file then has a
known meaning the reader must give back, or refuse) or raw byte edits (the reader must
refuse cleanly or give back a valid result).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import fuzz_settings, mutated_bytes, run_case, workspace

pytestmark = pytest.mark.fuzz

_WORK = workspace("text")
_DATA = Path(__file__).resolve().parents[1] / "data"
_NUMBER = re.compile(rb"(?<![\w.])-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?(?![\w.])")

NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(lambda v: repr(v).encode()),
    st.integers(-(10**6), 10**6).map(lambda v: str(v).encode()),
    st.sampled_from([b"0", b"-0", b"1e400", b"-1e400", b"1e-400", b"nan", b".nan", b"inf",
                     b".inf", b"-.Inf", b"0x10", b"1_000", b"1,5", b"", b"+1", b"1e308",
                     b"3e38", b"007", b"1.", b".5"]))


@st.composite
def number_edit(draw: st.DrawFn, text: bytes) -> tuple[bytes, int, bytes]:
    """``text`` with its n-th number token replaced: (new text, n, new token)."""
    tokens = list(_NUMBER.finditer(text))
    n = draw(st.integers(0, len(tokens) - 1))
    new = draw(NUMBER_TEXT)
    match = tokens[n]
    return text[:match.start()] + new + text[match.end():], n, new


def _plain_float(token: bytes) -> float | None:
    """What a number token means in YAML/XML (None: not a number there): decimal, or a
    YAML hexadecimal integer."""
    if re.fullmatch(rb"[-+]?0x[0-9a-fA-F]+", token):
        return float(int(token, 16))
    if not re.fullmatch(rb"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", token):
        return None
    return float(token)


# ------------------------------------------------------- OpenCV YAML / XML calibrations

def _calibration():
    from calibration.camera import CameraCalibration

    return CameraCalibration(
        camera_matrix=np.array([[800.0, 0.0, 319.5], [0.0, 805.0, 239.5], [0.0, 0.0, 1.0]]),
        dist_coeffs=np.array([0.1, -0.05, 0.001, 0.0005, 0.01]), image_size=(640, 480),
        rms_px=0.3, per_view_px=np.array([0.2, 0.3]))


def _values(cal) -> np.ndarray:
    return np.concatenate([[cal.image_size[0], cal.image_size[1]], cal.camera_matrix.ravel(),
                           cal.dist_coeffs.ravel(), [cal.rms_px], cal.per_view_px.ravel()])


def _opencv_text(suffix: str) -> bytes:
    from calibration.io import save_calibration

    return save_calibration(_calibration(), _WORK / f"base{suffix}").read_bytes()


def check_calibration_opencv(suffix: str, edit: tuple[bytes, int | None, bytes | None]) -> None:
    from calibration.camera import validate_calibration
    from calibration.io import load_calibration

    text, _, token = edit
    path = _WORK / f"camera{suffix}"
    path.write_bytes(text)
    cal = run_case(f"calibration_{suffix[1:]}", path, lambda: load_calibration(path))
    if cal is None:
        return
    validate_calibration(cal, source="fuzz oracle")
    k = cal.camera_matrix
    assert np.all(np.isfinite(_values(cal))) and k[0, 0] > 0 and k[1, 1] > 0
    np.testing.assert_allclose(k[2], [0, 0, 1], atol=1e-9)
    assert all(type(v) is int for v in cal.image_size)
    before, after = _values(_calibration()), _values(cal)
    if token is None or before.shape != after.shape:
        return
    changed = np.flatnonzero(before != after)
    assert changed.size <= 1, f"one number edited, {changed.size} values changed"
    meaning = _plain_float(token)
    if changed.size == 1:
        assert meaning is not None, f"token {token!r} read as {after[changed[0]]}"
        expected = meaning if changed[0] >= 2 else int(meaning)
        assert after[changed[0]] == expected, (token, after[changed[0]])
        if changed[0] < 2:
            assert meaning == int(meaning), f"image size {token!r} read as a whole number"


def _opencv_edits(suffix: str) -> st.SearchStrategy:
    text = _opencv_text(suffix)
    return st.one_of(number_edit(text),
                     mutated_bytes(text).map(lambda b: (b, None, None)))


@fuzz_settings()
@given(st.data())
def test_calibration_yaml(data) -> None:
    check_calibration_opencv(".yaml", data.draw(_opencv_edits(".yaml")))


@fuzz_settings()
@given(st.data())
def test_calibration_xml(data) -> None:
    check_calibration_opencv(".xml", data.draw(_opencv_edits(".xml")))


# ---------------------------------------------------------------------- depth-dose CSV

_DEPTHS = np.arange(0.0, 62.0, 2.0)
_CSV = ("depth_mm,dose\n" + "".join(f"{d:g},{100 * math.exp(-((d - 18) / 20) ** 2):.3f}\n"
                                     for d in _DEPTHS)).encode()


def _independent_csv(text: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Depths and doses of a CSV as this oracle reads it (plain decimal numbers only)."""
    lines = text.decode("utf-8-sig").splitlines()[1:]
    depth, dose = [], []
    for line in lines:
        if not line.strip(" ,"):
            continue
        cells = [c.strip() for c in line.split(",")]
        depth.append(float(cells[0]))
        dose.append(float(cells[1]))
    return np.array(depth), np.array(dose)


def check_depth_dose_csv(edit: tuple[bytes, int | None, bytes | None]) -> None:
    from models.beams.commissioning import read_depth_dose_csv

    text, _, _ = edit
    path = _WORK / "pdd.csv"
    path.write_bytes(text)
    result = run_case("commissioning_csv", path, lambda: read_depth_dose_csv(path))
    if result is None:
        return
    depth, dose = result
    assert np.all(np.isfinite(depth)) and np.all(np.diff(depth) > 0) and depth[0] >= 0
    assert np.all(np.isfinite(dose)) and np.all(dose >= 0)
    assert dose.max() == pytest.approx(100.0, rel=1e-12)
    want_depth, want_dose = _independent_csv(text)
    np.testing.assert_array_equal(depth, want_depth)
    np.testing.assert_allclose(dose, 100.0 * (want_dose / want_dose.max()), rtol=1e-12)


@fuzz_settings()
@given(st.one_of(number_edit(_CSV), mutated_bytes(_CSV).map(lambda b: (b, None, None))))
def test_commissioning_csv(edit) -> None:
    check_depth_dose_csv(edit)


# ----------------------------------------------------------------------------- PTW .mcc

_MCC = (_DATA / "synthetic_12mev_100mm.mcc").read_bytes()


def check_mcc(edit: tuple[bytes, int | None, bytes | None]) -> None:
    from models.beams.commissioning import read_mcc

    text, _, _ = edit
    path = _WORK / "scan.mcc"
    path.write_bytes(text)
    curves = run_case("commissioning_mcc", path,
                      lambda: read_mcc(path, energy_mev=12.0, diameter_mm=100.0))
    if curves is None:
        return
    z, dz = curves.depth_mm, curves.depth_dose_percent
    assert np.all(np.isfinite(z)) and np.all(np.diff(z) > 0) and len(z) >= 4
    assert np.all(np.isfinite(dz)) and np.all(dz >= 0)
    assert dz.max() == pytest.approx(100.0, rel=1e-12)
    for pos, val in ((curves.x_mm, curves.profile_x_percent),
                     (curves.y_mm, curves.profile_y_percent)):
        if len(pos):
            assert math.isfinite(curves.profile_depth_mm) and curves.profile_depth_mm >= 0
            assert np.all(np.isfinite(pos)) and np.all(np.diff(pos) > 0)
            assert np.all(np.isfinite(val)) and np.all(val >= 0)
            assert float(np.interp(0.0, pos, val)) == pytest.approx(100.0, rel=1e-9)


@fuzz_settings()
@given(st.one_of(number_edit(_MCC), mutated_bytes(_MCC).map(lambda b: (b, None, None))))
def test_commissioning_mcc(edit) -> None:
    check_mcc(edit)
