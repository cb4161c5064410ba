"""The same search on a Dask cluster (the one Prefect's Dask task runner uses, or any
`dask.distributed` scheduler): each task scans a group of shards where it runs and returns its
hits of both tiers (hashes and features); merged and sorted, they are exactly the hits of
`engine.search_store`.

Workers open the index folder by path, so it must be on storage every worker sees (NFS, a
shared volume) at the same path. Shards are memory-mapped by each worker: no shard crosses the
network, only the queries (a few hundred bytes each) and the hits.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from .engine import Hit, Query, calibrated, search_store
from .feature_index import default_search_threads, set_search_threads
from .scan import Thresholds
from .store import ReferenceStore


@dataclass
class DistributedResult:
    hits: list[Hit]
    placements: list[tuple[str, list[int]]]  # (worker host:pid, shards it scanned)


def _scan_shards(
    folder: str, shards: list[int], queries: list[Query], thresholds: Thresholds, rotations: bool
) -> tuple[str, list[Hit]]:
    from dask.distributed import get_worker

    # The worker's task threads already share its cores: faiss gets the rest, not one thread per core each.
    set_search_threads(max(1, default_search_threads() // max(1, get_worker().state.nthreads)))
    store = ReferenceStore(folder)
    try:
        return f"{socket.gethostname()}:{os.getpid()}", search_store(store, queries, thresholds, rotations, shards)
    finally:
        store.close()


def search_on_dask(
    client,
    folder: str | Path,
    queries: list[Query],
    thresholds: Thresholds | None = None,
    rotations: bool = False,
    tasks_per_worker: int = 2,
) -> DistributedResult:
    """Split the shards over the cluster's workers and scan them there."""
    if not queries:
        return DistributedResult([], [])
    thresholds = thresholds or calibrated()
    store = ReferenceStore(folder)
    numbers = store.shard_numbers()
    store.close()
    workers = max(1, len(client.scheduler_info()["workers"]))
    groups = [g for g in (numbers[i :: workers * tasks_per_worker] for i in range(workers * tasks_per_worker)) if g]
    shared = client.scatter(queries, broadcast=True)
    futures = [
        client.submit(_scan_shards, str(Path(folder).absolute()), group, shared, thresholds, rotations, pure=False)
        for group in groups
    ]
    hits: list[Hit] = []
    placements = []
    for group, (worker, found) in zip(groups, client.gather(futures), strict=True):
        hits += found
        placements.append((worker, group))
    return DistributedResult(sorted(hits, key=lambda h: (h.query, h.reference_id)), placements)
