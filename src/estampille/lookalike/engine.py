"""Search a reference index with renders: hash the queries with the corpus's pipeline, scan every
shard (here, or on a Dask cluster), and give each matched pair its distances and fused verdict."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .hashing import QueryHashes, decode, hash_query
from .scan import QueryArrays, Thresholds, pair_distances, scan
from .store import ReferenceStore, Shard

THRESHOLDS_FILE = Path(__file__).with_name("thresholds.json")
REPORTED = ("phash", "window", "pdq", "dhash", "colour")


@lru_cache(maxsize=1)
def calibrated() -> Thresholds:
    """The per-hash thresholds bench/calibrate_lookalike.py chose on the labelled set."""
    data = json.loads(THRESHOLDS_FILE.read_text())
    return Thresholds(**{k: int(data["thresholds"][k]) for k in ("phash", "window", "pdq")})


@dataclass(frozen=True)
class Hit:
    query: int
    reference_id: int
    distances: dict[str, int]
    reasons: tuple[str, ...]        # which hashes are within their threshold


def query_arrays(queries: list[QueryHashes], rotations: bool = False) -> tuple[QueryArrays, np.ndarray, np.ndarray]:
    """Pack queries. PDQ is searched for the image itself (mirrors are caught by the mirror's pHash),
    or, with rotations, for all 8 dihedral variants (quarter turns and flips), at 4 more words a pair each."""
    def pdq_variants(q: QueryHashes):
        return [q.hashes.pdq] + (list(q.pdq_dihedral[1:]) if rotations else [])
    arrays = QueryArrays(
        phash=np.array([q.hashes.phash for q in queries], dtype=np.uint64),
        mirror=np.array([q.mirror_phash for q in queries], dtype=np.uint64),
        windows=np.array([q.hashes.windows for q in queries], dtype=np.uint64).reshape(len(queries), -1),
        pdq=np.array([pdq_variants(q) for q in queries], dtype=np.uint64).reshape(len(queries), -1, 4))
    return (arrays, np.array([q.hashes.dhash for q in queries], dtype=np.uint64),
            np.array([q.hashes.colour for q in queries], dtype=np.uint64))


def search_shard(shard: Shard, packed: tuple[QueryArrays, np.ndarray, np.ndarray], thresholds: Thresholds,
                 removed: np.ndarray) -> list[Hit]:
    """Every pair of (query, live reference in this shard) within a threshold, with all distances."""
    queries, q_dhash, q_colour = packed
    pairs = scan(queries, shard.phash, shard.windows, shard.pdq, thresholds)
    if len(pairs) == 0:
        return []
    ids = np.asarray(shard.ids)[pairs[:, 1]]
    live = ~np.isin(ids, removed)
    pairs, ids = pairs[live], ids[live]
    if len(pairs) == 0:
        return []
    found = pair_distances(queries, pairs, shard.phash, shard.windows, shard.pdq, shard.dhash, shard.colour,
                           q_dhash, q_colour)
    limits = thresholds.as_dict()
    hits = []
    for n, (q, reference) in enumerate(zip(pairs[:, 0], ids)):
        distances = {k: int(found[k][n]) for k in REPORTED}
        hits.append(Hit(int(q), int(reference), distances,
                        tuple(k for k, limit in limits.items() if distances[k] <= limit)
                        + (("mirrored",) if found["mirrored"][n] and distances["phash"] <= thresholds.phash else ())))
    return hits


def search_store(store: ReferenceStore, queries: list[QueryHashes], thresholds: Thresholds | None = None,
                 rotations: bool = False, shards: list[int] | None = None) -> list[Hit]:
    """Scan the given shards (default all) in this process."""
    if not queries:
        return []
    thresholds = thresholds or calibrated()
    packed = query_arrays(queries, rotations)
    removed = store.removed_ids()
    hits: list[Hit] = []
    for number in store.shard_numbers() if shards is None else shards:
        hits += search_shard(store.load_shard(number), packed, thresholds, removed)
    return sorted(hits, key=lambda h: (h.query, h.reference_id))


def hash_queries(paths: list[Path]) -> tuple[list[QueryHashes | None], list[str | None]]:
    """Hash render files; a file that cannot be read gets its reason instead."""
    hashed, errors = [], []
    for path in paths:
        try:
            hashed.append(hash_query(decode(path)))
            errors.append(None)
        except (ValueError, OSError) as exc:
            hashed.append(None)
            errors.append(str(exc))
    return hashed, errors
