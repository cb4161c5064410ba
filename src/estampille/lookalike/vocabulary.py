"""The index's visual vocabulary: one coarse quantizer that every large shard's inverted lists share.

With a quantizer per shard, a query's keypoints are assigned to cells once per shard and each
shard's lists are scanned `NPROBE` deep: the cost of the feature tier grows with the number of
shards (20 at a million references: ingest writes 50,000 a shard). With one vocabulary for the whole
index a query's keypoints are assigned once (an HNSW graph over the words, ~55 µs a keypoint), and
each shard scans only its part of the same few lists (bench/lookalike_million.py).

The words are binary centroids found by k-majority (k-means for Hamming space: each word becomes
the bitwise majority of the descriptors nearest to it), seeded with descriptors of the index's
first large shard. faiss trains a binary IVF through float k-means over 256 dimensions, far too
slow for 262,144 words on 2 cores; the majority step is a few lines of numpy, and faiss's HNSW
does the assignments.

    <index>/vocabulary.fbin    faiss IndexBinaryHNSW over the words (meta.json of a shard filed
                               on it names the vocabulary's digest)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

FILE = "vocabulary.fbin"
WORDS = 262_144  # words of a vocabulary trained on enough descriptors (bench/lookalike_million.py)
SAMPLES_PER_WORD = 16  # training descriptors per word; fewer words when a first shard has fewer
MIN_WORDS = 256
PROBES = 32  # nearest words a query keypoint's lists are scanned in (bench/lookalike_million.py)
ITERATIONS = 3  # k-majority steps: a time budget (~70 s each at 262,144 words on 2 cores), not tuned
GRAPH_LINKS = 32  # HNSW links per word
SEARCH_DEPTH = 64  # HNSW efSearch when a query's keypoints are assigned (>= PROBES)
ADD_DEPTH = 16  # and when a reference's keypoint is filed (its one nearest word)


def words_for(descriptors: int) -> int:
    """The vocabulary size `descriptors` can train: WORDS, or a smaller power of two."""
    fit = 2 ** int(np.floor(np.log2(max(1, descriptors // SAMPLES_PER_WORD))))
    return int(min(WORDS, max(MIN_WORDS, fit)))


def _graph(words: np.ndarray) -> faiss.IndexBinaryHNSW:
    graph = faiss.IndexBinaryHNSW(words.shape[1] * 8, GRAPH_LINKS)
    graph.hnsw.efConstruction = 40
    graph.add(np.ascontiguousarray(words))
    return graph


def k_majority(descriptors: np.ndarray, words: int, seed: int = 0) -> np.ndarray:
    """`words` binary centroids of `descriptors` (N, 32) uint8."""
    rng = np.random.default_rng(seed)
    words = min(words, len(descriptors))
    sample = descriptors[rng.choice(len(descriptors), min(len(descriptors), SAMPLES_PER_WORD * words), replace=False)]
    centroids = sample[rng.choice(len(sample), words, replace=False)].copy()
    bits = np.unpackbits(sample, axis=1)
    for _ in range(ITERATIONS):
        graph = _graph(centroids)
        graph.hnsw.efSearch = 32
        nearest = graph.search(sample, 1)[1][:, 0]
        order = np.argsort(nearest, kind="stable")
        labels = nearest[order]
        starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        votes = np.add.reduceat(bits[order], starts, axis=0, dtype=np.uint32)
        members = np.diff(np.r_[starts, len(labels)])
        # A word no descriptor chose keeps its seed.
        centroids[labels[starts]] = np.packbits((2 * votes > members[:, None]).astype(np.uint8), axis=1)
    return centroids


@dataclass(frozen=True)
class Probes:
    """The nearest words of a batch of query descriptors, computed once and used by every shard
    filed on the same vocabulary."""

    vocabulary: str
    distances: np.ndarray  # (N, PROBES) int32
    words: np.ndarray  # (N, PROBES) int64


class Vocabulary:
    def __init__(self, graph: faiss.IndexBinaryHNSW):
        self.graph = graph
        storage = faiss.downcast_IndexBinary(graph.storage)
        words = storage.reconstruct_n(0, storage.ntotal)
        self.digest = hashlib.sha256(words.tobytes()).hexdigest()[:16]

    def __len__(self) -> int:
        return int(self.graph.ntotal)

    @classmethod
    def train(cls, descriptors: np.ndarray) -> Vocabulary:
        return cls(_graph(k_majority(descriptors, words_for(len(descriptors)))))

    @classmethod
    def load(cls, index_folder: Path) -> Vocabulary | None:
        path = index_folder / FILE
        if not path.is_file():
            return None
        graph = faiss.read_index_binary(str(path))
        if not isinstance(graph, faiss.IndexBinaryHNSW):
            raise ValueError(f"{path} is not a vocabulary (an HNSW graph of binary words)")
        return cls(graph)

    def save(self, index_folder: Path) -> None:
        """Written aside and renamed into place: a crash leaves the old vocabulary or none."""
        tmp = index_folder / f".{FILE}-{os.getpid()}"
        faiss.write_index_binary(self.graph, str(tmp))
        os.replace(tmp, index_folder / FILE)

    def file(self, descriptors: np.ndarray, ids: np.ndarray) -> faiss.IndexBinaryIVF:
        """Inverted lists of `descriptors` over these words, ready to save without the words
        (a shard's file then holds its lists only; searches bring the vocabulary's probes)."""
        self.graph.hnsw.efSearch = ADD_DEPTH
        lists = faiss.IndexBinaryIVF(self.graph, self.graph.d, len(self))
        lists.own_fields = False
        lists.add_with_ids(descriptors, ids)
        placeholder = faiss.IndexBinaryFlat(self.graph.d)
        lists.quantizer = placeholder
        setattr(lists, "referenced_placeholder", placeholder)  # noqa: B010  (kept alive as long as the lists)
        return lists

    def probes(self, descriptors: np.ndarray, probes: int | None = None) -> Probes:
        probes = probes or PROBES
        self.graph.hnsw.efSearch = max(SEARCH_DEPTH, probes)
        distances, words = self.graph.search(descriptors, probes)
        return Probes(self.digest, distances, words)
