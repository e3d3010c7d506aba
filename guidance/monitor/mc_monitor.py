"""The Monte Carlo second check of a confirmed plan, as the monitor runs and shows it.

After an accepted *Confirm*, :class:`McCheckMonitor` starts
:class:`guidance.treatment.mc_runner.McCheckRunner` (a child **process**: the transport
holds the CPU for minutes) on the confirmed pose and beam in the anatomy as it is now
(retractions, resections, the placed disc). Starting the child is itself handed to a
thread, because a spawned process reads the pickled case before :meth:`Process.start`
returns. The monitor's clock calls :meth:`McCheckMonitor.poll`, which never waits; it
returns an :class:`McCheckStatus` (the line on screen) and records the result in the
session log (action ``mc_check``: the whole :class:`~guidance.treatment.mc_check.McCheckResult`
as JSON), where the treatment report finds it. A new confirm supersedes a running check
(it is cancelled and recorded as such); closing the monitor cancels it.

The check is advisory: its verdict never changes the light or a confirm already recorded;
a "disagree" is shown in red for the physicist to act on.

Examples
--------
>>> status = McCheckStatus("unavailable", line="MC check off: ompmc not installed")
>>> status.finished, status.line
(True, 'MC check off: ompmc not installed')
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from guidance.monitor.state import LIGHT_TEXT_COLORS

log = logging.getLogger(__name__)

#: States of :class:`McCheckStatus`; the last five are final.
STATES = ("starting", "running", "agree", "disagree", "inconclusive", "failed", "cancelled",
          "unavailable", "not_applicable")
#: Colour of the status line per state (CSS, for the window).
#: A verdict takes its light's colour; a check under way the phase line's blue.
STATE_COLORS = {"starting": "#9ad0ff", "running": "#9ad0ff",
                "agree": LIGHT_TEXT_COLORS["green"], "disagree": LIGHT_TEXT_COLORS["red"],
                "inconclusive": LIGHT_TEXT_COLORS["yellow"], "failed": LIGHT_TEXT_COLORS["red"],
                "cancelled": LIGHT_TEXT_COLORS["grey"], "unavailable": "#8a8f96",
                "not_applicable": "#8a8f96"}
#: Seconds :meth:`McCheckMonitor.close` waits for the child to stop before ending it.
CLOSE_TIMEOUT_S = 5.0
#: Seconds the child may take to start (read the pickled case, import the engine) before
#: the check is called failed.
START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class McCheckStatus:
    """The Monte Carlo check now: ``state`` (one of :data:`STATES`), the confirm it checks,
    progress ``fraction`` in [0, 1], and ``line``, the text for the screen."""

    state: str
    confirmed_number: int = 0
    fraction: float = 0.0
    line: str = ""
    reasons: tuple[str, ...] = ()
    result: dict | None = None

    @property
    def finished(self) -> bool:
        """Nothing more will happen to this check."""
        return self.state not in ("starting", "running")

    @property
    def color(self) -> str:
        """CSS colour of the line."""
        return STATE_COLORS.get(self.state, LIGHT_TEXT_COLORS["grey"])


def result_line(number: int, result: dict) -> str:
    """One line for the screen from a check's result (the JSON of ``McCheckResult``).

    Examples
    --------
    >>> result_line(2, {"verdict": "agree", "gamma_3_2_percent": 97.14, "target": "CTV",
    ...                 "pb_d90_gy": 9.9, "mc_d90_gy": 10.04, "reasons": []})
    'MC check of confirm #2: AGREE - gamma 3%/2mm 97.1 %, CTV D90 PB 9.90 / MC 10.04 Gy'
    """
    verdict = str(result.get("verdict", "?")).upper()
    text = (f"MC check of confirm #{number}: {verdict} - gamma 3%/2mm "
            f"{float(result.get('gamma_3_2_percent', float('nan'))):.1f} %, "
            f"{result.get('target', 'target')} D90 PB {float(result.get('pb_d90_gy', 0)):.2f}"
            f" / MC {float(result.get('mc_d90_gy', 0)):.2f} Gy")
    # the reasons beyond the first line's gamma: two of them, and how many more
    reasons = [str(r) for r in result.get("reasons") or [] if not str(r).startswith(
        "gamma 3%/2mm")]
    if result.get("verdict") != "agree" and reasons:
        text += "\n  " + "; ".join(reasons[:2]) + (f" (+{len(reasons) - 2} more)"
                                                  if len(reasons) > 2 else "")
    return text


class McCheckMonitor:
    """Runs one Monte Carlo check at a time for the monitor and says how it stands.

    Parameters
    ----------
    runner_factory : callable(case, spec, **options) -> runner
        Makes the background runner (default
        :class:`~guidance.treatment.mc_runner.McCheckRunner`); a runner has ``start()``,
        ``poll() -> McProgress``, ``cancel()`` and ``close(timeout_s)``.
    session_log : SessionLog, optional
        Where the start, the result or the failure is recorded.
    unavailable : str
        Non-empty: the check cannot run here (e.g. ompmc is not installed); every confirm
        then shows this reason instead of starting one.
    **options
        Passed to the runner (``grid_mm``, ``uncertainty_percent``, ``target``, ...).
    """

    def __init__(self, runner_factory: Callable | None = None, *, session_log=None,
                 unavailable: str = "", **options) -> None:
        if runner_factory is None:
            from guidance.treatment.mc_runner import McCheckRunner

            runner_factory = McCheckRunner
        self.runner_factory = runner_factory
        self.session_log = session_log
        self.unavailable = unavailable
        self.options = options
        self._runner = None
        self._starter: threading.Thread | None = None
        self._start_error: str | None = None
        self._seq: int | None = None
        self._started_at = 0.0
        self.start_timeout_s = START_TIMEOUT_S
        self.status: McCheckStatus | None = None

    # ------------------------------------------------------------------ actions
    def start(self, case, spec, *, confirmed_seq: int | None, number: int,
              not_applicable: str = "", **options) -> McCheckStatus:
        """Check the plan ``spec`` (a :class:`models.dicom.rt_export.PlanSpec`) in ``case``
        for confirm ``number`` (session-log event ``confirmed_seq``); a check still running
        is cancelled first. ``not_applicable`` (e.g. a kV applicator) records why none
        runs. ``options`` are added to the runner's (e.g. ``disc``)."""
        self._supersede(number)
        self._seq = confirmed_seq
        why = self.unavailable or not_applicable
        if why:
            state = "unavailable" if self.unavailable else "not_applicable"
            self.status = McCheckStatus(state, number, line=f"MC check of confirm #{number} "
                                                            f"not run: {why}")
            self._record("mc_check_not_run", reason=why)
            return self.status
        self._start_error = None
        self._started_at = time.monotonic()
        self._runner = self.runner_factory(case, spec, **{**self.options, **options})
        self._starter = threading.Thread(target=self._start_runner, name="mc-check-start",
                                         daemon=True)
        self._starter.start()
        self.status = McCheckStatus("starting", number,
                                    line=f"MC check of confirm #{number}: starting ...")
        self._record("mc_check_started", beam={"machine": spec.machine,
                                               "energy_mev": spec.energy_mev,
                                               "applicator_mm": spec.applicator_diameter_mm,
                                               "bevel_deg": spec.bevel_deg},
                     options={k: v for k, v in {**self.options, **options}.items()
                              if isinstance(v, int | float | str)})
        return self.status

    def cancel(self) -> None:
        """Stop the running check (recorded as cancelled when the child has stopped)."""
        if self._runner is not None:
            self._runner.cancel()

    def close(self) -> None:
        """Cancel a running check and wait briefly for its process (monitor closing)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._starter is not None:
            self._starter.join(CLOSE_TIMEOUT_S)
        if self.status is not None and not self.status.finished:
            self._record("mc_check_cancelled", reason="monitor closed",
                         fraction=round(self.status.fraction, 3))
        runner.close(CLOSE_TIMEOUT_S)

    # ------------------------------------------------------------------ queries
    def poll(self) -> McCheckStatus | None:
        """How the check stands (None before the first confirm); never waits. Records the
        outcome in the session log once, when it arrives."""
        status = self.status
        if status is None or status.finished or self._runner is None:
            return status
        if self._starter is not None and self._starter.is_alive():
            if time.monotonic() - self._started_at > self.start_timeout_s:
                return self._finish("failed", error=f"did not start within "
                                                    f"{self.start_timeout_s:g} s")
            return status
        if self._start_error is not None:
            return self._finish("failed", error=self._start_error)
        progress = self._runner.poll()
        if progress.result is not None:
            return self._finish(str(progress.result.get("verdict", "failed")),
                                result=progress.result)
        if progress.error is not None:
            return self._finish("cancelled" if progress.error == "cancelled" else "failed",
                                error=progress.error)
        fraction = min(max(float(progress.fraction), 0.0), 1.0)
        self.status = McCheckStatus(
            "running", status.confirmed_number, fraction,
            line=f"MC check of confirm #{status.confirmed_number}: {100 * fraction:.0f} %")
        return self.status

    # ------------------------------------------------------------------ internals
    def _start_runner(self) -> None:
        try:
            self._runner.start()
        except Exception as exc:   # pickling, spawn: shown and recorded, never raised
            log.exception("Monte Carlo check did not start")
            self._start_error = f"did not start: {exc}"

    def _supersede(self, number: int) -> None:
        if self._runner is None:
            return
        if self.status is not None and not self.status.finished:
            self._record("mc_check_cancelled", reason=f"superseded by confirm #{number}",
                         fraction=round(self.status.fraction, 3))
        runner, self._runner = self._runner, None
        threading.Thread(target=runner.close, args=(CLOSE_TIMEOUT_S,), daemon=True).start()

    def _finish(self, state: str, *, result: dict | None = None,
                error: str | None = None) -> McCheckStatus:
        number = self.status.confirmed_number if self.status is not None else 0
        if state not in STATES:
            state = "failed"
        if result is not None:
            line = result_line(number, result)
            self._record("mc_check", result=result)
            reasons = tuple(str(r) for r in result.get("reasons") or ())
        else:
            line = f"MC check of confirm #{number} {state}: {error}"
            if state == "failed" and self.session_log is not None:
                self.session_log.log_warning(line, source="mc_check")
            self._record("mc_check_cancelled" if state == "cancelled" else "mc_check_failed",
                         reason=str(error))
            reasons = (str(error),)
        self.status = McCheckStatus(state, number, 1.0 if result is not None else
                                    (self.status.fraction if self.status else 0.0),
                                    line=line, reasons=reasons, result=result)
        runner, self._runner = self._runner, None
        if runner is not None:
            threading.Thread(target=runner.close, args=(CLOSE_TIMEOUT_S,), daemon=True).start()
        return self.status

    def _record(self, action: str, **detail: object) -> None:
        if self.session_log is None:
            return
        number = self.status.confirmed_number if self.status is not None else None
        try:
            self.session_log.log_action(action, confirmed_seq=self._seq,
                                        confirmed_number=number, **detail)
        except Exception:   # the log's own errors must not stop the monitor
            log.exception("could not record %s in the session log", action)
