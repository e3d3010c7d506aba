"""Running one stage of a computation beside the rest of it, on a helper thread.

The dose engines' hot loops are numba kernels that release the GIL, so on the two cores
of the OR machine an independent stage (the lateral redistribution of the electron
beam, which needs the CT but not the spread pencils) can run while the calling thread
goes on. :func:`run_beside` submits it to the one helper thread of the process with the
caller's context (:mod:`contextvars`), so a :func:`models.base.cancel.checkpoint` in it
sees the caller's cancel check. With one helper, concurrent callers queue for it: the
results are the same, only the overlap is lost.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iort-beside")


def run_beside(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
    """Start ``fn(*args, **kwargs)`` on the helper thread; its :class:`~concurrent.futures.
    Future` gives the result (or raises what ``fn`` raised) with ``.result()``.

    Examples
    --------
    >>> future = run_beside(sum, [1, 2, 3])
    >>> future.result()
    6
    """
    context = contextvars.copy_context()
    return _helper.submit(context.run, fn, *args, **kwargs)


def share_with_helper(n_parts: int, fn: Callable[[int], None]) -> None:
    """Run ``fn(0) ... fn(n_parts - 1)`` on this thread and the helper together.

    Each part is taken by whichever thread is free first (the helper joins once what was
    submitted before is done, e.g. a :func:`run_beside` stage), so the parts must be
    independent (e.g. disjoint planes of one array). Returns when every part is done;
    the first exception raised by a part is raised here (the other thread stops taking
    parts).

    Examples
    --------
    >>> squares = [0] * 5
    >>> def square(k):
    ...     squares[k] = k * k
    >>> share_with_helper(5, square)
    >>> squares
    [0, 1, 4, 9, 16]
    """
    parts = iter(range(n_parts))
    lock = threading.Lock()
    failed: list[BaseException] = []

    def take_parts() -> None:
        while not failed:
            with lock:
                k = next(parts, None)
            if k is None:
                return
            try:
                fn(k)
            except BaseException as exc:
                failed.append(exc)
                raise

    helper = run_beside(take_parts)
    try:
        take_parts()
    finally:
        try:
            helper.result()
        except BaseException:
            if not failed:
                raise
