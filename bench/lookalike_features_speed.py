"""Speed, size and recall at scale of the two-tier lookalike engine on 2 cores: one render and a
400-render batch against 100,000 references (both tiers), ingest of ~1024x768 JPEGs with the
feature tier, bytes per reference on disk, the resident memory of the search, and the recall of
the same batch against the 100,000 (IVF feature index) beside a small exact index.

The index holds the real-photo set's originals (benchset.build_real, seed 1: real hashes and
keypoints) among 100,000 references made from other real cuts' keypoints (seed 0), each copy with
8% of its descriptor bits flipped and its positions jittered, and random hashes: the index has the
size, layout (2 shards of 50,000, IVF) and descriptor distribution of a real one without decoding
100,000 files here. The queries are real copies of the originals, every kind of the real-photo set.

    .venv/bin/python bench/lookalike_features_speed.py [--references 100000] [--batch 400]
        [--index DIR]            keep the built index there and reuse it (building takes ~8 min)
        [--nprobe N --query-keypoints N --threads N]   try other search settings
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def synthetic_references(count: int, rng: np.random.Generator):
    from estampille.lookalike.features import Features, reference_features
    from estampille.lookalike.hashing import WINDOWS, Hashes
    from estampille.testing import benchset

    originals, _, distractors = benchset.build_real(0)
    base = [reference_features(benchset.encode(r.image)) for r in originals + distractors]
    for n in range(count):
        f = base[n % len(base)]
        flips = rng.random((len(f), 256)) < 0.08
        bits = np.unpackbits(f.descriptors, axis=1) ^ flips
        yield (
            Hashes(
                *map(int, rng.integers(0, 2**63, 3)),
                tuple(int(v) for v in rng.integers(0, 2**63, 4)),
                tuple(int(v) for v in rng.integers(0, 2**63, len(WINDOWS))),
            ),
            Features((f.xy + rng.normal(0, 1.5, f.xy.shape)).astype(np.float32), np.packbits(bits, axis=1), f.size),
        )


def real_references(originals):
    from estampille.lookalike.features import reference_features
    from estampille.lookalike.hashing import hash_file
    from estampille.lookalike.store import Entry
    from estampille.testing import benchset

    encoded = [benchset.encode(o.image) for o in originals]
    return (
        [Entry(f"original:{o.name}", "bench", o.name) for o in originals],
        [hash_file(data) for data in encoded],
        [reference_features(data) for data in encoded],
    )


def build_index(folder: Path, count: int, originals) -> float:
    """The originals first (in the first, IVF-indexed shard), then `count` synthetic references."""
    from estampille.lookalike.ingest import SHARD_SIZE
    from estampille.lookalike.store import Entry, ReferenceStore

    done = folder / "bench-complete.json"
    if done.is_file() and json.loads(done.read_text())["references"] == count:
        return json.loads(done.read_text())["bytes_per_reference"]
    store = ReferenceStore(folder)
    entries, hashes, features = real_references(originals)
    rng = np.random.default_rng(0)
    for n, (h, f) in enumerate(synthetic_references(count, rng)):
        entries.append(Entry(f"synthetic-{n}", "bench", str(n)))
        hashes.append(h)
        features.append(f)
        if len(entries) == SHARD_SIZE:
            store.add(entries, hashes, features)
            entries, hashes, features = [], [], []
    if entries:
        store.add(entries, hashes, features)
    store.close()
    per_reference = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / (count + len(originals))
    done.write_text(json.dumps({"references": count, "bytes_per_reference": per_reference}))
    return per_reference


def small_index(folder: Path, originals, distractors) -> None:
    """The real-photo bench's index: the originals and the unrelated cuts, exact (flat) feature index."""
    from estampille.lookalike.features import reference_features
    from estampille.lookalike.hashing import hash_file
    from estampille.lookalike.store import ReferenceStore
    from estampille.testing import benchset

    entries, hashes, features = real_references(originals)
    encoded = [benchset.encode(d.image) for d in distractors]
    from estampille.lookalike.store import Entry

    entries += [Entry(f"distractor:{d.name}", "bench", d.name) for d in distractors]
    store = ReferenceStore(folder)
    store.add(entries, hashes + [hash_file(e) for e in encoded], features + [reference_features(e) for e in encoded])
    store.close()


def found_originals(store, hits, copies) -> list[bool]:
    """Whether each copy's own original is among its hits."""
    names = {i: d["source"] for i, d in store.describe({h.reference_id for h in hits}).items()}
    found = {(h.query, names.get(h.reference_id)) for h in hits}
    return [(n, f"original:{c.original}") in found for n, c in enumerate(copies)]


