"""The second tier's data in the index, beside each shard's hash arrays (same shard, same atomic
rename, same memory-mapping):

    shards/<n>/features.fbin        faiss binary index of every keypoint's descriptor, id = row * STRIDE + k
    shards/<n>/features_xy.npy      (N, STRIDE, 2) float16 keypoint positions (pixels of the extraction image)
    shards/<n>/features_size.npy    (N, 2) uint16 extraction size
    shards/<n>/verify.bin           grey 128 x 128 thumbnails verification compares (verify.py), JPEG q90 each
    shards/<n>/verify_offsets.npy   (N + 1,) int64 where each one starts in verify.bin
                                    (both absent in shards written before verification: the catalog's file is read)

Small shards get an exact (flat) index; large ones inverted lists over the index's shared
vocabulary (vocabulary.py: one assignment of a query's keypoints serves every shard). A shard's meta.json
names the vocabulary its lists are filed on; shards filed before it have an IVF index of their own
(trained on the shard's descriptors, probed `NPROBE` lists deep), still searched that way until
`lookalike index --upgrade` files them again. A shard written before this tier has no feature
files: the hash tier still searches it, and `--upgrade` adds them from the catalog's files.

A query keypoint votes for the references of its `NEIGHBOURS` nearest indexed keypoints, and the
`CANDIDATES` most voted references are fitted by RANSAC. A picture is often in an index more than
once (a competitor's crops and reposts of one photo): with 2 neighbours and 12 candidates those other
copies took the nearest slots, and the reference a copy was made from got too few votes for the
RANSAC floor (a low-detail photo has 20-70 keypoints) or ranked past the twelfth (a photo indexed in
a dozen crops). Issue 26's held-out set lost its last mirror/rotation and 70-80% crop copies that
way, none of them at verification. More votes only propose more candidates: each one is verified on
its pixels before anything is flagged (bench/lookalike_verification.py, bench/lookalike_false_flags.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import faiss
import numpy as np

from .features import DESCRIPTOR_BYTES, FeatureMatch, Features, FeatureThresholds, verify
from .vocabulary import Probes, Vocabulary

STRIDE = 256  # keypoint slots per image in the ids
FLAT_BELOW = 200_000  # descriptors: an exact index below this, IVF above
NPROBE = 6  # lists probed in a shard's own IVF (before the shared vocabulary; bench/lookalike_features_speed.py)
CANDIDATES = 24  # references fitted by RANSAC per query (and per mirror) and shard, the most voted first
NEIGHBOURS = 8  # nearest indexed keypoints each query keypoint votes for, per shard (see the module doc)
FEATURE_FILES = ("features.fbin", "features_xy.npy", "features_size.npy")
THUMBNAILS = ("verify.bin", "verify_offsets.npy")
THUMBNAIL_QUALITY = 90  # ~4 KB a reference; at q90 the blocks verification correlates are unchanged


def default_search_threads() -> int:
    """Every core this process may use: one search of a batch's descriptors is the cost of the
    feature tier, and faiss splits it over threads."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_search_threads(threads: int | None = None) -> None:
    """The feature search's threads: `threads` (the caller's `Settings.search_threads`,
    ESTAMPILLE_SEARCH_THREADS), else every core. The library reads no configuration itself."""
    faiss.omp_set_num_threads(threads or default_search_threads())


def search_threads() -> int:
    return faiss.omp_get_max_threads()


set_search_threads()


def build_index(
    features: list[Features], vocabulary: Vocabulary | None = None
) -> tuple[faiss.IndexBinary, np.ndarray, np.ndarray]:
    """(faiss index, positions, sizes) over the keypoints of `features`, row = position in the list:
    exact when small, else lists over `vocabulary` (or, without one, an IVF trained on them)."""
    n = len(features)
    xy = np.full((n, STRIDE, 2), np.nan, dtype=np.float16)
    sizes = np.zeros((n, 2), dtype=np.uint16)
    codes, ids = [], []
    for row, f in enumerate(features):
        k = min(len(f), STRIDE)
        sizes[row] = f.size
        if k:
            xy[row, :k] = f.xy[:k]
            codes.append(f.descriptors[:k])
            ids.append(np.arange(k, dtype=np.int64) + row * STRIDE)
    data = np.concatenate(codes) if codes else np.zeros((0, DESCRIPTOR_BYTES), np.uint8)
    ids_all = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    return index_of(data, ids_all, vocabulary), xy, sizes


