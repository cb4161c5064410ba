"""The render stage's bookkeeping helper: work on one background thread (on a GPU) or inline
(on CPU), results always handed back in the order given, errors raised where they are read."""

from __future__ import annotations

import threading
import time

import pytest

from estampille.background import InOrder


def _work(n: int) -> tuple[int, str]:
    time.sleep(0.02 * (3 - n))  # later items finish sooner: order must not follow finishing
    return n, threading.current_thread().name


@pytest.mark.parametrize("threaded", [True, False])
def test_results_come_back_in_the_order_given_from_the_thread_asked_for(threaded):
    with InOrder(threaded, name="bookkeeping") as saving:
        for n in range(3):
            saving.submit(f"item {n}", _work, n)
        results = list(saving.finished(wait=True))
    assert [item for item, _ in results] == ["item 0", "item 1", "item 2"]
    assert [n for _, (n, _) in results] == [0, 1, 2]
    threads = {name for _, (_, name) in results}
    assert threads == ({"bookkeeping_0"} if threaded else {threading.current_thread().name})


@pytest.mark.parametrize("threaded", [True, False])
def test_a_failure_is_raised_where_its_result_is_read_and_earlier_results_are_kept(threaded):
    def fail():
        raise OSError("No space left on device")

    with InOrder(threaded) as saving:
        saving.submit("first", _work, 2)
        saving.submit("second", fail)
        results = saving.finished(wait=True)
        assert next(results)[0] == "first"
        with pytest.raises(OSError, match="No space left"):
            next(results)
