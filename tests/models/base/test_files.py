"""read_json_file: one-line errors naming the file, where and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.base.errors import InputError
from models.base.files import read_json_file


class _OtherError(InputError):
    """Stands for a package's own InputError subclass (e.g. CalibrationError)."""


def test_ok_file(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_text('{"a": [1, 2.5], "b": "é"}', encoding="utf-8")
    assert read_json_file(path, what="plan") == {"a": [1, 2.5], "b": "é"}
    assert read_json_file(str(path), what="plan") == {"a": [1, 2.5], "b": "é"}


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(InputError, match="not found; check the path") as info:
        read_json_file(path, what="pose file")
    assert str(info.value).startswith(f"pose file {path}: cannot read")
    assert len(str(info.value).splitlines()) == 1


def test_a_folder_is_not_readable(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        read_json_file(tmp_path, what="pose file")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(InputError, match=r"binary.json: not UTF-8 text \(byte 0\); save it"):
        read_json_file(path, what="tool file")


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "a": 1,\n  "b": oops\n}\n')
    with pytest.raises(InputError, match=r"bad.json: not valid JSON at line 3 column 8 .*"
                                         r"fix the syntax there") as info:
        read_json_file(path, what="board file")
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_constants_are_refused(tmp_path: Path, constant: str) -> None:
    path = tmp_path / "cam.json"
    path.write_text(f'{{"fx": {constant}}}')
    with pytest.raises(InputError, match=f"cam.json: contains {constant}, which is not a valid"):
        read_json_file(path, what="calibration file")


def test_error_class_and_hint(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("[1,")
    with pytest.raises(_OtherError, match=r"; re-run the calibration$") as info:
        read_json_file(path, what="calibration file", error=_OtherError,
                       hint="re-run the calibration")
    assert isinstance(info.value, InputError)


def test_deeply_nested_json_is_one_line_not_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match=r"deep\.json: nested too deeply") as info:
        read_json_file(path, what="tool file")
    assert len(str(info.value).splitlines()) == 1


def test_integer_too_large_for_a_float_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text('{"camera_matrix": [[1' + "0" * 400 + "]]}")
    with pytest.raises(InputError, match=r"big\.json: integer 1000.* is too large"):
        read_json_file(path, what="calibration file")
    assert read_json_file(_write(tmp_path, '{"n": 9223372036854775807}'),
                          what="x") == {"n": 2 ** 63 - 1}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ok.json"
    path.write_text(text)
    return path
