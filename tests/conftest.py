"""Shared fixtures. Paths come from fixtures and ``__file__``, never the working directory."""

from __future__ import annotations

import numpy as np
import pytest


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
