"""Search a reference index with renders, in two tiers over the same shards (here, or on a Dask
cluster): the hash tier (global perceptual hashes of the whole query and of its content regions,
an exact compiled scan) and the feature tier (ORB keypoints retrieved through faiss, verified by
RANSAC). Each matched pair gets its distances, the tier and evidence that decided, and, from
the feature tier, the matched region of both images. Every candidate of either tier is then
verified on its pixels (verify.py) and graded: copy, derived part, similar composition."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import repeat
from pathlib import Path

import numpy as np
from PIL import Image
from threadpoolctl import ThreadpoolController

from .feature_index import FeatureShard, Neighbours, query_descriptors, query_owners, search_threads
from .features import QUERY_SIDE, FeatureMatch, Features, FeatureThresholds, decode_pair, query_features
from .hashing import DECODE_SIDE, DIHEDRAL, QueryHashes, hash_query, shrink
from .merged_lists import MergedLists
from .query_prep import content_regions
from .scan import QueryArrays, Thresholds, pair_distances, scan
from .store import ReferenceStore, Shard
from .verify import QueryView, Verification, VerifyThresholds, verify
from .vocabulary import Probes

THRESHOLDS_FILE = Path(__file__).with_name("thresholds.json")
REPORTED = ("phash", "window", "pdq", "dhash", "colour")


@lru_cache(maxsize=1)
def calibrated() -> Thresholds:
    """The per-hash thresholds bench/calibrate_lookalike.py chose on the labelled set."""
    data = json.loads(THRESHOLDS_FILE.read_text())
    return Thresholds(**{k: int(data["thresholds"][k]) for k in ("phash", "window", "pdq")})


@lru_cache(maxsize=1)
def feature_thresholds() -> FeatureThresholds:
    """The feature tier's thresholds (bench/lookalike_real_photos.py chose them on real photos)."""
    data = json.loads(THRESHOLDS_FILE.read_text()).get("features", {})
    return FeatureThresholds(**{k: v for k, v in data.items() if k in FeatureThresholds.__dataclass_fields__})


@lru_cache(maxsize=1)
def verify_thresholds() -> VerifyThresholds:
    """Verification's thresholds (bench/lookalike_verification.py chose them on real photos)."""
    data = json.loads(THRESHOLDS_FILE.read_text()).get("verification", {})
    return VerifyThresholds(**{k: v for k, v in data.items() if k in VerifyThresholds.__dataclass_fields__})


@dataclass
class Query:
    """One image to search: its hashes, the hashes of its content regions (the picture inside a
    screenshot or a story), and its keypoints as it is and mirrored."""

    hashes: QueryHashes
    regions: list[QueryHashes] = field(default_factory=list)
    features: tuple[Features, Features] | None = None
    informative: bool = True  # False for a flat or tiny image: its hashes would match every flat one
    view: QueryView | None = None  # its pixels, for verification (kept here, never sent to search workers)


def informative(image: Image.Image) -> bool:
    """Whether global hashes of `image` say anything: not a flat colour, not a sliver."""
    return min(image.size) >= 8 and float(np.asarray(image.convert("L"), dtype=np.float32).std()) >= 2.0


@dataclass(frozen=True)
class Hit:
    query: int
    reference_id: int
    distances: dict[str, int]
    reasons: tuple[str, ...]  # which hashes (or "features") are within their threshold
    tier: str = "hash"  # "hash", "features", or "hash+features"
    region: dict | None = None  # feature tier: matched boxes, inliers, scale, rotation, inlier pairs


def query_arrays(queries: list[QueryHashes], rotations: bool = False) -> tuple[QueryArrays, np.ndarray, np.ndarray]:
    """Pack queries. The candidate rule is tried under the query as it is and mirrored, or, with
    rotations, under all 8 dihedral variants (quarter turns and flips)."""
    variants = len(DIHEDRAL) if rotations else 2
    arrays = QueryArrays(
        phash=np.array([q.hashes.phash for q in queries], dtype=np.uint64),
        mirror=np.array([q.mirror_phash for q in queries], dtype=np.uint64),
        windows=np.array([q.hashes.windows for q in queries], dtype=np.uint64).reshape(len(queries), -1),
        variant_phash=np.array([q.variant_phash[:variants] for q in queries], dtype=np.uint64).reshape(
            len(queries), variants
        ),
        variant_pdq=np.array([q.variant_pdq[:variants] for q in queries], dtype=np.uint64).reshape(
            len(queries), variants, 4
        ),
    )
    return (
        arrays,
        np.array([q.hashes.dhash for q in queries], dtype=np.uint64),
        np.array([q.hashes.colour for q in queries], dtype=np.uint64),
    )


