"""Per-item work on one background thread, handed back in the order it was given.

The render stage uses it to encode, hash and fingerprint an image while the GPU renders the
next batch: on a Turbo-class model (~85 ms an image) that bookkeeping would otherwise add about a
fifth to every image. On CPU the model already uses every core, and a second thread only takes
them from it (measured: bench/render_overhead.py), so there the work runs inline, in the same order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")


class InOrder(Generic[Item]):
    def __init__(self, threaded: bool, name: str = "background"):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name) if threaded else None
        self._pending: deque[tuple[Item, Future]] = deque()

    def submit(self, item: Item, work: Callable[..., Any], *args: Any) -> None:
        if self._pool is not None:
            future = self._pool.submit(work, *args)
        else:
            future = Future()
            try:
                future.set_result(work(*args))
            except BaseException as exc:  # raised where the result is read, as with the thread
                future.set_exception(exc)
        self._pending.append((item, future))

    def finished(self, wait: bool = False) -> Iterator[tuple[Item, Any]]:
        """(item, result) for the work done so far, oldest first; with `wait`, for all of it.
        The work's exception is raised here."""
        while self._pending and (wait or self._pending[0][1].done()):
            item, future = self._pending.popleft()
            yield item, future.result()

    def __enter__(self) -> InOrder[Item]:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
