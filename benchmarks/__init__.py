"""Speed and accuracy benchmarks, run by ``iort bench``.

Each module ``benchmarks/bench_<group>.py`` defines

* ``GROUP: str`` — the group name used by ``iort bench --only GROUP``;
* ``run(*, quick: bool = False) -> dict[str, float]`` — returns flat keys
  ``"group.metric"``. Times on this shared machine are noisy: report ratios against a
  baseline measured in the same run where the issue asks for them.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchModule:
    """One discovered benchmark module."""

    group: str
    run: Callable[..., dict[str, float]]


def discover() -> list[BenchModule]:
    """All benchmark modules shipped in this package, sorted by group."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("bench_"):
            continue
        module: ModuleType = importlib.import_module(f"{__name__}.{info.name}")
        found.append(BenchModule(group=module.GROUP, run=module.run))
    return sorted(found, key=lambda b: b.group)


def best_time_s(func: Callable[[], object], *, repeat: int = 5) -> float:
    """Smallest wall time (s) of ``repeat`` calls: the least noisy estimate on a shared CPU."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best
