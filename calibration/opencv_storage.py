"""Read OpenCV ``FileStorage`` YAML and XML files in Python, without OpenCV's parser.

OpenCV's native reader can abort the whole process on some malformed files (a heap
corruption reported by the C library, ``free(): invalid next size``), which no Python
``except`` can catch; a bad calibration file on a USB stick must not end the guidance. This
module reads the subset of the two formats that camera calibrations use:

* YAML (``%YAML:1.0`` or ``%YAML 1.0`` header, optional ``---``): a top-level map of
  ``key: value`` lines; scalars are integers, reals (``.Nan``, ``.Inf``, ``-.Inf``
  included), quoted or plain strings; ``key: !!opencv-matrix`` followed by an indented map
  of ``rows``, ``cols``, ``dt`` and ``data: [ ... ]`` (the list may span lines); flow
  sequences ``[ ... ]``. A key whose value is a nested map or block sequence (OpenCV
  tools write such extras; no calibration field is one) reads as :data:`SKIPPED`, so a
  calibration field given that way is refused by its reader as "not a matrix / number".
* XML: ``<opencv_storage>`` with one element per key; ``type_id="opencv-matrix"`` elements
  with ``rows``, ``cols``, ``dt`` and ``data`` children; DOCTYPE and entities are refused.

Every malformed input raises :class:`~calibration.errors.CalibrationError` naming the file
and the line or key. Files larger than :data:`MAX_BYTES` are refused before parsing.

Examples
--------
>>> import tempfile, pathlib
>>> text = '''%YAML:1.0
... ---
... image_width: 640
... camera_matrix: !!opencv-matrix
...    rows: 2
...    cols: 2
...    dt: d
...    data: [ 1., 2.,
...        3., 4. ]
... '''
>>> path = pathlib.Path(tempfile.mkdtemp()) / "c.yaml"
>>> _ = path.write_text(text)
>>> nodes = read_opencv_storage(path)
>>> nodes["image_width"], nodes["camera_matrix"].tolist()
(640, [[1.0, 2.0], [3.0, 4.0]])
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from calibration.errors import CalibrationError

#: Largest file read (bytes): a calibration is a few kB.
MAX_BYTES = 4 * 1024 * 1024
#: Largest matrix (elements) accepted.
MAX_ELEMENTS = 1_000_000
#: OpenCV depth codes of ``dt`` and the numpy type each reads as.
_DTYPES = {"u": np.uint8, "c": np.int8, "w": np.uint16, "s": np.int16, "i": np.int32,
           "f": np.float32, "d": np.float64, "h": np.float16}
_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_\-]*)\s*:(?:\s+(.*))?$")
_INT = re.compile(r"^[-+]?\d+$")
_HEX = re.compile(r"^[-+]?0[xX][0-9a-fA-F]+$")
_REAL = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_REAL_SPECIAL = {".nan": math.nan, ".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf}


class _Skipped:
    """A nested map or sequence of a key calibrations do not use (not interpreted)."""

    def __repr__(self) -> str:
        return "<skipped>"


SKIPPED = _Skipped()


def read_opencv_storage(path: str | Path) -> dict[str, Any]:
    """The top-level nodes of an OpenCV YAML (``.yaml``/``.yml``) or XML (``.xml``) file.

    Returns
    -------
    dict
        Key -> ``int``, ``float``, ``str``, a float64 ``np.ndarray`` (``!!opencv-matrix``,
        shape ``(rows, cols)``), a list of scalars (flow sequence) or :data:`SKIPPED`.

    Raises
    ------
    CalibrationError
        Unreadable, too large, not UTF-8/ASCII text, or not the format above.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise CalibrationError(f"{path}: {size} bytes is too large for a calibration "
                                   f"file (at most {MAX_BYTES}); is it the right file?")
        raw = path.read_bytes()
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CalibrationError(f"{path}: not a text file (byte {exc.start} is not UTF-8); "
                               "expected an OpenCV YAML/XML calibration") from exc
    if "\x00" in text:
        raise CalibrationError(f"{path}: not a text file (contains NUL bytes)")
    if path.suffix.lower() == ".xml" or text.lstrip().startswith("<"):
        return _parse_xml(text, path)
    return _parse_yaml(text, path)


# --- YAML -----------------------------------------------------------------------------

def _strip_comment(line: str) -> str:
    """The line without a ``#`` comment outside quotes."""
    quote = None
    for k, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k]
    return line