def search_shard(
    shard: Shard, packed: tuple[QueryArrays, np.ndarray, np.ndarray], thresholds: Thresholds, removed: np.ndarray
) -> list[Hit]:
    """Every pair of (query, live reference in this shard) within a threshold, with all distances."""
    queries, q_dhash, q_colour = packed
    pairs = scan(queries, shard.phash, shard.pdq, thresholds)
    if len(pairs) == 0:
        return []
    ids = np.asarray(shard.ids)[pairs[:, 1]]
    live = ~np.isin(ids, removed)
    pairs, ids = pairs[live], ids[live]
    if len(pairs) == 0:
        return []
    found = pair_distances(
        queries, pairs, shard.phash, shard.windows, shard.pdq, shard.dhash, shard.colour, q_dhash, q_colour
    )
    limits = thresholds.as_dict()
    hits = []
    for n, (q, reference) in enumerate(zip(pairs[:, 0], ids, strict=True)):
        distances = {k: int(found[k][n]) for k in REPORTED}
        hits.append(
            Hit(
                int(q),
                int(reference),
                distances,
                tuple(k for k, limit in limits.items() if distances[k] <= limit)
                + (("mirrored",) if found["mirrored"][n] else ()),
            )
        )
    return hits


def region_of(match: FeatureMatch) -> dict:
    return {
        "reference_box": [round(v, 4) for v in match.reference_box],
        "query_box": [round(v, 4) for v in match.query_box],
        "inliers": match.inliers,
        "scale": match.scale,
        "rotation": match.rotation,
        "mirrored": match.mirrored,
        "coverage": match.coverage,
        "transform": list(match.transform),
        "pairs": np.round(np.asarray(match.pairs, dtype=np.float64).reshape(-1, 4), 4).tolist(),
    }


def _merge(hash_hits: list[Hit], feature_hits: list[Hit]) -> list[Hit]:
    """One hit per (query, reference): a pair both tiers found carries the evidence of both."""
    merged: dict[tuple[int, int], Hit] = {}
    for hit in hash_hits:
        key = (hit.query, hit.reference_id)
        old = merged.get(key)
        if old is None or sum(old.distances.values()) > sum(hit.distances.values()):
            merged[key] = hit
    for hit in feature_hits:
        key = (hit.query, hit.reference_id)
        if key in merged:
            old = merged[key]
            merged[key] = Hit(
                old.query, old.reference_id, old.distances, old.reasons + ("features",), "hash+features", hit.region
            )
        else:
            merged[key] = hit
    return sorted(merged.values(), key=lambda h: (h.query, h.reference_id))


def _as_query(q: Query | QueryHashes) -> Query:
    return q if isinstance(q, Query) else Query(q)


def search_store(
    store: ReferenceStore,
    queries: Sequence[Query | QueryHashes],
    thresholds: Thresholds | None = None,
    rotations: bool = False,
    shards: list[int] | None = None,
    features: FeatureThresholds | None = None,
) -> list[Hit]:
    """Both tiers over the given shards (default all) in this process. A shard indexed before the
    feature tier (no feature files) is searched by the hash tier only."""
    if not queries:
        return []
    asked = [_as_query(q) for q in queries]
    thresholds, features = thresholds or calibrated(), features or feature_thresholds()
    searched = [n for n, q in enumerate(asked) if q.informative]
    flat = [asked[n].hashes for n in searched] + [r for n in searched for r in asked[n].regions]
    owner = searched + [n for n in searched for _ in asked[n].regions]
    packed = query_arrays(flat, rotations) if flat else None
    with_features = [(n, q.features) for n, q in enumerate(asked) if q.features is not None]
    whole = query_arrays([q.hashes for q in asked])
    removed = store.removed_ids()
    vocabulary = store.vocabulary() if with_features else None
    feature_queries = [f for _, f in with_features]
    descriptors = query_descriptors(feature_queries)[0] if vocabulary else None
    merged = store.merged_lists() if descriptors is not None else None
    if merged is not None and descriptors is not None:
        merged[0].prepare(len(descriptors))  # a batch unmaps what single renders kept mapped, first
    # One assignment of the queries' keypoints to the vocabulary's words serves every shard filed on it,
    # and one pass over the merged lists finds their near keypoints in every shard merged there.
    probes = vocabulary.probes(descriptors) if vocabulary and descriptors is not None else None
    requested = store.shard_numbers() if shards is None else shards
    found_merged = (
        _merged_matches(
            store, merged[0], merged[1] & set(requested), feature_queries, descriptors, probes, features, removed
        )
        if merged is not None and probes is not None and descriptors is not None
        else {}
    )
    hash_hits: list[Hit] = []
    feature_hits: list[Hit] = []
    for number in requested:
        shard = store.load_shard(number)
        for hit in search_shard(shard, packed, thresholds, removed) if packed else ():
            hash_hits.append(
                Hit(
                    owner[hit.query],
                    hit.reference_id,
                    hit.distances,
                    hit.reasons + (("content region",) if hit.query >= len(searched) else ()),
                    "hash",
                )
            )
        feature_shard = store.load_features(number) if with_features else None
        if feature_shard is None:
            continue
        found = (
            found_merged[number]
            if number in found_merged
            else feature_shard.search(feature_queries, features, _live_rows(shard, removed), probes)
        )
        if not found:
            continue
        # Every match reports all hash distances, also those only the feature tier found.
        pairs = np.array([[with_features[q][0], row] for q, row, _ in found], dtype=np.int64)
        distances = pair_distances(
            whole[0], pairs, shard.phash, shard.windows, shard.pdq, shard.dhash, shard.colour, whole[1], whole[2]
        )
        for n, (q, row, match) in enumerate(found):
            feature_hits.append(
                Hit(
                    with_features[q][0],
                    int(shard.ids[row]),
                    {k: int(distances[k][n]) for k in REPORTED},
                    ("features",),
                    "features",
                    region_of(match),
                )
            )
    return _merge(hash_hits, feature_hits)


