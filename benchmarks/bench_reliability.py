"""Reliability: fuzzing of every parser of outside input, and the soak under faults.

Keys
----
reliability.fuzz_cases          fewest cases run by any one parser (>= 10,000 in the full
                                bench; ``IORT_FUZZ_CASES`` sets the budget, ``--quick`` 200)
reliability.fuzz_parsers        parsers (fuzz targets) run
reliability.fuzz_crashes        targets that raised anything but a one-line InputError
reliability.fuzz_hangs          targets with a case over the per-case deadline
reliability.silent_wrong        targets whose oracle found accepted input read wrongly
reliability.soak_min            minutes the soak ran (30; ``SOAK_MIN`` or ``--quick`` 1.5)
reliability.soak_unrecovered    faults after which no correct pose came within 2 s
reliability.soak_wrong_poses    tracked applicator poses off the truth once settled
reliability.mem_growth_percent  RSS growth of the soak after its first round of faults, %
reliability.igtl_max_rss_mb     largest RSS during the OpenIGTLink IMAGE flood, MB
reliability.igtl_rss_bound_mb   the bound it must stay under (RSS before the flood + the
                                server's two received stores + two messages in flight per
                                flooding client + 100 MB), MB

The fuzz targets are the hypothesis tests in ``tests/fuzz`` (run from a source checkout);
``IORT_FUZZ_ONLY=name,name`` runs some of them, ``SOAK_MIN=0`` skips the soak; see
``docs/reliability.md``.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import time
from pathlib import Path

GROUP = "reliability"


def _fuzz_targets() -> list[tuple[str, object]]:
    """(name, hypothesis test) of every fuzz target, imported with the budget already set."""
    try:
        import tests.fuzz as package
    except ImportError as exc:  # an installed wheel has no tests/
        from models.base.errors import InputError

        raise InputError("iort bench --only reliability needs a source checkout (tests/fuzz "
                         f"is not importable: {exc})") from exc
    targets = []
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("test_fuzz_"):
            continue
        module = importlib.import_module(f"tests.fuzz.{info.name}")
        targets += [(f"{info.name[len('test_fuzz_'):]}.{name[len('test_'):]}", fn)
                    for name, fn in vars(module).items()
                    if name.startswith("test_") and callable(fn)]
    return sorted(targets, key=lambda t: t[0])


def _kind(exc: BaseException) -> str:
    """"hang", "silent wrong" (an oracle's AssertionError) or "crash" (anything else)."""
    from tests.fuzz.harness import FuzzHang

    inner = list(exc.exceptions) if isinstance(exc, BaseExceptionGroup) else [exc]
    if any(isinstance(e, FuzzHang) or "ran longer than" in str(e) for e in inner):
        return "hang"
    if all(isinstance(e, AssertionError) for e in inner):
        return "silent wrong"
    return "crash"


def _where(exc: BaseException) -> str:
    """Exception type, first line of its message and the line that raised it."""
    import traceback

    inner = exc.exceptions[0] if isinstance(exc, BaseExceptionGroup) else exc
    frames = traceback.extract_tb(inner.__traceback__)
    at = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno} {frames[-1].line}" \
        if frames else ""
    lines = str(inner).splitlines()
    return f"{type(inner).__name__}: {lines[0][:200] if lines else ''}{at}"


def run_fuzz(cases: int, only: set[str] | None = None) -> dict[str, float]:
    """Run every fuzz target (or those named in ``only``) with ``cases`` cases; the fuzz
    keys."""
    os.environ["IORT_FUZZ_CASES"] = str(cases)
    from tests.fuzz.harness import CASES

    crashes = hangs = wrong = 0
    counts: dict[str, int] = {}
    for name, test in _fuzz_targets():
        if only and name not in only:
            continue
        before = sum(CASES.values())
        start = time.perf_counter()
        outcome = "ok"
        try:
            test()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # any escape: a hang, a wrong result or a crash
            kind = _kind(exc)
            hangs += kind == "hang"
            wrong += kind == "silent wrong"
            crashes += kind == "crash"
            outcome = f"{kind}: {_where(exc)}"
        counts[name] = sum(CASES.values()) - before
        print(f"[bench] fuzz {name}: {counts[name]} cases, "
              f"{time.perf_counter() - start:.0f} s, {outcome}", flush=True)
    return {"reliability.fuzz_cases": float(min(counts.values(), default=0)),
            "reliability.fuzz_parsers": float(len(counts)),
            "reliability.fuzz_crashes": float(crashes),
            "reliability.fuzz_hangs": float(hangs),
            "reliability.silent_wrong": float(wrong)}


def run_soak_keys(minutes: float, fault_period_s: float) -> dict[str, float]:
    """Run the soak; its keys."""
    from benchmarks.soak import run_soak

    result = run_soak(minutes, fault_period_s=fault_period_s)
    return {"reliability.soak_min": float(minutes),
            "reliability.soak_unrecovered": float(result.unrecovered),
            "reliability.soak_wrong_poses": float(result.wrong_poses),
            "reliability.mem_growth_percent": result.mem_growth_percent,
            "reliability.igtl_max_rss_mb": result.igtl_max_rss_mb,
            "reliability.igtl_rss_bound_mb": result.igtl_rss_bound_mb}


def run(*, quick: bool = False) -> dict[str, float]:
    cases = int(os.environ.get("IORT_FUZZ_CASES", "200" if quick else "10000"))
    minutes = float(os.environ.get("SOAK_MIN", "1.5" if quick else "30"))
    only = {n for n in os.environ.get("IORT_FUZZ_ONLY", "").split(",") if n}
    results = run_fuzz(cases, only)
    if os.environ.get("SOAK_MIN", "") == "0":
        return results
    results.update(run_soak_keys(minutes, fault_period_s=4.0 if minutes < 5 else 6.0))
    return results
