"""Exact Hamming search of hash candidates over packed hash arrays, compiled with numba.

The candidate rule: a reference is a candidate for a query when, under one transform of the query
(as it is or mirrored; the quarter turns and flips too when rotations are searched), both its pHash
and its PDQ are near the reference's. Two hashes of different construction agreeing under the same
transform, not any one of several: issue 26 measured what the looser rule (any of pHash, PDQ or 16
window comparisons within a wide threshold) cost at 10,000 real references. It proposed 48 unrelated
candidates per render (4,800 at a million, each one a pixel verification) to find 3 light-edited copies
the feature tier missed, and those 3 had pHash <= 2 and PDQ <= 40. Crops, reframes, screenshots and
collages are the feature tier's, which finds them with their region. Window distances are still
reported with every match, as evidence.

Why a scan and not an index structure: at the radii copies need (10 of 64 bits), multi-index hashing
probes thousands of buckets per query and loses to a straight pass on this hardware. The rule also
makes the pass cheap: the pHash test (2 popcounts per pair, vectorised) rejects all but about one pair
in a thousand, and only those pay for PDQ's four words. Memory-mapped shards are read without copying,
and split across processes or machines by shard (distributed.py) with exactly the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..settings import numba_cache_default

numba_cache_default()
from numba import njit, prange  # noqa: E402  (after the cache folder is chosen)

BLOCK = 1024  # references per parallel work item: their pHashes (8 KB) stay in L1 across queries
HIT_CAPACITY = 1024  # hits one block may hold before it is scanned again with more room


@dataclass(frozen=True)
class Thresholds:
    phash: int  # pHash of the query (under one transform) against the reference's pHash
    window: int  # reported only: a window distance within it is named among a match's reasons
    pdq: int  # PDQ of the query under the same transform, against the reference's PDQ

    def as_array(self) -> np.ndarray:
        return np.array([self.phash, self.window, self.pdq], dtype=np.int64)

    def as_dict(self) -> dict[str, int]:
        return {"phash": self.phash, "window": self.window, "pdq": self.pdq}

    def describe(self) -> str:
        return f"pHash <= {self.phash} and PDQ <= {self.pdq} under one transform"


@dataclass(frozen=True)
class QueryArrays:
    phash: np.ndarray  # (Q,) uint64: the query as it is
    mirror: np.ndarray  # (Q,) uint64: its mirror's pHash
    windows: np.ndarray  # (Q, W) uint64
    variant_phash: np.ndarray  # (Q, V) uint64: pHash under each searched transform (identity, mirror, ...)
    variant_pdq: np.ndarray  # (Q, V, 4) uint64: PDQ under the same transforms

    def __len__(self) -> int:
        return len(self.phash)


@njit(inline="always")
def _pop(x):
    # SWAR popcount: LLVM turns it into the popcount instruction (vectorised where it can)
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(inline="always")
def _record(hits, b, found, q, i):
    """Keep a hit if the block's room allows; count it either way (the caller retries with more room)."""
    if found < hits.shape[1]:
        hits[b, found, 0] = q
        hits[b, found, 1] = i
    return found + 1


