"""Every test under tests/fuzz is marked ``fuzz`` (``pytest -m "not fuzz"`` skips them)."""

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/fuzz/" in item.path.as_posix():
            item.add_marker(pytest.mark.fuzz)
