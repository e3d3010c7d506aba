"""Reading input files: one JSON reader with one-line errors naming the file.

Every JSON file the program reads from outside (plans, poses, tools, boards, calibrations,
beam data) goes through :func:`read_json_file`, so a missing file, text that is not UTF-8,
a syntax error or a NaN/Infinity constant are reported the same way: one line naming the
file, where the problem is and what to do.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from models.base.errors import InputError

log = logging.getLogger(__name__)


class _NonFiniteConstant(Exception):
    """Raised while parsing when the JSON holds ``NaN``, ``Infinity`` or ``-Infinity``."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _reject_constant(name: str) -> Any:
    raise _NonFiniteConstant(name)


#: Largest integer accepted in a JSON file: beyond it no field of ours is meaningful and
#: converting it to a float overflows.
MAX_JSON_INT = 2 ** 63


class _HugeInteger(Exception):
    """Raised while parsing when an integer literal exceeds :data:`MAX_JSON_INT`."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or abs(int(text)) > MAX_JSON_INT:
        raise _HugeInteger(text[:20])
    return int(text)


def read_json_file(path: str | Path, *, what: str, error: type[InputError] = InputError,
                   hint: str = "") -> Any:
    """Parse a UTF-8 JSON file, turning every failure into one ``error`` naming the file.

    Parameters
    ----------
    path : str or Path
        The file.
    what : str
        What the file is, first words of every message (``"tool file"``, ``"--plan"``).
    error : type of InputError
        Exception class raised (e.g. ``calibration.errors.CalibrationError``).
    hint : str
        What the user should do, appended to every message ("" for the defaults only).

    Returns
    -------
    Any
        The parsed JSON value; the caller checks its schema.

    Raises
    ------
    InputError
        (``error``) The file is missing or unreadable, not UTF-8, not valid JSON (message
        with line and column), nested too deeply to parse, or holds NaN/Infinity (not
        valid JSON numbers).

    Examples
    --------
    >>> read_json_file("/no/such/plan.json", what="--plan")
    Traceback (most recent call last):
    ...
    models.base.errors.InputError: --plan /no/such/plan.json: cannot read, file not found; \
check the path
    """
    path = Path(path)
    tail = f"; {hint}" if hint else ""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise error(f"{what} {path}: cannot read, file not found; check the path{tail}") \
            from exc
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8 "
                    f"JSON{tail}") from exc
    except OSError as exc:
        raise error(f"{what} {path}: cannot read ({exc.strerror or exc}); give a readable "
                    f"file{tail}") from exc
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int)
    except _HugeInteger as exc:
        raise error(f"{what} {path}: integer {exc}... is too large to be a value of ours; "
                    f"write a number below 2**63{tail}") from None
    except _NonFiniteConstant as exc:
        raise error(f"{what} {path}: contains {exc.name}, which is not a valid JSON number; "
                    f"write finite numbers{tail}") from None
    except RecursionError:
        raise error(f"{what} {path}: nested too deeply to be a {what}; check that this is "
                    f"the right file{tail}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{what} {path}: not valid JSON at line {exc.lineno} column {exc.colno} "
                    f"({exc.msg}); fix the syntax there{tail}") from exc


def output_folder(path: str | Path, *, what: str = "--out") -> Path:
    """Create (if needed) and check a folder the program will write to, before any work.

    Raises
    ------
    InputError
        The folder cannot be created or written; one line naming it and why.

    Examples
    --------
    >>> output_folder("/proc/no/such/folder")
    Traceback (most recent call last):
    ...
    models.base.errors.InputError: --out /proc/no/such/folder: cannot create the folder \
(No such file or directory); choose a writable folder
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {path}: exists and is not a folder; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{what} {path}: cannot create the folder "
                         f"({exc.strerror or exc}); choose a writable folder") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path}: folder is not writable; choose a writable folder")
    return path


def output_file(path: str | Path, *, what: str = "--out",
                suffixes: tuple[str, ...] = ()) -> Path:
    """Check a file the program will write, before any work: its type (``suffixes``, e.g.
    ``(".json", ".yaml")``; empty = any) and a writable folder (created if needed)."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise InputError(f"{what} {path}: unknown file type {path.suffix or '(none)'!r}; use "
                         f"{', '.join(suffixes)}")
    if path.is_dir():
        raise InputError(f"{what} {path}: is a folder; give a file name")
    output_folder(path.parent if str(path.parent) else Path("."), what=what)
    return path