@njit(parallel=True, cache=True)
def _scan(q_phash, q_pdq, r_phash, r_pdq, t, start, stop, capacity):
    """Per block of references (small enough to stay in L1) and per query: one vectorised pass of
    pHash distances per transform marks the pairs within the pHash threshold (a bit per transform),
    then the marks are read 8 at a time and only the marked pairs pay for PDQ. Exact: every pair
    the rule accepts, once, and nothing else. Scans reference rows [start, stop)."""
    blocks = (stop - start + BLOCK - 1) // BLOCK
    hits = np.empty((blocks, capacity, 2), dtype=np.int64)
    counts = np.zeros(blocks, dtype=np.int64)
    t_phash, t_pdq = t[0], t[2]  # scalars: loads the vectoriser can hoist
    variants = q_phash.shape[1]
    for b in prange(blocks):
        lo = start + b * BLOCK
        m = min(stop, lo + BLOCK) - lo
        near = np.zeros(BLOCK, dtype=np.uint8)  # bit v: within the pHash threshold under transform v
        words = near.view(np.uint64)
        found = 0
        for q in range(q_phash.shape[0]):
            for v in range(variants):
                a, bit = q_phash[q, v], np.uint8(1 << v)
                for i in range(m):
                    near[i] |= bit if _pop(a ^ r_phash[lo + i]) <= t_phash else np.uint8(0)
            for k in range((m + 7) // 8):
                if words[k] == 0:
                    continue
                for i in range(8 * k, min(m, 8 * k + 8)):
                    marks = near[i]
                    near[i] = 0
                    for v in range(variants):
                        if marks & (1 << v):
                            dq = (
                                _pop(q_pdq[q, v, 0] ^ r_pdq[0, lo + i])
                                + _pop(q_pdq[q, v, 1] ^ r_pdq[1, lo + i])
                                + _pop(q_pdq[q, v, 2] ^ r_pdq[2, lo + i])
                                + _pop(q_pdq[q, v, 3] ^ r_pdq[3, lo + i])
                            )
                            if dq <= t_pdq:
                                found = _record(hits, b, found, q, lo + i)
                                break
        counts[b] = found
    return hits, counts


def scan(queries: QueryArrays, phash: np.ndarray, pdq: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """(query index, reference row) of every pair the rule accepts, sorted. References
    are column-major: phash (N,), pdq (4, N)."""
    if len(queries) == 0 or len(phash) == 0:
        return np.empty((0, 2), dtype=np.int64)
    args = (queries.variant_phash, queries.variant_pdq, phash, pdq, thresholds.as_array())
    found = _collect(_scan, args, len(phash), BLOCK)
    return found[np.lexsort((found[:, 1], found[:, 0]))]


def _collect(kernel, args, rows: int, block: int) -> np.ndarray:
    """Run a kernel over all rows; a block that found more hits than it had room for (many copies
    of one image, as when renders are checked against the images they copy) is scanned again
    alone, with room for all of them. Join the blocks' hits."""
    hits, counts = kernel(*args, 0, rows, HIT_CAPACITY)
    parts = []
    for b in np.flatnonzero(counts):
        if counts[b] <= HIT_CAPACITY:
            parts.append(hits[b, : counts[b]])
        else:
            again, _ = kernel(*args, b * block, min(rows, (b + 1) * block), int(counts[b]))
            parts.append(again[0])
    return np.concatenate(parts) if parts else np.empty((0, 2), dtype=np.int64)


def popcount(values: np.ndarray) -> np.ndarray:
    return np.bitwise_count(values).astype(np.int64)


def pair_distances(
    queries: QueryArrays, pairs: np.ndarray, phash, windows, pdq, dhash, colour, q_dhash, q_colour
) -> dict[str, np.ndarray]:
    """Every distance of the matched pairs, for the verdict and the evidence (numpy: few pairs)."""
    q, r = pairs[:, 0], pairs[:, 1]
    variants = popcount(queries.variant_phash[q] ^ phash[r, None])  # (P, V): pHash under each transform
    window = np.minimum(
        popcount(queries.phash[q, None] ^ windows[:, r].T).min(axis=1),
        popcount(queries.windows[q] ^ phash[r, None]).min(axis=1),
    )
    return {
        "phash": variants.min(axis=1),
        "direct": variants[:, 0],
        "mirrored": variants.argmin(axis=1) == 1,
        "window": window,
        "pdq": popcount(queries.variant_pdq[q] ^ pdq[:, r].T[:, None, :]).sum(axis=2).min(axis=1),
        "dhash": popcount(q_dhash[q] ^ dhash[r]),
        "colour": popcount(q_colour[q] ^ colour[r]),
    }


@njit(parallel=True, cache=True)
def _range_64(queries, hashes, radius, start, stop, capacity):
    blocks = (stop - start + BLOCK * 8 - 1) // (BLOCK * 8)
    hits = np.empty((blocks, capacity, 2), dtype=np.int64)
    counts = np.zeros(blocks, dtype=np.int64)
    for b in prange(blocks):
        lo = start + b * BLOCK * 8
        m = min(stop, lo + BLOCK * 8) - lo
        d = np.empty(m, dtype=np.int64)
        found = 0
        for q in range(queries.shape[0]):
            a = queries[q]
            for i in range(m):
                d[i] = _pop(a ^ hashes[lo + i])
            for i in range(m):
                if d[i] <= radius:
                    found = _record(hits, b, found, q, lo + i)
        counts[b] = found
    return hits, counts


def range_search(queries: np.ndarray, hashes: np.ndarray, radius: int) -> np.ndarray:
    """(query, row) of every 64-bit hash within `radius` bits: one kind, one pass (memory-mapped
    arrays are read in place). What a 100-million-hash corpus of one kind costs per query."""
    return _collect(_range_64, (queries, hashes, radius), len(hashes), BLOCK * 8)
