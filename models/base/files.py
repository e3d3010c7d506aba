"""Reading input files and writing patient data: one place for both.

Every JSON file the program reads from outside (plans, poses, tools, boards, calibrations,
beam data) goes through :func:`read_json_file`, so a missing file, text that is not UTF-8,
a syntax error or a NaN/Infinity constant are reported the same way: one line naming the
file, where the problem is and what to do.

Everything that may hold patient data (case folders, session logs, DICOM exports, reports,
plan files, the site key) is written owner-only: files 0600, folders the program creates
0700, whatever the umask. The writers go through :func:`private_file` (create the file
owner-only before a third-party writer such as pydicom or reportlab fills it: opening an
existing file for writing keeps its mode), :func:`write_private_bytes` /
:func:`write_private_text` (atomic: a temporary sibling, fsync, rename) and
:func:`make_private_folders`; :func:`output_folder` / :func:`output_file` create missing
folders owner-only. :func:`swap_in_folder` replaces a whole folder by a finished sibling
so that a kill at any moment leaves the old folder or the new one, never a mix.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from models.base.errors import InputError

log = logging.getLogger(__name__)

#: Mode of every file that may hold patient data.
PRIVATE_FILE_MODE = 0o600
#: Mode of every folder the program creates for such files.
PRIVATE_FOLDER_MODE = 0o700


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
    """Create (if needed, owner-only) and check a folder the program will write to, before
    any work.

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
        make_private_folders(path)
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


def make_private_folders(folder: str | Path) -> Path:
    """Create ``folder`` and its missing parents owner-only (0700, whatever the umask).

    Folders that already exist are left as they are.
    """
    folder = Path(folder)
    missing = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for new in reversed(missing):
        try:
            new.mkdir(mode=PRIVATE_FOLDER_MODE)
        except FileExistsError:
            continue
        os.chmod(new, PRIVATE_FOLDER_MODE)
    return folder


def make_private(path: str | Path) -> Path:
    """Make an existing file (0600) or folder (0700) owner-only."""
    path = Path(path)
    os.chmod(path, PRIVATE_FOLDER_MODE if path.is_dir() else PRIVATE_FILE_MODE)
    return path


def private_file(path: str | Path, *, exclusive: bool = False) -> Path:
    """Create (or truncate) ``path`` as an empty owner-only file and return it.

    A writer that then opens the file for writing (pydicom, reportlab, OpenCV, numpy) keeps
    its 0600 mode, so the data is never readable by others, not even for a moment.

    Parameters
    ----------
    path : str or Path
        The file; its folder must exist.
    exclusive : bool
        Refuse an existing file (``FileExistsError``) instead of truncating it.
    """
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)   # an existing file, or a restrictive umask
    finally:
        os.close(fd)
    return path


def write_private_bytes(path: str | Path, data: bytes | Any) -> Path:
    """Write an owner-only file atomically: a temporary sibling, fsync, then a rename.

    ``data`` is bytes, or a callable given the open binary handle (``np.save`` etc.). A
    kill at any moment leaves the old file or the new one whole.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_private_text(path: str | Path, text: str) -> Path:
    """:func:`write_private_bytes` of UTF-8 text."""
    return write_private_bytes(path, text.encode("utf-8"))


def fsync_folder(path: str | Path) -> None:
    """Flush a folder's entries (renames) to disk, where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2   # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the call is not available (other systems, old kernels or file
    systems without it), so the caller falls back to two renames.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    return False


def swap_in_folder(staging: str | Path, out: str | Path) -> None:
    """Put the finished folder ``staging`` at ``out``, replacing what was there.

    On Linux the two folders are exchanged in one atomic step, so a kill at any moment
    leaves either the old ``out`` or the new one in place, never a mix and never nothing;
    elsewhere the old folder is first renamed to ``.<name>.old-<pid>`` beside it (a kill
    between the two renames leaves it there). The old content is removed afterwards.
    """
    staging, out = Path(staging), Path(out)
    fsync_folder(staging)
    if out.is_dir():
        if _exchange(staging, out):
            shutil.rmtree(staging, ignore_errors=True)
        else:
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)
    fsync_folder(out.parent)


@contextmanager
def replacing_folder(out: str | Path, *,
                     keep: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Write a folder's new content beside it, then swap it in whole.

    Yields an empty owner-only staging folder next to ``out`` (``.<name>.new-<pid>``).
    When the block ends without an exception, the entries of the old ``out`` for which
    ``keep(entry)`` is true are carried over (hard links where possible, else copies),
    and :func:`swap_in_folder` puts the staging folder at ``out``. On an exception the
    staging folder is removed and ``out`` is untouched. A kill at any moment leaves the
    old folder or the new one at ``out`` (the staging folder may remain beside it).
    """
    out = Path(out)
    make_private_folders(out.parent)
    _remove_leftovers(out)
    staging = out.with_name(f".{out.name}.new-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=PRIVATE_FOLDER_MODE)
    os.chmod(staging, PRIVATE_FOLDER_MODE)
    try:
        yield staging
        if keep is not None and out.is_dir():
            for entry in sorted(out.iterdir()):
                if keep(entry) and not (staging / entry.name).exists():
                    _carry(entry, staging / entry.name)
        swap_in_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remove_leftovers(out: Path) -> None:
    """Remove staging folders beside ``out`` left by writers that were killed."""
    for stale in [*out.parent.glob(f".{out.name}.new-*"), *out.parent.glob(f".{out.name}.old-*")]:
        try:
            pid = int(stale.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _carry(source: Path, target: Path) -> None:
    """Put ``source`` at ``target`` too, leaving ``source`` as it is."""
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=True)
        return
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, target, follow_symlinks=False)