def _live_rows(shard: Shard, removed: np.ndarray) -> np.ndarray | None:
    """The shard's rows not removed from the catalog; None when every row is live."""
    removed_here = np.isin(np.asarray(shard.ids), removed)
    return np.flatnonzero(~removed_here) if removed_here.any() else None


def _fit_shard(
    feature_shard: FeatureShard | None,
    queries: list[tuple[Features, Features]],
    neighbours: Neighbours,
    start: int,
    features: FeatureThresholds,
    live: np.ndarray | None,
) -> list[tuple[int, int, FeatureMatch]]:
    """One shard's matches of a chunk whose first descriptor is at `start`."""
    if feature_shard is None:
        return []
    local = Neighbours(neighbours.descriptor - start, neighbours.found, neighbours.distance)
    return feature_shard.matches(queries, local, features, live)


def _merged_matches(
    store: ReferenceStore,
    merged: MergedLists,
    shards: set[int],
    queries: list[tuple[Features, Features]],
    descriptors: np.ndarray,
    probes: Probes,
    features: FeatureThresholds,
    removed: np.ndarray,
) -> dict[int, list[tuple[int, int, FeatureMatch]]]:
    """FeatureShard.matches for every shard of `shards` from the merged lists, a chunk of queries at a
    time: a chunk's near keypoints (per shard) are voted on and dropped before the next is scanned, so
    a batch never holds them all (all at once they came to 3.6 GB for 400 renders at a million)."""
    owners = query_owners(queries)
    counts = np.array([count for _, _, count in owners], dtype=np.int64)
    block_starts = np.concatenate([[0], np.cumsum(counts)])
    numbers = np.array([q for q, _, _ in owners], dtype=np.int64)
    # A chunk ends where a query's last block ends: its image and its mirror are voted on together.
    ends = block_starts[1:][np.append(numbers[1:] != numbers[:-1], True)] if len(owners) else block_starts[:1]
    live = {n: _live_rows(store.load_shard(n), removed) for n in shards}
    found: dict[int, list[tuple[int, int, FeatureMatch]]] = {n: [] for n in shards}
    loaded = {n: store.load_features(n) for n in shards}
    # Shards are fitted on the search's threads: RANSAC and numpy's sorts let go of the GIL.
    with ThreadPoolExecutor(search_threads()) as pool:
        for start, stop, near in merged.nearest_in_chunks(descriptors, probes, features.max_hamming, shards, ends):
            first = int(numbers[np.searchsorted(block_starts, start)])
            last = int(numbers[np.searchsorted(block_starts, stop) - 1])
            fitted = pool.map(
                _fit_shard,
                [loaded[n] for n in near],
                repeat(queries[first : last + 1]),
                near.values(),
                repeat(start),
                repeat(features),
                [live[n] for n in near],
            )
            for number, matches in zip(near, fitted, strict=True):
                found[number] += [(q + first, row, match) for q, row, match in matches]
    return found


def prepare_query(small: Image.Image, image: Image.Image) -> Query:
    """Everything a search needs from a query: `small` as the hash pipeline decodes it (so its
    hashes are bit-identical to the corpus's), `image` decoded near the feature size."""
    boxes = content_regions(image)
    regions = [
        hash_query(
            shrink(
                image.crop(
                    (
                        round(x0 * image.width),
                        round(y0 * image.height),
                        round(x1 * image.width),
                        round(y1 * image.height),
                    )
                ),
                DECODE_SIDE,
            )
        )
        for x0, y0, x1, y1 in boxes
    ]
    return Query(hash_query(small), regions, query_features(image), informative(small), QueryView.of(image, boxes))


