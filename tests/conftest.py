"""Shared fixtures. Paths come from fixtures and ``__file__``, never the working directory."""

from __future__ import annotations

import os

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _site_key_in_tmp(tmp_path_factory):
    """Every test (and every child process it starts) uses a throw-away site key file,
    never the user's ``~/.config/iort/site-key``."""
    from models.base.pseudonyms import SITE_KEY_ENV

    old = os.environ.get(SITE_KEY_ENV)
    os.environ[SITE_KEY_ENV] = str(tmp_path_factory.mktemp("site-key") / "site-key")
    yield
    if old is None:
        os.environ.pop(SITE_KEY_ENV, None)
    else:
        os.environ[SITE_KEY_ENV] = old


def random_rigid(rng: np.random.Generator, translation_mm: float = 200.0) -> np.ndarray:
    """A uniformly random rotation with a translation in +-``translation_mm`` per axis."""
    from scipy.spatial.transform import Rotation

    out = np.eye(4)
    out[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    out[:3, 3] = rng.uniform(-translation_mm, translation_mm, size=3)
    return out


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator: every test that draws random numbers is repeatable."""
    return np.random.default_rng(20261123)


@pytest.fixture(scope="session")
def coarse_phantom():
    """The built-in phantom on a coarse 3 x 3 x 4 mm grid (seed 0), made once per run.

    Shared by every test that only reads it: do not modify it (copy what you change).
    """
    from models.patient.phantom import make_phantom

    return make_phantom(spacing_mm=(3.0, 3.0, 4.0))


#: Values a damaged or hand-edited JSON file holds where a number, list or object belongs.
JSON_MUTANT_VALUES = [None, True, False, 0, -1, 1e308, -1e308, 3e38, "NaN", "x", "", [], {},
                      [1, 2, 3], [[1, 2], [3]], {"a": 1}, 1.5, 10 ** 400, "1e999"]


def _json_paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _json_paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for n, value in enumerate(obj[:3]):
            yield from _json_paths(value, (*prefix, n))


def json_mutants(data, count: int, seed: int):
    """``count`` seeded copies of ``data``, each with one value replaced or one key deleted.

    Yields (description, mutated object) pairs; feeds the "one line, never a traceback"
    tests of every JSON file format.
    """
    import copy
    import random

    rng = random.Random(seed)
    paths = [p for p in _json_paths(data) if p]
    for _ in range(count):
        out = copy.deepcopy(data)
        path = rng.choice(paths)
        node = out
        for key in path[:-1]:
            node = node[key]
        if rng.random() < 0.15:
            del node[path[-1]]
            yield f"del {path}", out
        else:
            value = rng.choice(JSON_MUTANT_VALUES)
            node[path[-1]] = value
            yield f"{path} = {value!r}"[:100], out
