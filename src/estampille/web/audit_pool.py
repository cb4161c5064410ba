"""Uploads are audited in worker processes, not in the server's own: an audit is seconds of
decoding, hashing and keypoint matching that, in a thread, would hold the server's interpreter
lock and stall every page meanwhile. One worker by default (each holds ~235 MB), at a lower CPU priority than the
pages; each keeps one `Auditor` while the ledger is unchanged (its index and the renders'
keypoints are not rebuilt per upload)."""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from ..settings import Settings

if TYPE_CHECKING:  # imported in the worker only: the server process never loads the audit's libraries
    from ..provenance.audit import Auditor, AuditReport

_auditor: tuple[int, Auditor] | None = None  # (ledger head, Auditor), in each worker process


def _lower_priority() -> None:
    try:
        os.nice(10)
    except OSError:
        pass


def _audit(settings: Settings, head: int, path: str) -> AuditReport:
    from ..ledger import Ledger
    from ..provenance.audit import Auditor
    from ..provenance.trust import audit_trust

    global _auditor
    if _auditor is None or _auditor[0] != head:
        _auditor = (head, Auditor(Ledger(settings.ledger_url), audit_trust(settings), out_dir=settings.out))
    return _auditor[1].audit(Path(path))


class Busy(Exception):
    """Every worker stayed busy for the whole wait."""


class AuditPool:
    def __init__(self, settings: Settings, workers: int = 2, wait: float = 20.0):
        self.settings, self.workers, self.wait = settings, workers, wait
        self.slots = threading.BoundedSemaphore(workers)
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def audit(self, path: Path, head: int):
        """The audit report of `path` (blocks: call it from a worker thread); Busy if no worker
        frees up within `wait` seconds."""
        if not self.slots.acquire(timeout=self.wait):
            raise Busy()
        try:
            return self._pool().submit(_audit, self.settings, head, str(path)).result()
        finally:
            self.slots.release()

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                # spawn, not fork: the server has threads (a forked copy could inherit a held lock).
                self._executor = ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_lower_priority
                )
            return self._executor

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None