def index_of(data: np.ndarray, ids: np.ndarray, vocabulary: Vocabulary | None = None) -> faiss.IndexBinary:
    """The searchable index of descriptors `data` with their `ids` (see build_index)."""
    bits = DESCRIPTOR_BYTES * 8
    if len(data) < FLAT_BELOW:
        flat = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(bits))
        if len(data):
            flat.add_with_ids(data, ids)
        return flat
    if vocabulary is not None:
        return vocabulary.file(data, ids)
    nlist = int(min(4096, 2 ** round(np.log2(np.sqrt(len(data))))))
    index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, nlist)
    sample = data[np.random.default_rng(0).choice(len(data), min(len(data), 64 * nlist), replace=False)]
    index.train(sample)
    index.add_with_ids(data, ids)
    return index


def descriptors_of(index: faiss.IndexBinary) -> tuple[np.ndarray, np.ndarray]:
    """(descriptors, ids) a shard's index holds, in id order: to file them again without decoding
    a single image (`lookalike index --upgrade` onto a new vocabulary)."""
    if isinstance(index, faiss.IndexBinaryIDMap):
        flat = faiss.downcast_IndexBinary(index.index)
        codes = flat.reconstruct_n(0, flat.ntotal) if flat.ntotal else np.zeros((0, DESCRIPTOR_BYTES), np.uint8)
        ids = faiss.vector_to_array(index.id_map)
    else:
        assert isinstance(index, faiss.IndexBinaryIVF), type(index)
        lists = index.invlists
        parts = [(lists.list_size(n), n) for n in range(lists.nlist)]
        codes = np.concatenate(
            [np.zeros((0, DESCRIPTOR_BYTES), np.uint8)]
            + [
                faiss.rev_swig_ptr(lists.get_codes(n), size * DESCRIPTOR_BYTES).copy().reshape(size, -1)
                for size, n in parts
                if size
            ]
        )
        ids = np.concatenate(
            [np.zeros(0, np.int64)] + [faiss.rev_swig_ptr(lists.get_ids(n), size).copy() for size, n in parts if size]
        )
    order = np.argsort(ids, kind="stable")
    return np.ascontiguousarray(codes[order]), ids[order].astype(np.int64)


def query_owners(queries: list[tuple[Features, Features]]) -> list[tuple[int, bool, int]]:
    """Whose are the blocks of query_descriptors' array: (query number, mirrored, count) per block."""
    return [
        (q, mirrored, len(features))
        for q, (plain, mirror) in enumerate(queries)
        for mirrored, features in ((False, plain), (True, mirror))
        if len(features)
    ]


def query_descriptors(queries: list[tuple[Features, Features]]) -> tuple[np.ndarray, list[tuple[int, bool, int]]]:
    """Every query keypoint's descriptor in one array (as searched), and its owners (query_owners).
    The vocabulary's probes are computed on this array."""
    owners = query_owners(queries)
    blocks = [queries[q][1 if mirrored else 0].descriptors for q, mirrored, _ in owners]
    return (np.concatenate(blocks) if blocks else np.zeros((0, DESCRIPTOR_BYTES), np.uint8)), owners


@dataclass(frozen=True)
class Neighbours:
    """A shard's near keypoints of a batch of query descriptors: pairs (descriptor, keypoint id), each
    within the Hamming radius and among that descriptor's NEIGHBOURS nearest in the shard, sorted by
    descriptor (row-major order of a k-nearest search). The one shape both retrievals hand to
    `FeatureShard.matches`, so they vote and fit alike."""

    descriptor: np.ndarray  # (M,) int64: position in query_descriptors' array
    found: np.ndarray  # (M,) int64: the shard's keypoint id (row * STRIDE + keypoint)
    distance: np.ndarray  # (M,) int32: Hamming distance between the two


def _thumbnail(features: Features) -> np.ndarray:
    if features.thumbnail is None:
        raise ValueError("a reference without its verification thumbnail")
    return features.thumbnail


