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
