"""Speed and size of the two-tier lookalike engine on 2 cores: one render and a 400-render batch
against 100,000 references (both tiers), ingest of ~1024x768 JPEGs with the feature tier, bytes per
reference on disk, and the resident memory of the search.

The 100,000 references are made from the real photos' own keypoints (benchset.build_real), each
copy with 8% of its descriptor bits flipped and its positions jittered, and random hashes: the
index has the size, layout (2 shards of 50,000, IVF) and descriptor distribution of a real one
without decoding 100,000 files here. The queries are real copies (crops, screenshots, stories).

    .venv/bin/python bench/lookalike_features_speed.py [--references 100000] [--batch 400]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_references(count: int, rng: np.random.Generator):
    from estampille.lookalike import benchset
    from estampille.lookalike.features import Features, reference_features
    from estampille.lookalike.hashing import Hashes, WINDOWS

    originals, _, distractors = benchset.build_real(0)
    base = [reference_features(benchset.encode(r.image)) for r in originals + distractors]
    for n in range(count):
        f = base[n % len(base)]
        flips = rng.random((len(f), 256)) < 0.08
        bits = np.unpackbits(f.descriptors, axis=1) ^ flips
        yield (Hashes(*map(int, rng.integers(0, 2**63, 3)), tuple(int(v) for v in rng.integers(0, 2**63, 4)),
                      tuple(int(v) for v in rng.integers(0, 2**63, len(WINDOWS)))),
               Features((f.xy + rng.normal(0, 1.5, f.xy.shape)).astype(np.float32), np.packbits(bits, axis=1), f.size))


def build_index(folder: Path, count: int) -> float:
    from estampille.lookalike.ingest import SHARD_SIZE
    from estampille.lookalike.store import Entry, ReferenceStore

    store = ReferenceStore(folder)
    rng = np.random.default_rng(0)
    entries, hashes, features = [], [], []
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
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / count


def ingest_rate(images: int) -> float:
    """Images per second on one core, all hashes and the feature tier, 1024x768 JPEGs."""
    from PIL import Image

    from estampille.lookalike import benchset
    from estampille.lookalike.ingest import ingest
    from estampille.lookalike.store import ReferenceStore

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
    args = parser.parse_args()
    from estampille.lookalike import benchset
    from estampille.lookalike.engine import hash_queries, search_store
    from estampille.lookalike.store import ReferenceStore

    rate = ingest_rate(args.ingest_images)
    _, copies, _ = benchset.build_real(1)
    hard = [c.data for c in copies if c.family in ("screenshot/story", "crop 70-80%", "square/4:5 reframe")]
    batch = (hard * (args.batch // len(hard) + 1))[:args.batch]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        per_reference = build_index(Path(tmp) / "index", args.references)
        built = time.perf_counter() - started
        store = ReferenceStore(Path(tmp) / "index")
        warm, _ = hash_queries(batch[:2])
        search_store(store, warm)                          # faiss indexes read, numba compiled
        started = time.perf_counter()
        one, _ = hash_queries(batch[2:3])
        search_store(store, one)
        single = time.perf_counter() - started
        started = time.perf_counter()
        queries, _ = hash_queries(batch)
        prepared = time.perf_counter() - started
        hits = search_store(store, queries)
        whole = time.perf_counter() - started
        store.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{args.references:,} references (index built in {built:.0f} s), queries: real crops, reframes, "
          f"screenshots and stories; 2 cores")
    print(f"{'measure':46} {'value':>12} {'target':>12}")
    print(f"{'one render, both tiers (s)':46} {single:12.3f} {'<= 0.5':>12}")
    print(f"{f'{args.batch}-render batch, both tiers (s)':46} {whole:12.1f} {'<= 180':>12}")
    print(f"{'  of which preparing the queries (s)':46} {prepared:12.1f} {'':>12}")
    print(f"{'ingest, 1024x768 JPEG, one core (images/s)':46} {rate:12.1f} {'>= 40':>12}")
    print(f"{'index on disk per reference (KB)':46} {per_reference / 1024:12.1f} {'<= 16':>12}")
    print(f"{'peak resident memory of this process (MB)':46} {rss:12.0f} {'stated':>12}")
    print(f"matches in the batch: {len(hits)}")


if __name__ == "__main__":
    main()