class Thumbnails:
    """A shard's verification thumbnails, each decoded when asked for (only candidates are)."""

    def __init__(self, data: bytes | np.ndarray, offsets: np.ndarray):
        self.data, self.offsets = data, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, row: int) -> np.ndarray:
        start, stop = int(self.offsets[row]), int(self.offsets[row + 1])
        return np.asarray(cv2.imdecode(np.frombuffer(bytes(self.data[start:stop]), np.uint8), cv2.IMREAD_GRAYSCALE))

    @classmethod
    def encode(cls, features: list[Features]) -> Thumbnails | None:
        """None unless every reference has a thumbnail."""
        if not features or any(f.thumbnail is None for f in features):
            return None
        blobs = [
            cv2.imencode(".jpg", _thumbnail(f), [cv2.IMWRITE_JPEG_QUALITY, THUMBNAIL_QUALITY])[1].tobytes()
            for f in features
        ]
        return cls(b"".join(blobs), np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64))

    def save(self, folder: Path) -> None:
        (folder / THUMBNAILS[0]).write_bytes(bytes(self.data))
        np.save(folder / THUMBNAILS[1], self.offsets)

    @classmethod
    def load(cls, folder: Path) -> Thumbnails | None:
        if not all((folder / name).is_file() for name in THUMBNAILS):
            return None
        return cls(
            np.memmap(folder / THUMBNAILS[0], dtype=np.uint8, mode="r")
            if (folder / THUMBNAILS[0]).stat().st_size
            else b"",
            np.load(folder / THUMBNAILS[1]),
        )


def write_feature_files(folder: Path, features: list[Features], vocabulary: Vocabulary | None = None) -> str | None:
    """Write a shard's feature files into `folder` (the shard's temporary folder before its rename).
    Returns the digest of the vocabulary its lists were filed on (None: exact, or its own IVF)."""
    index, xy, sizes = build_index(features, vocabulary)
    faiss.write_index_binary(index, str(folder / "features.fbin"))
    np.save(folder / "features_xy.npy", xy)
    np.save(folder / "features_size.npy", sizes)
    thumbs = Thumbnails.encode(features)
    if thumbs is not None:
        thumbs.save(folder)
    return filed_on(index, vocabulary)


def filed_on(index: faiss.IndexBinary, vocabulary: Vocabulary | None) -> str | None:
    return vocabulary.digest if vocabulary is not None and isinstance(index, faiss.IndexBinaryIVF) else None


def has_features(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FEATURE_FILES)


RADIX_FROM = 2048  # votes from which two radix sorts beat one comparison sort


