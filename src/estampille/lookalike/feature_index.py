"""The second tier's data in the index, beside each shard's hash arrays (same shard, same atomic
rename, same memory-mapping):

    shards/<n>/features.fbin        faiss binary index of every keypoint's descriptor, id = row * STRIDE + k
    shards/<n>/features_xy.npy      (N, STRIDE, 2) float16 keypoint positions (pixels of the extraction image)
    shards/<n>/features_size.npy    (N, 2) uint16 extraction size
    shards/<n>/verify.bin           grey 128 x 128 thumbnails verification compares (verify.py), JPEG q90 each
    shards/<n>/verify_offsets.npy   (N + 1,) int64 where each one starts in verify.bin
                                    (both absent in shards written before verification: the catalog's file is read)

Small shards get an exact (flat) index; large ones an IVF index (trained on the shard's own
descriptors), probed `NPROBE` lists deep. A shard written before this tier has no such files: the
hash tier still searches it, and `lookalike index --upgrade` adds them from the catalog's files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import faiss
import numpy as np

from .features import DESCRIPTOR_BYTES, FeatureMatch, Features, FeatureThresholds, verify

STRIDE = 256  # keypoint slots per image in the ids
FLAT_BELOW = 200_000  # descriptors: an exact index below this, IVF above
NPROBE = 6  # IVF lists probed: chosen with bench/lookalike_features_speed.py (recall at 100k)
CANDIDATES = 12  # references verified per query, the most voted first
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


def build_index(features: list[Features]) -> tuple[faiss.IndexBinary, np.ndarray, np.ndarray]:
    """(faiss index, positions, sizes) over the keypoints of `features`, row = position in the list."""
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
    bits = DESCRIPTOR_BYTES * 8
    index: faiss.IndexBinary
    if len(data) < FLAT_BELOW:
        index = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(bits))
    else:
        nlist = int(min(4096, 2 ** round(np.log2(np.sqrt(len(data))))))
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, nlist)
        sample = data[np.random.default_rng(0).choice(len(data), min(len(data), 64 * nlist), replace=False)]
        index.train(sample)
    if len(data):
        index.add_with_ids(data, ids_all)
    return index, xy, sizes


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


def write_feature_files(folder: Path, features: list[Features]) -> None:
    """Write a shard's feature files into `folder` (the shard's temporary folder before its rename)."""
    index, xy, sizes = build_index(features)
    faiss.write_index_binary(index, str(folder / "features.fbin"))
    np.save(folder / "features_xy.npy", xy)
    np.save(folder / "features_size.npy", sizes)
    thumbs = Thumbnails.encode(features)
    if thumbs is not None:
        thumbs.save(folder)


def has_features(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FEATURE_FILES)


@dataclass
class FeatureShard:
    index: faiss.IndexBinary
    xy: np.ndarray
    sizes: np.ndarray
    thumbnails: Thumbnails | None = None

    @classmethod
    def in_memory(cls, features: list[Features]) -> FeatureShard:
        """For a search that must write nothing (audit): the same index, never saved."""
        index, xy, sizes = build_index(features)
        if hasattr(index, "nprobe"):
            index.nprobe = NPROBE
        return cls(index, xy, sizes, Thumbnails.encode(features))

    @classmethod
    def load(cls, folder: Path) -> FeatureShard | None:
        if not has_features(folder):
            return None
        # Memory-mapped: a search pages in the inverted lists it probes, and the kernel may drop them
        # again; a million references (~8 GB of lists) then fit a machine that also renders.
        index = faiss.read_index_binary(str(folder / "features.fbin"), faiss.IO_FLAG_MMAP)
        if hasattr(index, "nprobe"):
            index.nprobe = NPROBE
        return cls(
            index,
            np.load(folder / "features_xy.npy", mmap_mode="r"),
            np.load(folder / "features_size.npy", mmap_mode="r"),
            Thumbnails.load(folder),
        )

    def search(
        self, queries: list[tuple[Features, Features]], thresholds: FeatureThresholds, rows: np.ndarray | None = None
    ) -> list[tuple[int, int, FeatureMatch]]:
        """(query number, shard row, match) for every verified pair. Each query is (features of the
        image, features of its mirror); `rows` (live rows of the shard) filters candidates."""
        if self.index.ntotal == 0 or not queries:
            return []
        blocks, owners = [], []  # owners: (query number, mirrored) per block of descriptors
        for q, (plain, mirror) in enumerate(queries):
            for mirrored, features in ((False, plain), (True, mirror)):
                if len(features):
                    blocks.append(features.descriptors)
                    owners.append((q, mirrored, len(features)))
        if not blocks:
            return []
        distances, found = self.index.search(np.concatenate(blocks), 2)
        hits = []
        start = 0
        for q, mirrored, count in owners:
            d, ids = distances[start : start + count], found[start : start + count]
            start += count
            keep = (ids >= 0) & (d <= thresholds.max_hamming)
            query_kp = np.broadcast_to(np.arange(count)[:, None], ids.shape)[keep]
            ids = ids[keep]
            ref_rows, ref_kp = ids // STRIDE, ids % STRIDE
            if rows is not None:
                live = np.isin(ref_rows, rows)
                ref_rows, ref_kp, query_kp = ref_rows[live], ref_kp[live], query_kp[live]
            if len(ref_rows) == 0:
                continue
            candidates, votes = np.unique(ref_rows, return_counts=True)
            order = np.argsort(-votes)[:CANDIDATES]
            features = queries[q][1 if mirrored else 0]
            for row in candidates[order][votes[order] >= thresholds.min_votes]:
                pick = ref_rows == row
                match = verify(
                    features,
                    np.asarray(self.xy[row], dtype=np.float32),
                    (int(self.sizes[row][0]), int(self.sizes[row][1])),
                    query_kp[pick],
                    ref_kp[pick],
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
