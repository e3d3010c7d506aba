"""Print the lock file: every distribution ``pip install -e '.[dev]'`` pulled in, pinned.

Reads the requirements from ``pyproject.toml`` (dependencies and the ``dev`` extra) and
walks their requirements through the installed distributions' metadata, so packages
installed by hand into the same venv are left out. Run by ``make lock``::

    .venv/bin/python scripts/write_lock.py > requirements.lock
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HEADER = """\
# Every package `make setup` installs (pyproject.toml with the dev extra), pinned to the
# versions tested. Regenerate with `make lock` after changing pyproject.toml or upgrading;
# `make lint` audits it for known vulnerabilities (pip-audit). `make setup` installs from
# pyproject.toml; to reproduce exactly this set:
#   .venv/bin/python -m pip install -r requirements.lock
#   .venv/bin/python -m pip install -e . --no-deps
"""


def _walk(pending: list[tuple[Requirement, str]]) -> dict[str, str]:
    pinned: dict[str, str] = {}
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name in pinned:
            continue
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            sys.exit(f"write_lock: {requirement.name} is required but not installed; run "
                     "make setup first")
        pinned[name] = f"{dist.metadata['Name']}=={dist.version}"
        for text in dist.requires or []:
            inner = Requirement(text)
            for wanted in requirement.extras or {""}:
                pending.append((inner, wanted))
    return pinned


def main() -> None:
    project = tomllib.loads(Path(__file__).resolve().parents[1].joinpath(
        "pyproject.toml").read_text())["project"]
    roots = [(Requirement(r), "") for r in project["dependencies"]]
    roots += [(Requirement(r), "") for r in project["optional-dependencies"]["dev"]]
    pinned = _walk(roots)
    sys.stdout.write(HEADER + "".join(f"{line}\n" for _, line in sorted(pinned.items())))


if __name__ == "__main__":
    main()