def _stable_order(ids: np.ndarray) -> np.ndarray:
    """np.argsort(ids, kind="stable") for ids = row * STRIDE + keypoint. numpy sorts integers of 16
    bits or less by radix, in linear time: a keypoint sort, then a stable row sort, give the same
    order 2-3x faster for a shard's 6,000-12,000 votes in a render, when its rows fit 16 bits."""
    if len(ids) < RADIX_FROM or int(ids.max()) >= (1 << 16) * STRIDE:
        return np.argsort(ids, kind="stable")
    by_keypoint = np.argsort((ids % STRIDE).astype(np.uint8), kind="stable")
    return by_keypoint[np.argsort((ids[by_keypoint] // STRIDE).astype(np.uint16), kind="stable")]


def _candidates(ids: np.ndarray, min_inliers: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The references the votes `ids` (row * STRIDE + keypoint, one per vote) are for, from one stable
    sort: (rows ascending, their votes, whether each can pass, order, bounds); row n's votes are
    ids[order[bounds[n] : bounds[n + 1]]].

    A row can pass when at least `min_inliers` distinct keypoints of its own were voted for: verify()
    keeps a fit only with that many inliers at distinct reference keypoints, so the others are not
    fitted: the same matches, fewer RANSAC runs (at a million references most chance candidates are
    these)."""
    order = _stable_order(ids)
    ranked = ids[order]
    rows = ranked // STRIDE
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if len(ids) else np.zeros(0, np.int64)
    new_keypoint = np.r_[True, ranked[1:] != ranked[:-1]] if len(ids) else np.zeros(0, bool)
    distinct = np.add.reduceat(new_keypoint.astype(np.int64), starts) if len(ids) else np.zeros(0, np.int64)
    bounds = np.r_[starts, len(ids)]
    return rows[starts], np.diff(bounds), distinct >= min_inliers, order, bounds


@dataclass
class FeatureShard:
    index: faiss.IndexBinary
    xy: np.ndarray
    sizes: np.ndarray
    thumbnails: Thumbnails | None = None
    vocabulary: str | None = None  # digest of the shared vocabulary its lists are filed on

    @classmethod
    def in_memory(cls, features: list[Features]) -> FeatureShard:
        """For a search that must write nothing (audit): the same index, never saved."""
        index, xy, sizes = build_index(features)
        if hasattr(index, "nprobe"):
            index.nprobe = NPROBE
        return cls(index, xy, sizes, Thumbnails.encode(features))

    @classmethod
    def load(cls, folder: Path, vocabulary: str | None = None) -> FeatureShard | None:
        """`vocabulary`: the digest the shard's meta.json names (None: exact, or an IVF of its own)."""
        if not has_features(folder):
            return None
        # Memory-mapped: a search pages in the inverted lists it probes, and the kernel may drop them
        # again; a million references (~8 GB of lists) then fit a machine that also renders.
        index = faiss.read_index_binary(str(folder / "features.fbin"), faiss.IO_FLAG_MMAP)
        if isinstance(index, faiss.IndexBinaryIVF) and index.quantizer.ntotal == 0 and vocabulary is None:
            # Filed on a vocabulary its meta.json does not name (a crash between the two): not searchable.
            raise ValueError("its lists are filed on a vocabulary its meta.json does not name")
        if hasattr(index, "nprobe"):
            index.nprobe = NPROBE
        # Plain views of the mappings: indexing a np.memmap makes a memmap of each row, which cost a
        # render at a million references more than its ~700 RANSAC fits' own look-ups.
        return cls(
            index,
            np.load(folder / "features_xy.npy", mmap_mode="r").view(np.ndarray),
            np.load(folder / "features_size.npy", mmap_mode="r").view(np.ndarray),
            Thumbnails.load(folder),
            vocabulary,
        )

    def search(
        self,
        queries: list[tuple[Features, Features]],
        thresholds: FeatureThresholds,
        rows: np.ndarray | None = None,
        probes: Probes | None = None,
    ) -> list[tuple[int, int, FeatureMatch]]:
        """(query number, shard row, match) for every verified pair. Each query is (features of the
        image, features of its mirror); `rows` (live rows of the shard) filters candidates; `probes`
        (the vocabulary's nearest words of `query_descriptors(queries)`) serve a shard filed on it."""
        if self.index.ntotal == 0 or not queries:
            return []
        descriptors, owners = query_descriptors(queries)
        if not owners:
            return []
        if self.vocabulary is not None:
            assert isinstance(self.index, faiss.IndexBinaryIVF)
            if probes is None or probes.vocabulary != self.vocabulary:
                raise ValueError(f"these lists are filed on vocabulary {self.vocabulary}: search with its probes")
            self.index.nprobe = probes.words.shape[1]
            distances, found = self.index.search_preassigned(descriptors, NEIGHBOURS, probes.words, probes.distances)
        else:
            distances, found = self.index.search(descriptors, NEIGHBOURS)
        keep = (found >= 0) & (distances <= thresholds.max_hamming)
        return self.matches(queries, Neighbours(np.nonzero(keep)[0], found[keep], distances[keep]), thresholds, rows)

    def matches(
        self,
        queries: list[tuple[Features, Features]],
        neighbours: Neighbours,
        thresholds: FeatureThresholds,
        rows: np.ndarray | None = None,
    ) -> list[tuple[int, int, FeatureMatch]]:
        """The verified pairs (as `search` returns them) from the near keypoints already found in this
        shard (by its own index, or by the index's merged lists, merged_lists.py): each reference
        with enough votes is fitted by RANSAC, the most voted first."""
        owners = query_owners(queries)  # not the descriptors: one copy of them per shard was a batch's hot spot
        hits = []
        start = 0
        for q, mirrored, count in owners:
            lo, hi = np.searchsorted(neighbours.descriptor, (start, start + count))
            query_kp, ids = neighbours.descriptor[lo:hi] - start, neighbours.found[lo:hi]
            start += count
            if rows is not None:
                live = np.isin(ids // STRIDE, rows)
                ids, query_kp = ids[live], query_kp[live]
            if len(ids) == 0:
                continue
            candidates, votes, can_pass, by_row, bounds = _candidates(ids, thresholds.min_inliers)
            features = queries[q][1 if mirrored else 0]
            for n in np.argsort(-votes)[:CANDIDATES]:
                if votes[n] < thresholds.min_votes or not can_pass[n]:
                    continue
                row = candidates[n]
                pick = np.sort(by_row[bounds[n] : bounds[n + 1]])  # the votes in their first order
                match = verify(
                    features,
                    np.asarray(self.xy[row], dtype=np.float32),
                    (int(self.sizes[row][0]), int(self.sizes[row][1])),
                    query_kp[pick],
                    ids[pick] % STRIDE,
                    mirrored,
                    thresholds,
                )
                if match:
                    hits.append((q, int(row), match))
        # A query and its mirror can both match one reference: keep the better.
        best: dict[tuple[int, int], tuple[int, int, FeatureMatch]] = {}
        for hit in hits:
            key = hit[:2]
            if key not in best or hit[2].inliers > best[key][2].inliers:
                best[key] = hit
        return sorted(best.values(), key=lambda h: h[:2])