def _scalar(token: str, where: str) -> Any:
    """An int, float or str from one YAML scalar token."""
    token = token.strip()
    if not token:
        raise CalibrationError(f"{where}: empty value")
    if token[0] in "\"'":
        if len(token) < 2 or token[-1] != token[0]:
            raise CalibrationError(f"{where}: unterminated string {token[:40]!r}")
        return token[1:-1]
    if _INT.match(token):
        value = int(token)
        if abs(value) > 2**63:
            raise CalibrationError(f"{where}: integer {token[:40]} out of range")
        return value
    if _HEX.match(token):
        return int(token, 16)
    special = _REAL_SPECIAL.get(token.lower())
    if special is not None:
        return special
    if _REAL.match(token):         # strictly decimal: no '1_000', 'infinity', ' nan'
        return float(token)
    return token                   # a plain string


def _flow_list(body: str, where: str) -> list[Any]:
    """The scalars of a flow sequence's inside (``1., 2., 3.``)."""
    if "[" in body or "{" in body:
        raise CalibrationError(f"{where}: nested sequences are not a calibration value")
    items = [t for t in (s.strip() for s in body.split(",")) if t]
    return [_scalar(t, where) for t in items]


def _collect_flow(lines: list[tuple[int, str]], k: int, first: str,
                  path: Path) -> tuple[str, int]:
    """A flow sequence's inside from ``first`` (after ``[``) through the closing ``]``,
    reading further lines; returns (inside, index of the next line)."""
    parts, text, line_no = [], first, lines[k][0]
    while "]" not in text:
        parts.append(text)
        k += 1
        if k >= len(lines):
            raise CalibrationError(f"{path}: line {line_no}: '[' never closed")
        text = lines[k][1].strip()
    inside, rest = text.split("]", 1)
    if rest.strip():
        raise CalibrationError(f"{path}: line {lines[k][0]}: text after ']'")
    parts.append(inside)
    return " ".join(parts), k + 1


def _matrix(fields: dict[str, Any], path: Path, key: str, place: str) -> np.ndarray:
    """A float64 (rows, cols) array from an opencv-matrix map; errors name the file, the
    field and ``place`` (its line or element)."""
    where = (f"{path}: field {key} is not a readable OpenCV matrix ({place}; re-run 'iort "
             "calibrate camera' or fix the file)")
    try:
        return _matrix_values(fields)
    except ValueError as exc:
        raise CalibrationError(where.replace("matrix (", f"matrix: {exc} (", 1)) from None


def _matrix_values(fields: dict[str, Any]) -> np.ndarray:
    """The array of an opencv-matrix map; ValueError says what is wrong."""
    missing = [f for f in ("rows", "cols", "dt", "data") if f not in fields]
    if missing:
        raise ValueError(f"opencv-matrix without {', '.join(missing)} (needs "
                               "rows, cols, dt and data)")
    rows, cols, dt, data = (fields[f] for f in ("rows", "cols", "dt", "data"))
    if not (isinstance(rows, int) and isinstance(cols, int)) or rows < 0 or cols < 0:
        raise ValueError("rows and cols must be non-negative integers")
    if rows * cols > MAX_ELEMENTS:
        raise ValueError(f"{rows}x{cols} is too large for a calibration")
    if not isinstance(dt, str) or dt.strip() not in _DTYPES:
        raise ValueError(f"dt {dt!r} is not one OpenCV depth "
                               f"({', '.join(_DTYPES)})")
    if not isinstance(data, list):
        raise ValueError("data must be a [ ... ] list of numbers")
    if len(data) != rows * cols:
        raise ValueError(f"data has {len(data)} numbers, rows x cols = "
                               f"{rows * cols}")
    if any(isinstance(v, str) or isinstance(v, bool) for v in data):
        raise ValueError("data holds something that is not a number")
    values = np.array(data, dtype=np.float64)
    kind = _DTYPES[dt.strip()]
    if np.issubdtype(kind, np.integer):
        if not np.all(values == np.round(values)):
            raise ValueError(f"dt {dt} says integers, data has fractions")
    elif kind is np.float32:
        values = values.astype(np.float32).astype(np.float64)   # as OpenCV would hold it
    return values.reshape(rows, cols)


