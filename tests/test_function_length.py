"""No function outside the tests is longer than 80 lines (docstring included).

Long functions hide several steps behind one name; split them into named helpers.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

MAX_LINES = 80
ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {"tests", "build", "dist", "site-packages", "__pycache__", "venv"}

#: Functions allowed to be longer (none: split a long function instead of listing it).
ALLOWED: set[str] = set()


def _source_files() -> list[Path]:
    """Every project .py file except the tests (virtualenvs, builds, hidden folders pruned)."""
    files = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")
                         and not d.endswith(".egg-info"))
        files += [Path(folder) / name for name in sorted(names) if name.endswith(".py")]
    return files


def _long_functions() -> list[str]:
    found = []
    for path in _source_files():
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    found.append(f"{rel}:{node.name} ({lines} lines)")
    return found


def test_the_check_sees_the_packages() -> None:
    seen = {path.relative_to(ROOT).parts[0] for path in _source_files()}
    assert {"models", "calibration", "guidance"} <= seen


def test_no_function_over_80_lines() -> None:
    too_long = [f for f in _long_functions() if f.split(" ")[0] not in ALLOWED]
    assert not too_long, f"functions over {MAX_LINES} lines: {too_long}"

