"""The index's keypoint lists merged by word: every vocabulary-filed shard's list of a word in one run.

Why: each shard filed on the vocabulary holds a list per word, so a query keypoint visits its PROBES
words once per shard. At a million references (40 shards) that is two million list visits a render,
and the visits, not the Hamming distances, were the cost (bench/lookalike_million.py: 1.86 s a
render). Merged, a word's codes for every shard lie in one contiguous run, visited once, and a
batch's keypoints are scanned word by word, so a run read for one keypoint serves every keypoint of
the batch that probes the same word.

The answers stay the shards' own: for each query descriptor and each shard, the NEIGHBOURS nearest
codes within the Hamming radius, as a search of the shard's own lists finds them (`Neighbours`), so a
shard merged or not, searched here or on a Dask worker, votes alike. One difference: where several
codes are equally near at the last place kept, this keeps the lowest ids and faiss the first seen,
which can tip a borderline candidate (tested: the same copies flagged either way).

Derived data, rebuilt from the shards' lists, never from images: ingest merges after writing a shard
filed on the vocabulary, `lookalike index --upgrade` after filing. A shard whose lists changed since
(its features.fbin is not the one merged) or one added since is searched through its own lists; a
merge on another vocabulary is not used at all. Deleting the folder loses nothing but speed.

    <index>/lists/meta.json     vocabulary digest; the shards merged: number, features.fbin size, mtime
    <index>/lists/codes.npy     (N, 4) uint64 descriptors, by word, then shard, then their order in its list
    <index>/lists/ids.npy       (N,) uint32 keypoint id within its shard (row * STRIDE + keypoint)
    <index>/lists/slots.npy     (N,) uint16 the shard: its position in meta.json's list
    <index>/lists/offsets.npy   (words + 1,) int64 where each word's run starts

A batch's memory stays bounded whatever the index size: it maps the lists a window of words at a
time, unmapped once scanned (the page cache keeps what RAM allows; mapped whole, a batch at a million
held all 9.4 GB resident), and it is scanned in chunks of whole queries whose near keypoints are voted
on before the next chunk (engine.py; all at once they were 3.6 GB for 400 renders at a million). Peak
resident memory of a 400-render batch at a million references: 3.6 GB, was 16.5 GB (parts 6 and 7). A search of a
few renders maps the lists whole and keeps them mapped instead (RESIDENT_BELOW), which saves it the
~0.2 s of mapping what it reads (bench/RESULTS.md part 6).

The scan is a compiled loop (numba) rather than faiss: faiss scans one index's lists and keeps one
top-k per query, where this needs a top k per query and shard over the shards' codes interleaved.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np

from ..settings import numba_cache_default
from . import feature_index
from .feature_index import FEATURE_FILES, Neighbours
from .vocabulary import Probes

numba_cache_default()
import numba  # noqa: E402  (after the cache folder is chosen)
from numba import njit, prange, types  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

FOLDER = "lists"
ARRAYS = ("codes", "ids", "slots", "offsets")
# Per-(descriptor, shard) nearest keypoints held at once (6 bytes each): a batch is scanned in chunks of
# this size, each chunk's nearest keypoints are voted on before the next is scanned (engine.py), and
# each chunk reads the probed runs again, so the larger the chunk the fewer the passes (a 400-render
# batch at a million references: 5 chunks of ~85 renders with 8 neighbours and 40 shards).
SCAN_BYTES = 256 << 20
MAX_CHUNK = 1 << 20  # descriptors a chunk holds at most (their position fits 20 bits of the sort key)
# Codes a batch maps at once. It reads the lists through memory maps of this many codes, each unmapped
# when scanned: the page cache keeps what fits (and gives it back when rendering needs the memory),
# while the batch's own resident memory stays bounded. Mapped whole, a batch at a million references
# held all 9.4 GB of lists resident (bench/lookalike_million.py, bench/RESULTS.md part 6).
WINDOW_CODES = 32 << 20  # 1 GB of codes, 128 MB of ids, 64 MB of slots
# A search of at most this many query keypoints (about 10 renders: `lookalike check` on a file or a
# few) maps the lists whole and keeps them mapped for the store's life, so the next such search reads
# pages already mapped: mapping and unmapping what a render reads cost it ~0.2 s at a million
# references. A larger search drops that mapping first and reads window by window.
RESIDENT_BELOW = 16_384
MAX_SHARDS = 1 << 16  # slots are uint16
MAX_ID = 1 << 32  # ids are uint32
BLOCKS_PER_THREAD = 1  # query blocks per scanning thread: 4 and 16 were no faster on 2 cores


def stamp(shard_folder: Path) -> list[int]:
    """What identifies a shard's lists as merged: its features.fbin's size and mtime."""
    info = (shard_folder / FEATURE_FILES[0]).stat()
    return [info.st_size, info.st_mtime_ns]


@dataclass(frozen=True)
class _Array:
    """A .npy held open, so a window of its rows can be mapped alone. The open file keeps the merge
    this store loaded readable after another process merges again and deletes it (a window mapped
    by path would then read the new files against the old offsets)."""

    file: BinaryIO
    dtype: np.dtype
    shape: tuple[int, ...]
    data_offset: int

    @classmethod
    def open(cls, path: Path) -> _Array:
        """Reads the header, and checks the file holds the rows it announces."""
        file = open(path, "rb")  # noqa: SIM115  (held for the store's life, closed with it)
        try:
            version = np.lib.format.read_magic(file)
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }.get(version)
            if read_header is None:
                raise ValueError(f"{path}: .npy format {version}")
            shape, fortran, dtype = read_header(file)
            found = cls(file, dtype, shape, file.tell())
            if fortran or os.fstat(file.fileno()).st_size < found.data_offset + dtype.itemsize * int(np.prod(shape)):
                raise ValueError(f"{path}: not a whole C-ordered array")
            return found
        except BaseException:
            file.close()
            raise

    def rows(self, lo: int, hi: int) -> np.memmap:
        row_bytes = self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))
        return np.memmap(self.file, self.dtype, "r", self.data_offset + lo * row_bytes, (hi - lo, *self.shape[1:]))


@dataclass
class MergedLists:
    vocabulary: str
    shards: list[int]  # slot -> shard number
    stamps: list[list[int]]  # slot -> stamp() when merged
    codes: _Array
    ids: _Array
    slots: _Array
    offsets: np.ndarray  # (words + 1,) in memory: 2 MB at 262,144 words
    # The lists mapped whole and kept so, for searches of a few renders (RESIDENT_BELOW).
    _resident: tuple[np.memmap, np.memmap, np.memmap] | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def load(cls, index_folder: Path) -> MergedLists | None:
        """The index's merged lists, None when there are none (or a merge was cut short)."""
        folder = index_folder / FOLDER
        opened: list[_Array] = []
        try:
            meta = json.loads((folder / "meta.json").read_text())
            for name in ARRAYS[:3]:
                opened.append(_Array.open(folder / f"{name}.npy"))
            codes, ids, slots = opened
            offsets = np.load(folder / "offsets.npy")
            total = int(offsets[-1])
            if codes.shape == (total, 4) and ids.shape == (total,) and slots.shape == (total,):
                return cls(meta["vocabulary"], meta["shards"], meta["stamps"], codes, ids, slots, offsets)
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            pass
        for array in opened:  # a merge cut short or damaged
            array.file.close()
        return None

    def prepare(self, descriptors: int) -> None:
        """Map the lists whole for a search of `descriptors` query keypoints up to RESIDENT_BELOW (kept
        mapped), or unmap them for a larger one, which reads window by window. A search calls this
        before it builds its own arrays, so a batch's do not add up with what single renders mapped."""
        total = int(self.offsets[-1])
        if descriptors > RESIDENT_BELOW or total == 0:
            self._resident = None
        elif self._resident is None:
            self._resident = (self.codes.rows(0, total), self.ids.rows(0, total), self.slots.rows(0, total))

    def close(self) -> None:
        self._resident = None
        for array in (self.codes, self.ids, self.slots):
            array.file.close()

    def current(self, index_folder: Path, vocabulary: str) -> set[int]:
        """The shards whose lists these still are (same vocabulary, same features.fbin)."""
        if vocabulary != self.vocabulary:
            return set()
        found = set()
        for number, was in zip(self.shards, self.stamps, strict=True):
            try:
                if stamp(index_folder / "shards" / f"{number:06d}") == was:
                    found.add(number)
            except OSError:
                continue
        return found

    def nearest(self, descriptors: np.ndarray, probes: Probes, radius: int, shards: set[int]) -> dict[int, Neighbours]:
        """For each shard of `shards` (merged here), the NEIGHBOURS nearest codes within `radius` of each
        descriptor in the probed words' lists (all at once: `nearest_in_chunks` holds less)."""
        found: dict[int, list[Neighbours]] = {n: [] for n in self.shards if n in shards}
        for _, _, near in self.nearest_in_chunks(descriptors, probes, radius, shards, np.array([len(descriptors)])):
            for number, neighbours in near.items():
                found[number].append(neighbours)
        return {
            number: Neighbours(*(np.concatenate([getattr(p, k) for p in parts]) for k in _FIELDS)) if parts else _NONE
            for number, parts in found.items()
        }

    def nearest_in_chunks(
        self, descriptors: np.ndarray, probes: Probes, radius: int, shards: set[int], ends: np.ndarray
    ) -> Iterator[tuple[int, int, dict[int, Neighbours]]]:
        """`nearest`, chunk by chunk: (start, stop, {shard: Neighbours}) for descriptors [start, stop),
        positions counted from the first descriptor. A chunk ends only at one of `ends` (ascending
        positions: where a query's descriptors end), so a caller can vote on whole queries."""
        if probes.vocabulary != self.vocabulary:
            raise ValueError(f"these lists are filed on vocabulary {self.vocabulary}: search with its probes")
        wanted = np.array([n in shards for n in self.shards], dtype=np.bool_)
        queries = np.ascontiguousarray(descriptors).view(np.uint64).reshape(len(descriptors), 4)
        words = np.ascontiguousarray(probes.words, dtype=np.int64)
        if len(self.offsets) - 1 >= 1 << 20:
            raise ValueError(f"{len(self.offsets) - 1} words: the scan's sort key holds 2^20")
        slots = len(self.shards)
        # As many scanning threads as the search may use (a Dask worker's share of its cores).
        numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, faiss.omp_get_max_threads())))  # type: ignore[attr-defined]
        blocks = BLOCKS_PER_THREAD * faiss.omp_get_max_threads()
        chunk = max(1, min(MAX_CHUNK, SCAN_BYTES // (6 * feature_index.NEIGHBOURS * slots)))
        self.prepare(len(queries))
        if int(self.offsets[-1]) == 0:
            windows = []
        elif self._resident is not None:
            windows = [(0, len(self.offsets) - 1)]
        else:
            windows = self._windows()
        start = 0
        while start < len(queries):
            fits = ends[(ends > start) & (ends <= start + chunk)]
            stop = int(fits[-1]) if len(fits) else int(ends[ends > start][0])
            best_d = np.full((stop - start, slots, feature_index.NEIGHBOURS), radius + 1, dtype=np.int16)
            best_i = np.full((stop - start, slots, feature_index.NEIGHBOURS), MAX_ID - 1, dtype=np.uint32)
            pairs = _pairs(words[start:stop], blocks)
            for lo_word, hi_word in windows:
                # Each block's pairs probing this window's words: a run of the sorted keys.
                cut = np.searchsorted(pairs, _key(np.arange(blocks)[:, None], np.array([lo_word, hi_word]), 0))
                if not (cut[:, 1] > cut[:, 0]).any():
                    continue
                lo, hi = int(self.offsets[lo_word]), int(self.offsets[hi_word])
                if hi == lo:
                    continue
                codes, ids, slots_of = self._resident or (
                    self.codes.rows(lo, hi),
                    self.ids.rows(lo, hi),
                    self.slots.rows(lo, hi),
                )
                _scan(
                    queries[start:stop], pairs, cut, self.offsets, lo, codes, ids, slots_of, wanted, radius,
                    best_d, best_i,
                )  # fmt: skip
                del codes, ids, slots_of  # a window is unmapped here
            bounds, rows, found, distance = _kept(best_d, best_i, radius, wanted, start)
            yield (
                start,
                stop,
                {
                    number: Neighbours(*(a[bounds[slot] : bounds[slot + 1]] for a in (rows, found, distance)))
                    for slot, number in enumerate(self.shards)
                    if wanted[slot]
                },
            )
            start = stop

    def _windows(self) -> list[tuple[int, int]]:
        """Word ranges of about WINDOW_CODES codes each (a word longer than that is a window alone)."""
        words, total = len(self.offsets) - 1, int(self.offsets[-1])
        cuts = np.searchsorted(self.offsets, np.arange(WINDOW_CODES, total, WINDOW_CODES), side="right") - 1
        bounds = np.unique(np.concatenate([[0], np.clip(cuts, 1, words), [words]]))
        return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


_NONE = Neighbours(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32))
_FIELDS = [f.name for f in dataclasses.fields(Neighbours)]


def _key(block, word, position):
    """A (query block, word, descriptor) pair as one sortable int64: blocks, then words, ascending."""
    return (np.int64(block) << np.int64(40)) | (np.int64(word) << np.int64(20)) | np.int64(position)


def _pairs(words: np.ndarray, blocks: int) -> np.ndarray:
    """Every (descriptor, probed word) of a chunk as a sorted key. Each block of descriptors (one per
    scanning thread, so no two threads update one descriptor's nearest) is scanned word by word: a
    run read once serves every descriptor of the block that probes it."""
    total, probes = words.shape
    position = np.repeat(np.arange(total, dtype=np.int64), probes)
    flat = words.reshape(-1)
    keep = flat >= 0
    keys = _key(position[keep] * blocks // max(1, total), flat[keep], position[keep])
    keys.sort()
    return keys


@intrinsic
def _popcount(typingctx, x):  # pragma: no cover
    """The CPU's population count of a uint64 (LLVM's ctpop: POPCNT, or VPOPCNTQ once vectorised);
    numba has none of its own."""

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


@njit(parallel=True, cache=True)
def _scan(queries, pairs, cut, offsets, base, codes, ids, slots, wanted, radius, best_d, best_i):  # pragma: no cover
    """best_d/best_i[q, slot] <- the k smallest (distance, id) within `radius` among the codes of
    that slot in the probed words, for the pairs of each block in
    [cut[block, 0], cut[block, 1]): a window of the lists whose first code is `base`.

    Most codes of a probed run are within the radius (59%), but few are nearer than the k-th kept
    for their slot (3.5% of a render's at a million references). Deciding code by code which to
    keep cost a branch the CPU mispredicted for about half of them: half the scan's time. So a run
    is read in three loops: its distances (vectorised: VPOPCNTQ where the CPU has it); without a
    branch, the positions within their slot's bound as the run begins (the radius, or the k-th kept
    when nearer; -1 for a slot not searched); and, for those few, the exact test and insertion.
    The bound can only tighten while the run is read, so no code that belongs is passed over
    (bench/RESULTS.md, part 8: the scan of a render at a million references, 0.23 -> 0.15 s)."""
    last = best_d.shape[2] - 1
    longest = np.max(offsets[1:] - offsets[:-1]) if offsets.shape[0] > 1 else 0
    for block in prange(cut.shape[0]):
        distance = np.empty(longest, np.int32)
        near = np.empty(longest, np.int32)
        bound = np.empty(best_d.shape[1], np.int32)
        for t in range(cut[block, 0], cut[block, 1]):
            key = pairs[t]
            word = (key >> 20) & 0xFFFFF
            q = key & 0xFFFFF
            q0, q1, q2, q3 = queries[q, 0], queries[q, 1], queries[q, 2], queries[q, 3]
            lo = offsets[word] - base
            n = offsets[word + 1] - base - lo
            for s in range(bound.shape[0]):
                bound[s] = min(np.int32(best_d[q, s, last]), np.int32(radius)) if wanted[s] else -1
            # Slices, so that no index can be negative and wrap: the distance loop is then vectorised.
            run, run_slots = codes[lo : lo + n], slots[lo : lo + n]
            for j in range(run.shape[0]):
                distance[j] = (
                    _popcount(q0 ^ run[j, 0])
                    + _popcount(q1 ^ run[j, 1])
                    + _popcount(q2 ^ run[j, 2])
                    + _popcount(q3 ^ run[j, 3])
                )
            m = 0
            for j in range(n):
                near[m] = j
                m += distance[j] <= bound[run_slots[j]]
            for c in range(m):
                d = distance[near[c]]
                k = lo + near[c]
                slot = slots[k]
                found = np.int64(ids[k])
                if d > best_d[q, slot, last] or (d == best_d[q, slot, last] and found >= best_i[q, slot, last]):
                    continue
                at = last  # insertion into the few kept, nearest first
                while at > 0 and (
                    d < best_d[q, slot, at - 1] or (d == best_d[q, slot, at - 1] and found < best_i[q, slot, at - 1])
                ):
                    best_d[q, slot, at], best_i[q, slot, at] = best_d[q, slot, at - 1], best_i[q, slot, at - 1]
                    at -= 1
                best_d[q, slot, at], best_i[q, slot, at] = d, found


@njit(cache=True)
def _kept(best_d, best_i, radius, wanted, start):  # pragma: no cover
    """The nearest kept within `radius`, slot by slot in one pass (a numpy mask and gather per slot
    cost a 400-render batch ~10 s at a million references): (bounds, rows, found, distance) with slot
    s's neighbours at [bounds[s], bounds[s + 1]), by row, nearest first, rows counted from `start`."""
    n, slots, k = best_d.shape
    counts = np.zeros(slots + 1, np.int64)
    for q in range(n):
        for s in range(slots):
            if wanted[s]:
                for m in range(k):
                    if best_d[q, s, m] > radius:  # kept nearest first: the rest are further
                        break
                    counts[s + 1] += 1
    bounds = np.cumsum(counts)
    rows = np.empty(bounds[-1], np.int64)
    found = np.empty(bounds[-1], np.int64)
    distance = np.empty(bounds[-1], np.int32)
    at = bounds[:-1].copy()
    for q in range(n):
        for s in range(slots):
            if wanted[s]:
                for m in range(k):
                    if best_d[q, s, m] > radius:
                        break
                    rows[at[s]], found[at[s]], distance[at[s]] = q + start, best_i[q, s, m], best_d[q, s, m]
                    at[s] += 1
    return bounds, rows, found, distance


def _filed_lists(path: Path, words: int) -> faiss.IndexBinaryIVF:
    index = faiss.read_index_binary(str(path), faiss.IO_FLAG_MMAP)
    if not isinstance(index, faiss.IndexBinaryIVF) or index.nlist != words:
        raise ValueError(f"{path} is not filed on a vocabulary of {words} words")
    return index


def merge(index_folder: Path, vocabulary: str, words: int, shards: list[int]) -> int:
    """Write the merged lists of `shards` (each filed on `vocabulary`, of `words` words) aside and
    rename them into place: a crash leaves the old merge or none. Returns the codes merged."""
    if len(shards) > MAX_SHARDS:
        raise ValueError(f"{len(shards)} shards: at most {MAX_SHARDS} can be merged")
    folders = [index_folder / "shards" / f"{n:06d}" for n in shards]
    stamps = [stamp(f) for f in folders]
    indexes = [_filed_lists(f / FEATURE_FILES[0], words) for f in folders]
    sizes = np.zeros((words, len(shards)), dtype=np.int64)
    for slot, index in enumerate(indexes):
        sizes[:, slot] = [index.invlists.list_size(w) for w in range(words)]
    # Where each (word, shard) run starts: word by word, the shards in order.
    starts = np.concatenate([[0], np.cumsum(sizes.reshape(-1))]).astype(np.int64)
    tmp = index_folder / f".{FOLDER}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write(tmp, indexes, shards, sizes, starts)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk: nothing half-written is left behind
        raise
    (tmp / "meta.json").write_text(json.dumps({"vocabulary": vocabulary, "shards": shards, "stamps": stamps}))
    old = index_folder / f".{FOLDER}-old-{os.getpid()}"
    if (index_folder / FOLDER).exists():
        os.replace(index_folder / FOLDER, old)
    os.replace(tmp, index_folder / FOLDER)
    shutil.rmtree(old, ignore_errors=True)
    return int(starts[-1])


def _allocated(path: Path, dtype: type, shape: tuple[int, ...]) -> np.memmap:
    """A writable memory-mapped .npy whose blocks are reserved on disk first: a full disk is then an
    OSError here, not a SIGBUS when a page of the mapping is written."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    return array


def _write(
    tmp: Path, indexes: list[faiss.IndexBinaryIVF], shards: list[int], sizes: np.ndarray, starts: np.ndarray
) -> None:
    total = int(starts[-1])
    codes = _allocated(tmp / "codes.npy", np.uint64, (total, 4))
    ids = _allocated(tmp / "ids.npy", np.uint32, (total,))
    slots = _allocated(tmp / "slots.npy", np.uint16, (total,))
    for slot, index in enumerate(indexes):
        lists = index.invlists
        for word in np.flatnonzero(sizes[:, slot]):
            size, at = int(sizes[word, slot]), int(starts[word * len(shards) + slot])
            found = faiss.rev_swig_ptr(lists.get_ids(int(word)), size)
            if found.max(initial=0) >= MAX_ID:
                raise ValueError(f"shard {shards[slot]} has keypoint ids past {MAX_ID}: it cannot be merged")
            ids[at : at + size] = found
            codes[at : at + size] = (
                faiss.rev_swig_ptr(lists.get_codes(int(word)), size * 32).view(np.uint64).reshape(-1, 4)
            )
            slots[at : at + size] = slot
    for array in (codes, ids, slots):
        array.flush()
    np.save(tmp / "offsets.npy", starts[:: len(shards)])
