"""Shared fixtures. Paths come from fixtures and ``__file__``, never the working directory."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator: every test that draws random numbers is repeatable."""
    return np.random.default_rng(20261123)
