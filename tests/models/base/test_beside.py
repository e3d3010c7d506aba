"""The helper thread of models.base.beside: results, errors and the caller's cancel check."""

from __future__ import annotations

import threading

import pytest

from models.base.beside import run_beside, share_with_helper
from models.base.cancel import Cancelled, cancel_when, checkpoint


def test_run_beside_runs_on_another_thread_with_the_callers_cancel_check() -> None:
    caller = threading.get_ident()
    stop = [False]
    with cancel_when(lambda: stop[0]):
        assert run_beside(threading.get_ident).result() != caller
        run_beside(checkpoint, "a stage").result()      # not cancelled: nothing raised
        stop[0] = True
        with pytest.raises(Cancelled, match="a stage"):
            run_beside(checkpoint, "a stage").result()
    run_beside(checkpoint, "outside").result()           # the check ended with the block


def test_share_with_helper_does_every_part_once_on_both_threads() -> None:
    done: dict[int, int] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(2, timeout=5.0)

    def part(k: int) -> None:
        if k == 0:
            barrier.wait()       # both threads must hold a part at once to get past it
        elif k == 1:
            barrier.wait()
        with lock:
            done[k] = done.get(k, 0) + 1

    share_with_helper(20, part)
    assert done == dict.fromkeys(range(20), 1)


def test_share_with_helper_raises_a_parts_error_and_stops_taking_parts() -> None:
    done: list[int] = []

    def part(k: int) -> None:
        if k == 3:
            raise ValueError("part 3 is bad")
        done.append(k)

    with pytest.raises(ValueError, match="part 3"):
        share_with_helper(1000, part)
    assert len(done) < 999
    share_with_helper(2, done.append)      # the helper still works afterwards
