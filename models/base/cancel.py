"""Stopping a long computation whose result nobody will look at any more.

The live dose runs on a worker thread; when the applicator moves on while the full model
computes a pose it has already left, that result would only delay the one for the new
pose. The caller wraps the computation in :func:`cancel_when` with a check it can flip
from another thread; the computation calls :func:`checkpoint` between its stages, which
raises :class:`Cancelled` once the check is true. The check belongs to the calling
thread's context (a :class:`contextvars.ContextVar`), so other threads computing at the
same time are not affected, and code that is not wrapped never stops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_check: ContextVar[Callable[[], bool] | None] = ContextVar("cancel_check", default=None)


class Cancelled(Exception):
    """A computation was stopped at a :func:`checkpoint` (not an error: its result was no
    longer wanted). The message names the stage it stopped before."""


@contextmanager
def cancel_when(check: Callable[[], bool]) -> Iterator[None]:
    """Within the block, :func:`checkpoint` raises :class:`Cancelled` once ``check()``.

    Examples
    --------
    >>> stop = []
    >>> with cancel_when(lambda: bool(stop)):
    ...     checkpoint("first stage")
    ...     stop.append(True)
    ...     try:
    ...         checkpoint("second stage")
    ...     except Cancelled as exc:
    ...         print(exc)
    cancelled before second stage
    >>> checkpoint("outside")   # no check: never stops
    """
    token = _check.set(check)
    try:
        yield
    finally:
        _check.reset(token)


def checkpoint(stage: str) -> None:
    """Raise :class:`Cancelled` when this thread's computation is no longer wanted.

    ``stage`` names what would run next (for the log). Costs one context lookup.
    """
    check = _check.get()
    if check is not None and check():
        raise Cancelled(f"cancelled before {stage}")