def ingest_rate(images: int) -> float:
    """Images per second on one core, all hashes and the feature tier, 1024x768 JPEGs."""
    from PIL import Image

    from estampille.lookalike.ingest import ingest
    from estampille.lookalike.store import ReferenceStore
    from estampille.testing import benchset

    photos = benchset.real_photos()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "jpegs"
        folder.mkdir()
        for n in range(images):
            name, photo = photos[n % len(photos)]
            photo.resize((1024, 768), Image.Resampling.BICUBIC).rotate(n % 7).save(folder / f"{n:04d}.jpg", quality=88)
        store = ReferenceStore(Path(tmp) / "index")
        started = time.perf_counter()
        ingest(store, [folder], "bench", workers=1)
        seconds = time.perf_counter() - started
        store.close()
    return images / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--references", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=400)
    parser.add_argument("--ingest-images", type=int, default=200)
    parser.add_argument("--index", type=Path, help="build the index here once and reuse it")
    parser.add_argument("--nprobe", type=int)
    parser.add_argument("--query-keypoints", type=int)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    from estampille.lookalike import feature_index, features
    from estampille.lookalike.engine import hash_queries, search_store
    from estampille.lookalike.store import ReferenceStore
    from estampille.testing import benchset

    if args.nprobe:
        feature_index.NPROBE = args.nprobe
    if args.query_keypoints:
        features.QUERY_KEYPOINTS = args.query_keypoints
    if args.threads:
        feature_index.set_search_threads(args.threads)
    rate = ingest_rate(args.ingest_images) if args.ingest_images else float("nan")
    originals, copies, distractors = benchset.build_real(1)
    picked = np.random.default_rng(1).permutation(len(copies))[: args.batch]
    batch = [copies[n] for n in picked]
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.index or Path(tmp) / "index"
        started = time.perf_counter()
        per_reference = build_index(folder, args.references, originals)
        built = time.perf_counter() - started
        store = ReferenceStore(folder)
        warm, _ = hash_queries([c.data for c in batch[:2]])
        search_store(store, warm)  # faiss indexes read, numba compiled
        started = time.perf_counter()
        one, _ = hash_queries([batch[2].data])
        search_store(store, one)
        single = time.perf_counter() - started
        started = time.perf_counter()
        queries, _ = hash_queries([c.data for c in batch])
        prepared = time.perf_counter() - started
        hits = search_store(store, queries)
        whole = time.perf_counter() - started
        at_scale = found_originals(store, hits, batch)
        store.close()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        small = ReferenceStore(Path(tmp) / "small")
        small_index(Path(tmp) / "small", originals, distractors)
        small = ReferenceStore(Path(tmp) / "small")
        exact = found_originals(small, search_store(small, queries), batch)
        small.close()
    print(
        f"\n{args.references:,} references + {len(originals)} real originals (index ready in {built:.0f} s); "
        f"{len(batch)} real copies of every kind; nprobe {feature_index.NPROBE}, "
        f"{features.QUERY_KEYPOINTS} query keypoints, {feature_index.search_threads()} search threads"
    )
    print(f"{'measure':46} {'value':>12} {'target':>12}")
    print(f"{'one render, both tiers (s)':46} {single:12.3f} {'<= 0.5':>12}")
    print(f"{f'{args.batch}-render batch, both tiers (s)':46} {whole:12.1f} {'<= 180':>12}")
    print(f"{'  of which preparing the queries (s)':46} {prepared:12.1f} {'':>12}")
    print(f"{'ingest, 1024x768 JPEG, one core (images/s)':46} {rate:12.1f} {'>= 40':>12}")
    print(f"{'index on disk per reference (KB)':46} {per_reference / 1024:12.1f} {'<= 16':>12}")
    print(f"{'peak resident memory of this process (MB)':46} {rss:12.0f} {'stated':>12}")
    by_family = defaultdict(lambda: [0, 0, 0])
    for copy, big, little in zip(batch, at_scale, exact, strict=True):
        row = by_family[copy.family]
        row[0] += 1
        row[1] += little
        row[2] += big
    print(f"\n{'recall of the batch by kind':24} {'copies':>6} {'small exact index':>18} {'100k, IVF':>10}")
    for family in benchset.REAL_FAMILIES:
        n, little, big = by_family[family]
        if n:
            print(f"{family:24} {n:6d} {little / n:18.3f} {big / n:10.3f}")
    print(f"{'all':24} {len(batch):6d} {sum(exact) / len(batch):18.3f} {sum(at_scale) / len(batch):10.3f}")


if __name__ == "__main__":
    main()
