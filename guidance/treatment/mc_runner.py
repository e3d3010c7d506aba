"""Headless background runner of the Monte Carlo check (for the monitor after *Confirm*).

:class:`McCheckRunner` runs :func:`guidance.treatment.mc_check.run_mc_check` in a separate
**process** (never the UI thread: the transport holds the CPU for minutes), reports its
progress through a queue that :meth:`McCheckRunner.poll` drains without blocking, and
stops it on :meth:`McCheckRunner.cancel` (the child's progress callback sees the event
and ompmc stops after the current batch). The child runs at a lower priority
(:data:`CHILD_NICENESS`) so the monitor's UI and live dose keep their share of the CPU.
:mod:`guidance.monitor.mc_monitor` polls it from the monitor's clock and shows the
fraction, then the verdict.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
from dataclasses import dataclass


@dataclass(frozen=True)
class McProgress:
    """One message from the runner: ``fraction`` in [0, 1]; ``result`` (a
    :class:`~guidance.treatment.mc_check.McCheckResult` as JSON) when done; ``error`` a
    one-line message when it failed or was cancelled."""

    fraction: float
    result: dict | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        """The run is over (result or error)."""
        return self.result is not None or self.error is not None


#: Scheduling niceness of the child: the transport uses every core, the monitor's UI and
#: live dose come first.
CHILD_NICENESS = 10


def _child(case, spec, kwargs: dict, out: mp.Queue, stop) -> None:   # pragma: no cover
    import os

    if hasattr(os, "nice"):
        os.nice(CHILD_NICENESS)
    from guidance.treatment.mc_check import run_mc_check
    from models.base.errors import InputError
    from models.dose.montecarlo.engine import McCancelled

    try:
        result, _pb, _mc = run_mc_check(case, spec, progress=lambda f: out.put(McProgress(f)),
                                        cancel=stop.is_set, **kwargs)
        out.put(McProgress(1.0, result=result.as_json()))
    except McCancelled:
        out.put(McProgress(0.0, error="cancelled"))
    except InputError as exc:
        out.put(McProgress(0.0, error=str(exc)))
    except Exception as exc:   # reported to the monitor, not a silent exit code
        out.put(McProgress(0.0, error=f"{type(exc).__name__}: {exc}"))


class McCheckRunner:
    """Run one Monte Carlo check in a child process.

    Parameters
    ----------
    case : models.patient.case.Case
    spec : models.dicom.rt_export.PlanSpec
    **kwargs
        Passed to :func:`~guidance.treatment.mc_check.run_mc_check` (``target``,
        ``grid_mm``, ``uncertainty_percent``, ``histories``, ...).
    """

    def __init__(self, case, spec, **kwargs) -> None:
        ctx = mp.get_context("spawn")
        self._queue: mp.Queue = ctx.Queue()
        self._stop = ctx.Event()
        self._process = ctx.Process(target=_child, args=(case, spec, kwargs, self._queue,
                                                         self._stop), daemon=True)
        self.last = McProgress(0.0)

    def start(self) -> None:
        """Start the child process."""
        self._process.start()

    def poll(self) -> McProgress:
        """The newest message (non-blocking); an error if the child died silently."""
        try:
            while True:
                self.last = self._queue.get_nowait()
        except queue.Empty:
            pass
        if not self.last.finished and not self._process.is_alive() and (
                self._process.exitcode not in (None, 0)):
            self.last = McProgress(self.last.fraction,
                                   error=f"Monte Carlo process ended with code "
                                         f"{self._process.exitcode}")
        return self.last

    def cancel(self) -> None:
        """Ask the child to stop after its current batch."""
        self._stop.set()

    def close(self, timeout_s: float = 30.0) -> None:
        """Cancel if running and wait for the child (terminated after ``timeout_s``)."""
        if self._process.is_alive():
            self.cancel()
            self._process.join(timeout_s)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(5.0)

    def __enter__(self) -> McCheckRunner:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
