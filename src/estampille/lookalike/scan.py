"""Exact Hamming range search over packed hash arrays, compiled with numba.

Why a scan and not an index structure: at the radii copies need (12 of 64 bits for crops,
about 50 of 256 for PDQ), multi-index hashing probes thousands of buckets per query and loses to
a straight pass on this hardware; a compiled pass does ~5 billion 64-bit comparisons a second on
2 cores (AVX-512 popcount), reads memory-mapped shards without copying, and splits across
processes or machines by shard (distributed.py) with exactly the same answers.

Per (query, reference) pair the rule is evaluated in full (no shortcut: windows sit ~20 bits from
their image's pHash, too far for a triangle-inequality bound to prune): 2 pHash, 4 PDQ and 16
window comparisons, in loops the compiler turns into AVX-512 popcounts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..settings import numba_cache_default

numba_cache_default()
from numba import njit, prange  # noqa: E402  (after the cache folder is chosen)

BLOCK = 256  # references per parallel work item: their hashes (26 KB) stay in L1 across queries
HIT_CAPACITY = 1024  # hits one block may hold before it is scanned again with more room


@dataclass(frozen=True)
class Thresholds:
    phash: int  # the render's pHash or its mirror's, against the reference's pHash
    window: int  # full pHash against the other side's windows (crops, borders)
    pdq: int  # PDQ, best of the searched variants (identity and mirror; 8 with rotations)

    def as_array(self) -> np.ndarray:
        return np.array([self.phash, self.window, self.pdq], dtype=np.int64)

    def as_dict(self) -> dict[str, int]:
        return {"phash": self.phash, "window": self.window, "pdq": self.pdq}


@dataclass(frozen=True)
class QueryArrays:
    phash: np.ndarray  # (Q,) uint64
    mirror: np.ndarray  # (Q,) uint64
    windows: np.ndarray  # (Q, W) uint64
    pdq: np.ndarray  # (Q, V, 4) uint64: PDQ variants searched

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
def _scan(q_phash, q_mirror, q_windows, q_pdq, r_phash, r_windows, r_pdq, t, start, stop, capacity):
    """Per block of references (small enough to stay in L1) and per query: simple loops the
    compiler vectorises (AVX-512 popcount where the CPU has it) fold every distance of the rule
    into one slack per pair; a pair with slack <= 0 matches. No shortcut: the rule is exact.
    Scans reference rows [start, stop)."""
    blocks = (stop - start + BLOCK - 1) // BLOCK
    hits = np.empty((blocks, capacity, 2), dtype=np.int64)
    counts = np.zeros(blocks, dtype=np.int64)
    t_phash, t_window, t_pdq = t[0], t[1], t[2]  # scalars: loads the vectoriser can hoist
    for b in prange(blocks):
        lo = start + b * BLOCK
        m = min(stop, lo + BLOCK) - lo
        slack = np.empty(m, dtype=np.int64)  # <= 0: the pair matches
        found = 0
        for q in range(q_phash.shape[0]):
            a, mm = q_phash[q], q_mirror[q]
            w0, w1, w2, w3 = q_pdq[q, 0, 0], q_pdq[q, 0, 1], q_pdq[q, 0, 2], q_pdq[q, 0, 3]
            for i in range(m):
                p = r_phash[lo + i]
                dq = (
                    _pop(w0 ^ r_pdq[0, lo + i])
                    + _pop(w1 ^ r_pdq[1, lo + i])
                    + _pop(w2 ^ r_pdq[2, lo + i])
                    + _pop(w3 ^ r_pdq[3, lo + i])
                )
                slack[i] = min(min(_pop(a ^ p), _pop(mm ^ p)) - t_phash, dq - t_pdq)
            for j in range(r_windows.shape[0]):  # crops: our pHash in their windows; borders: the reverse
                qw = q_windows[q, j]
                for i in range(m):
                    slack[i] = min(slack[i], min(_pop(a ^ r_windows[j, lo + i]), _pop(qw ^ r_phash[lo + i])) - t_window)
            for v in range(1, q_pdq.shape[1]):  # further PDQ variants (rotations), when asked
                w0, w1, w2, w3 = q_pdq[q, v, 0], q_pdq[q, v, 1], q_pdq[q, v, 2], q_pdq[q, v, 3]
                for i in range(m):
                    dq = (
                        _pop(w0 ^ r_pdq[0, lo + i])
                        + _pop(w1 ^ r_pdq[1, lo + i])
                        + _pop(w2 ^ r_pdq[2, lo + i])
                        + _pop(w3 ^ r_pdq[3, lo + i])
                    )
                    slack[i] = min(slack[i], dq - t_pdq)
            for i in range(m):
                if slack[i] <= 0:
                    found = _record(hits, b, found, q, lo + i)
        counts[b] = found
    return hits, counts


def scan(
    queries: QueryArrays, phash: np.ndarray, windows: np.ndarray, pdq: np.ndarray, thresholds: Thresholds
) -> np.ndarray:
    """(query index, reference row) of every pair the rule matches, sorted. References are
    column-major: phash (N,), windows (W, N), pdq (4, N)."""
    if len(queries) == 0 or len(phash) == 0:
        return np.empty((0, 2), dtype=np.int64)
    args = (queries.phash, queries.mirror, queries.windows, queries.pdq, phash, windows, pdq, thresholds.as_array())
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
    direct = popcount(queries.phash[q] ^ phash[r])
    mirrored = popcount(queries.mirror[q] ^ phash[r])
    window = np.minimum(
        popcount(queries.phash[q, None] ^ windows[:, r].T).min(axis=1),
        popcount(queries.windows[q] ^ phash[r, None]).min(axis=1),
    )
    pdq_best = popcount(queries.pdq[q] ^ pdq[:, r].T[:, None, :]).sum(axis=2).min(axis=1)
    return {
        "phash": np.minimum(direct, mirrored),
        "direct": direct,
        "mirrored": mirrored < direct,
        "window": window,
        "pdq": pdq_best,
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
