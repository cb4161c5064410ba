"""Exact Hamming range search over packed hash arrays, compiled with numba.

Why a scan and not an index structure: at the radii copies need (12 of 64 bits for crops,
about 50 of 256 for PDQ), multi-index hashing probes thousands of buckets per query and loses to
a straight pass on this hardware; a compiled pass does ~5 billion 64-bit comparisons a second on
2 cores (AVX-512 popcount), reads memory-mapped shards without copying, and splits across
processes or machines by shard (distributed.py) with exactly the same answers.

Per (query, reference) pair the rule is exact, with two shortcuts that never change the answer:
- windows are compared only when the triangle inequality allows a match: a window's pHash is at
  most `reach` bits from its image's pHash, so if the full pHashes differ by more than
  threshold + reach, no window pair can be within threshold;
- PDQ's four words are summed with an early exit once the partial sum exceeds the threshold.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "estampille-numba"))

from numba import njit, prange  # noqa: E402  (after the cache folder is chosen)

BLOCK = 2048          # references per parallel work item: their hashes stay in L1/L2 across queries
HIT_CAPACITY = 4096   # hits one block may hold before it is scanned again with more room


@dataclass(frozen=True)
class Thresholds:
    phash: int     # the render's pHash or its mirror's, against the reference's pHash
    window: int    # full pHash against the other side's windows (crops, borders)
    pdq: int       # PDQ, best of the searched variants (identity and mirror; 8 with rotations)

    def as_array(self) -> np.ndarray:
        return np.array([self.phash, self.window, self.pdq], dtype=np.int64)


@dataclass(frozen=True)
class QueryArrays:
    phash: np.ndarray      # (Q,) uint64
    mirror: np.ndarray     # (Q,) uint64
    windows: np.ndarray    # (Q, W) uint64
    reach: np.ndarray      # (Q,) int64: max distance of a window to its image's pHash
    pdq: np.ndarray        # (Q, V, 4) uint64: PDQ variants searched

    def __len__(self) -> int:
        return len(self.phash)


@njit(inline="always")
def _pop(x):
    # SWAR popcount: LLVM turns it into the popcount instruction (vectorised where it can)
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(cache=True)
def _exact(q, i, q_phash, q_mirror, q_windows, q_pdq, r_phash, r_windows, r_pdq, t):
    if _pop(q_phash[q] ^ r_phash[i]) <= t[0] or _pop(q_mirror[q] ^ r_phash[i]) <= t[0]:
        return True
    for j in range(r_windows.shape[0]):
        if _pop(q_phash[q] ^ r_windows[j, i]) <= t[1] or _pop(q_windows[q, j] ^ r_phash[i]) <= t[1]:
            return True
    for v in range(q_pdq.shape[1]):
        s = 0
        for k in range(4):
            s += _pop(q_pdq[q, v, k] ^ r_pdq[k, i])
        if s <= t[2]:
            return True
    return False


@njit(parallel=True, cache=True)
def _scan(q_phash, q_mirror, q_windows, q_reach, q_pdq, r_phash, r_windows, r_reach, r_pdq, t, capacity):
    """Per block of references and per query: simple loops the compiler vectorises (AVX-512
    popcount where the CPU has it) compute the full pHash, mirror and PDQ distances and mark the
    pairs that may match (windows only where the triangle bound allows); only those get the exact test."""
    n = r_phash.shape[0]
    blocks = (n + BLOCK - 1) // BLOCK
    hits = np.empty((blocks, capacity, 2), dtype=np.int64)
    counts = np.zeros(blocks, dtype=np.int64)
    for b in prange(blocks):
        lo = b * BLOCK
        m = min(n, lo + BLOCK) - lo
        slack = np.empty(m, dtype=np.int64)     # <= 0: the pair may match
        found = 0
        for q in range(q_phash.shape[0]):
            a, mm = q_phash[q], q_mirror[q]
            w0, w1, w2, w3 = q_pdq[q, 0, 0], q_pdq[q, 0, 1], q_pdq[q, 0, 2], q_pdq[q, 0, 3]
            near = t[1] + q_reach[q]
            for i in range(m):
                d0 = _pop(a ^ r_phash[lo + i])
                dq = _pop(w0 ^ r_pdq[0, lo + i]) + _pop(w1 ^ r_pdq[1, lo + i]) + \
                    _pop(w2 ^ r_pdq[2, lo + i]) + _pop(w3 ^ r_pdq[3, lo + i])
                slack[i] = min(min(d0 - t[0], _pop(mm ^ r_phash[lo + i]) - t[0]),
                               min(dq - t[2], min(d0 - near, d0 - r_reach[lo + i] - t[1])))
            for v in range(1, q_pdq.shape[1]):        # further PDQ variants (rotations), when asked
                w0, w1, w2, w3 = q_pdq[q, v, 0], q_pdq[q, v, 1], q_pdq[q, v, 2], q_pdq[q, v, 3]
                for i in range(m):
                    dq = _pop(w0 ^ r_pdq[0, lo + i]) + _pop(w1 ^ r_pdq[1, lo + i]) + \
                        _pop(w2 ^ r_pdq[2, lo + i]) + _pop(w3 ^ r_pdq[3, lo + i])
                    slack[i] = min(slack[i], dq - t[2])
            for i in range(m):
                if slack[i] <= 0 and _exact(q, lo + i, q_phash, q_mirror, q_windows, q_pdq, r_phash, r_windows,
                                            r_pdq, t):
                    if found < capacity:
                        hits[b, found, 0] = q
                        hits[b, found, 1] = lo + i
                    found += 1
        counts[b] = found
    return hits, counts


def scan(queries: QueryArrays, phash: np.ndarray, windows: np.ndarray, reach: np.ndarray, pdq: np.ndarray,
         thresholds: Thresholds) -> np.ndarray:
    """(query index, reference row) of every pair the rule matches, sorted. References are
    column-major: phash (N,), windows (W, N), reach (N,), pdq (4, N)."""
    if len(queries) == 0 or len(phash) == 0:
        return np.empty((0, 2), dtype=np.int64)
    args = (queries.phash, queries.mirror, queries.windows, queries.reach, queries.pdq, phash, windows, reach, pdq,
            thresholds.as_array())
    hits, counts = _scan(*args, HIT_CAPACITY)
    if counts.max(initial=0) > HIT_CAPACITY:      # a flood of matches (a corpus of near-duplicates): once more, roomier
        hits, counts = _scan(*args, int(counts.max()))
    found = np.concatenate([hits[b, :counts[b]] for b in range(len(counts))]) if counts.sum() else \
        np.empty((0, 2), dtype=np.int64)
    return found[np.lexsort((found[:, 1], found[:, 0]))]


def popcount(values: np.ndarray) -> np.ndarray:
    return np.bitwise_count(values).astype(np.int64)


def pair_distances(queries: QueryArrays, pairs: np.ndarray, phash, windows, pdq, dhash, colour,
                   q_dhash, q_colour) -> dict[str, np.ndarray]:
    """Every distance of the matched pairs, for the verdict and the evidence (numpy: few pairs)."""
    q, r = pairs[:, 0], pairs[:, 1]
    direct = popcount(queries.phash[q] ^ phash[r])
    mirrored = popcount(queries.mirror[q] ^ phash[r])
    window = np.minimum(popcount(queries.phash[q, None] ^ windows[:, r].T).min(axis=1),
                        popcount(queries.windows[q] ^ phash[r, None]).min(axis=1))
    pdq_best = popcount(queries.pdq[q] ^ pdq[:, r].T[:, None, :]).sum(axis=2).min(axis=1)
    return {"phash": np.minimum(direct, mirrored), "direct": direct, "mirrored": mirrored < direct, "window": window,
            "pdq": pdq_best, "dhash": popcount(q_dhash[q] ^ dhash[r]), "colour": popcount(q_colour[q] ^ colour[r])}


@njit(parallel=True, cache=True)
def _range_64(queries, hashes, radius, capacity):
    n = hashes.shape[0]
    blocks = (n + BLOCK * 8 - 1) // (BLOCK * 8)
    hits = np.empty((blocks, capacity, 2), dtype=np.int64)
    counts = np.zeros(blocks, dtype=np.int64)
    for b in prange(blocks):
        lo = b * BLOCK * 8
        m = min(n, lo + BLOCK * 8) - lo
        d = np.empty(m, dtype=np.int64)
        found = 0
        for q in range(queries.shape[0]):
            a = queries[q]
            for i in range(m):
                d[i] = _pop(a ^ hashes[lo + i])
            for i in range(m):
                if d[i] <= radius:
                    if found < capacity:
                        hits[b, found, 0] = q
                        hits[b, found, 1] = lo + i
                    found += 1
        counts[b] = found
    return hits, counts


def range_search(queries: np.ndarray, hashes: np.ndarray, radius: int) -> np.ndarray:
    """(query, row) of every 64-bit hash within `radius` bits: one kind, one pass (memory-mapped
    arrays are read in place). What a 100-million-hash corpus of one kind costs per query."""
    hits, counts = _range_64(queries, hashes, radius, HIT_CAPACITY)
    if counts.max(initial=0) > HIT_CAPACITY:
        hits, counts = _range_64(queries, hashes, radius, int(counts.max()))
    if not counts.sum():
        return np.empty((0, 2), dtype=np.int64)
    return np.concatenate([hits[b, :counts[b]] for b in range(len(counts))])
