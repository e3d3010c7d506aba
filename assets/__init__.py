"""Data files shipped with the program (beam data, boards, tools), installed as package data.

Use :func:`asset_path` rather than paths relative to the working directory, so a wheel
works outside the checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def asset_path(*parts: str) -> Path:
    """Path of a shipped asset, e.g. ``asset_path("beams", "liac.json")``.

    Raises
    ------
    FileNotFoundError
        If no such asset is installed; the message names the missing file.
    """
    path = Path(str(resources.files(__name__).joinpath(*parts)))
    if not path.exists():
        raise FileNotFoundError(
            f"asset {'/'.join(parts)} is not installed (looked in {path.parent})")
    return path