def _parse_yaml(text: str, path: Path) -> dict[str, Any]:
    lines = [(n + 1, _strip_comment(raw).rstrip()) for n, raw in enumerate(text.splitlines())]
    lines = [(n, line) for n, line in lines if line.strip()]
    if not lines or not re.match(r"^%YAML[: ]1\.\d+\s*$", lines[0][1]):
        raise CalibrationError(f"{path}: not an OpenCV YAML file (first line must be "
                               "'%YAML:1.0'); re-run 'iort calibrate camera' or fix the file")
    k = 1
    if k < len(lines) and lines[k][1].strip() == "---":
        k += 1
    nodes: dict[str, Any] = {}
    while k < len(lines):
        line_no, line = lines[k]
        where = f"{path}: line {line_no}"
        if line[0].isspace():
            raise CalibrationError(f"{where}: unexpected indentation at the top level")
        if line.strip() in ("---", "..."):
            raise CalibrationError(f"{where}: a second YAML document is not supported")
        match = _KEY.match(line)
        if not match:
            raise CalibrationError(f"{where}: expected 'key: value', got {line[:60]!r}")
        key, value = match.group(1), (match.group(2) or "").strip()
        if key in nodes:
            raise CalibrationError(f"{where}: key {key} given twice")
        nodes[key], k = _yaml_value(lines, k, key, value, path)
    return nodes


def _block(lines: list[tuple[int, str]], k: int) -> int:
    """Index of the first line after the indented block that follows line ``k``."""
    j = k + 1
    while j < len(lines) and lines[j][1][:1].isspace():
        j += 1
    return j


def _yaml_value(lines: list[tuple[int, str]], k: int, key: str, value: str,
                path: Path) -> tuple[Any, int]:
    """The value of the key on line ``k`` (``value``: the text after the colon)."""
    line_no = lines[k][0]
    where = f"{path}: line {line_no}"
    if value.startswith("!!opencv-matrix"):
        if value != "!!opencv-matrix":
            raise CalibrationError(f"{where}: text after !!opencv-matrix")
        end = _block(lines, k)
        fields: dict[str, Any] = {}
        j = k + 1
        while j < end:
            sub_no, sub = lines[j]
            match = _KEY.match(sub.strip())
            if not match:
                raise CalibrationError(f"{path}: line {sub_no}: expected rows/cols/dt/data")
            name, text = match.group(1), (match.group(2) or "").strip()
            if name in fields:
                raise CalibrationError(f"{path}: line {sub_no}: {name} given twice")
            if text.startswith("["):
                inside, j = _collect_flow(lines, j, text[1:], path)
                fields[name] = _flow_list(inside, f"{path}: line {sub_no}")
            else:
                fields[name] = _scalar(text, f"{path}: line {sub_no}")
                j += 1
        return _matrix(fields, path, key, f"line {line_no}"), end
    if value.startswith("!!"):
        raise CalibrationError(f"{where}: unknown type tag {value.split()[0][:40]!r}")
    if value.startswith("["):
        inside, j = _collect_flow(lines, k, value[1:], path)
        return _flow_list(inside, where), j
    if value.startswith("{"):
        return SKIPPED, _block(lines, k)
    if not value:                        # a nested map or sequence: not a calibration field
        return SKIPPED, _block(lines, k)
    return _scalar(value, where), k + 1


# --- XML ------------------------------------------------------------------------------

def _parse_xml(text: str, path: Path) -> dict[str, Any]:
    import xml.etree.ElementTree as ET

    if re.search(r"<!(DOCTYPE|ENTITY)", text, re.IGNORECASE):
        raise CalibrationError(f"{path}: XML with a DOCTYPE or entities is refused (an OpenCV "
                               "calibration has none)")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise CalibrationError(f"{path}: not well-formed XML ({exc})") from exc
    if root.tag != "opencv_storage":
        raise CalibrationError(f"{path}: root element is <{root.tag[:40]}>, an OpenCV "
                               "calibration has <opencv_storage>")
    nodes: dict[str, Any] = {}
    for element in root:
        key = element.tag
        where = f"{path}: <{key[:40]}>"
        if key in nodes:
            raise CalibrationError(f"{where} given twice")
        if element.get("type_id") == "opencv-matrix":
            fields: dict[str, Any] = {}
            for child in element:
                body = (child.text or "").strip()
                fields[child.tag] = ([_scalar(t, where) for t in body.split()]
                                     if child.tag == "data" else _scalar(body, where))
            nodes[key] = _matrix(fields, path, key, f"element <{key[:40]}>")
        elif len(element):
            nodes[key] = SKIPPED
        else:
            body = (element.text or "").strip()
            tokens = body.split()
            if len(tokens) > 1 and not body.startswith(("\"", "'")):
                nodes[key] = [_scalar(t, where) for t in tokens]
            else:
                nodes[key] = _scalar(body, where) if body else ""
    return nodes