def hash_queries(paths: list[Path | bytes]) -> tuple[list[Query | None], list[str | None]]:
    """Prepare render files (or encoded bytes) for both tiers; one that cannot be read gets its
    reason instead."""
    prepared: list[Query | None] = []
    errors: list[str | None] = []
    for path in paths:
        try:
            prepared.append(prepare_query(*decode_pair(path, QUERY_SIDE)))
            errors.append(None)
        except (ValueError, OSError) as exc:
            prepared.append(None)
            errors.append(str(exc))
    return prepared, errors


def verify_hits(
    store: ReferenceStore,
    queries: Sequence[Query],
    hits: list[Hit],
    rotations: bool = False,
    thresholds: VerifyThresholds | None = None,
) -> list[tuple[Hit, Verification]]:
    """Each hit with its verification, the dropped ones (feature-only, pixels disagree) left out.

    On one BLAS thread: verification's matrix products are small (256 x 64 by 64 x 64), and OpenBLAS's
    threads go on spinning ~0.1 s after each, taking both cores from the next search's assignment of
    keypoints to words (0.07 -> 0.12 s a render at a million references; bench/RESULTS.md part 8)."""
    thresholds = thresholds or verify_thresholds()
    references = store.thumbnails({h.reference_id for h in hits}) if hits else {}
    with _thread_pools().limit(limits=1, user_api="blas"):
        return _verified(queries, hits, references, rotations, thresholds)


@lru_cache(maxsize=1)
def _thread_pools() -> ThreadpoolController:
    """The BLAS libraries loaded (numpy's OpenBLAS), found once: a limit is then ~10 µs to set."""
    return ThreadpoolController()


def _verified(
    queries: Sequence[Query],
    hits: list[Hit],
    references: dict[int, np.ndarray | None],
    rotations: bool,
    thresholds: VerifyThresholds,
) -> list[tuple[Hit, Verification]]:
    kept = []
    for hit in hits:
        view = queries[hit.query].view
        transform = (hit.region or {}).get("transform") or None
        verdict: Verification | None
        if view is None:
            verdict = Verification("unverified", 0.0, 0, "", 0.0, 0.0, "the query's pixels were not kept")
        else:
            verdict = verify(
                view, references.get(hit.reference_id), transform, hit.tier != "features", thresholds, rotations
            )
        if verdict is not None:
            kept.append((hit, verdict))
    return kept


SIMILAR_SHOWN = 3  # similar compositions shown per file (closest first): information, not a flood


@dataclass(frozen=True)
class Found:
    """One match of one searched file: which file (its position in the list given), the hit, the
    reference as the index describes it (competitor, source, captured, rights) and its verification."""

    source: int
    hit: Hit
    reference: dict
    verification: Verification

    @property
    def blocking(self) -> bool:
        return self.verification.blocking


def find_lookalikes(
    store: ReferenceStore,
    sources: list[Path | bytes],
    thresholds: Thresholds | None = None,
    rotations: bool = False,
    search: Callable[[list[Query]], list[Hit]] | None = None,
) -> tuple[list[Found], list[str | None]]:
    """Prepare each file, search the index (here, or with `search`, e.g. on a Dask cluster) and
    describe every hit: the one search behind the render stage and `estampille lookalike check`.
    Every hit is verified on its pixels; a file's similar compositions are capped at SIMILAR_SHOWN.
    Returns the matches and, per file, why it could not be read (None when it could)."""
    queries, errors = hash_queries(sources)
    readable = [n for n, q in enumerate(queries) if q is not None]
    asked = [q for q in queries if q is not None]
    # Search workers get the hashes and keypoints, not the pixels: verification happens here.
    hits = (
        search([replace(q, view=None) for q in asked]) if search else search_store(store, asked, thresholds, rotations)
    )
    verified = verify_hits(store, asked, hits, rotations)
    described = store.describe({h.reference_id for h, _ in verified})
    found = [Found(readable[h.query], h, described[h.reference_id], v) for h, v in verified]
    similar: dict[int, int] = {}
    kept = []
    for match in sorted(found, key=lambda m: (m.source, not m.blocking, sum(m.hit.distances.values()))):
        if not match.blocking:
            similar[match.source] = similar.get(match.source, 0) + 1
            if similar[match.source] > SIMILAR_SHOWN:
                continue
        kept.append(match)
    return kept, errors
