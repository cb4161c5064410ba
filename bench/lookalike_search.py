"""Search speed and memory of the lookalike index at scale.

    .venv/bin/python bench/lookalike_search.py [--corpus 1000000] [--queries 1000] [--big 100000000]

1. An index of --corpus images: 300 real ones (photos the project ships, hashed by the pipeline)
   and synthetic ones (random pHash/PDQ/dHash/colour; each window a pHash with as many flipped
   bits as real windows have, drawn from the real images). --queries real copies of the real
   images (resized, JPEG, mirrored, cropped...) are searched with the hash rule (pHash and PDQ), in one batch,
   on 2 cores. Baselines in the same run: imagehash's `ImageHash` objects compared one by one
   (measured on 100,000 and scaled: they do not fit 1M in memory comfortably) and one numpy pass
   of one kind per query.
2. One 64-bit kind at --big hashes, memory-mapped from disk: the time per query, beside the floor
   (one numpy pass over the same memory-mapped array).
3. Memory: a fresh process opens the index and runs the batch; its peak RSS is reported with the
   index's size on disk.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def real_hashes(queries: int):
    from estampille.lookalike.hashing import decode, hash_image, hash_query
    from estampille.testing import benchset

    originals = benchset.originals(REPO, scenes=0, seed=3)[:300]
    rng = np.random.default_rng(4)
    corpus = [hash_image(decode(benchset.encode(o.image))) for o in originals]
    copies = []
    while len(copies) < queries:
        for o in originals:
            pick = int(rng.integers(0, 20))
            copy = next(itertools.islice(benchset.copies_of(o, rng), pick, None))
            copies.append(hash_query(decode(copy.data)))
            if len(copies) == queries:
                break
    return corpus, copies


def build_index(folder: Path, corpus, size: int) -> None:
    from estampille.lookalike.hashing import WINDOWS
    from estampille.lookalike.store import Entry, ReferenceStore

    rng = np.random.default_rng(5)

    def u(*shape):
        return rng.integers(0, 2**63, shape, dtype=np.int64).view(np.uint64) * np.uint64(2) + rng.integers(
            0, 2, shape
        ).astype(np.uint64)

    flips_seen = np.array([bin(h.phash ^ w).count("1") for h in corpus for w in h.windows])
    n = size - len(corpus)
    phash = u(n)
    windows = np.empty((len(WINDOWS), n), dtype=np.uint64)
    for j in range(len(WINDOWS)):
        flips = rng.choice(flips_seen, n)
        mask = np.zeros(n, dtype=np.uint64)
        for bit_round in range(int(flips.max())):
            take = flips > bit_round
            mask[take] |= np.uint64(1) << rng.integers(0, 64, int(take.sum())).astype(np.uint64)
        windows[j] = phash ^ mask
    arrays = {"phash": phash, "dhash": u(n), "colour": u(n) >> np.uint64(22), "windows": windows, "pdq": u(4, n)}
    real = {
        "phash": np.array([h.phash for h in corpus], dtype=np.uint64),
        "dhash": np.array([h.dhash for h in corpus], dtype=np.uint64),
        "colour": np.array([h.colour for h in corpus], dtype=np.uint64),
        "windows": np.array([h.windows for h in corpus], dtype=np.uint64).T,
        "pdq": np.array([h.pdq for h in corpus], dtype=np.uint64).T,
    }
    merged = {k: np.ascontiguousarray(np.concatenate([real[k], arrays[k]], axis=-1)) for k in arrays}
    store = ReferenceStore(folder)
    entries = [Entry(f"real-{i}", "real", "0" * 64) for i in range(len(corpus))] + [
        Entry(f"synthetic-{i}", "synthetic", "0" * 64) for i in range(n)
    ]
    store.add_arrays(entries, merged)
    store.close()


def search_once(folder: str, queries_file: str) -> None:
    """Child process: open the index, run the batch, print timing and peak RSS as JSON."""
    import pickle

    from estampille.lookalike.engine import search_store
    from estampille.lookalike.store import ReferenceStore

    def rss_mb() -> float:
        status = Path("/proc/self/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024

    queries = pickle.loads(Path(queries_file).read_bytes())
    from estampille.lookalike.scan import scan as compile_scan  # noqa: F401  (imports, numba cache loaded)

    before = rss_mb()
    store = ReferenceStore(folder)
    search_store(store, queries[:2])  # compiled code from numba's cache, pages mapped
    times = []
    for _ in range(3):
        started = time.perf_counter()
        hits = search_store(store, queries)
        times.append(time.perf_counter() - started)
    print(
        json.dumps(
            {
                "seconds": statistics.median(times),
                "hits": len(hits),
                "queries_with_hits": len({h.query for h in hits}),
                "rss_before_mb": before,
                "rss_after_mb": rss_mb(),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--big", type=int, default=100_000_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return search_once(*args.child)
    import pickle

    import imagehash

    from estampille.lookalike.scan import range_search

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        corpus, queries = real_hashes(args.queries)
        build_index(Path(tmp) / "index", corpus, args.corpus)
        print(f"index of {args.corpus:,} images built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        (Path(tmp) / "queries.pkl").write_bytes(pickle.dumps(queries))
        child = subprocess.run(
            [sys.executable, __file__, "--child", f"{tmp}/index", f"{tmp}/queries.pkl"],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        disk = sum(p.stat().st_size for p in (Path(tmp) / "index").rglob("*.npy")) / 2**20

        # Baselines: imagehash objects one by one, and one numpy pass of one kind.
        sample = 100_000
        phash = np.load(next((Path(tmp) / "index" / "shards").iterdir()) / "phash.npy", mmap_mode="r")
        objects = [imagehash.hex_to_hash(f"{int(v):016x}") for v in phash[:sample]]
        probe = imagehash.hex_to_hash(f"{queries[0].hashes.phash:016x}")
        started = time.perf_counter()
        min(probe - h for h in objects)
        python_per_query = (time.perf_counter() - started) * args.corpus / len(objects)
        del objects
        flat = np.ascontiguousarray(phash)
        started = time.perf_counter()
        for q in queries[:20]:
            np.flatnonzero(np.bitwise_count(flat ^ np.uint64(q.hashes.phash)) <= 10)
        numpy_per_query = (time.perf_counter() - started) / 20

        per_query = result["seconds"] / args.queries
        rows += [
            (
                f"imagehash objects, pHash only, 1 query (from {min(sample, args.corpus):,})",
                python_per_query * 1000,
                None,
            ),
            ("numpy pass, pHash only, 1 query", numpy_per_query * 1000, python_per_query / numpy_per_query),
            (f"estampille, hash rule, {args.queries} queries batched: total", result["seconds"] * 1000, None),
            ("  same, per query", per_query * 1000, python_per_query / per_query),
        ]

        # One kind at --big hashes, memory-mapped.
        big = np.lib.format.open_memmap(Path(tmp) / "big.npy", mode="w+", dtype=np.uint64, shape=(args.big,))
        rng = np.random.default_rng(9)
        for start in range(0, args.big, 10_000_000):
            stop = min(args.big, start + 10_000_000)
            big[start:stop] = rng.integers(0, 2**63, stop - start, dtype=np.int64).view(np.uint64)
        big.flush()
        del big
        mapped = np.load(Path(tmp) / "big.npy", mmap_mode="r")
        probes = np.array([q.hashes.phash for q in queries[:8]], dtype=np.uint64)
        range_search(probes[:1], mapped[:1000], 10)
        np.bitwise_count(mapped ^ probes[0])  # pages in the cache, as a warm server has them
        started = time.perf_counter()
        np.flatnonzero(np.bitwise_count(mapped ^ probes[0]) <= 10)
        floor = time.perf_counter() - started
        started = time.perf_counter()
        range_search(probes[:1], mapped, 10)
        single = time.perf_counter() - started
        started = time.perf_counter()
        range_search(probes, mapped, 10)
        batched = (time.perf_counter() - started) / len(probes)
        rows += [
            (f"{args.big / 1e6:.0f}M pHashes mmap: numpy pass, 1 query", floor * 1000, None),
            ("  estampille, 1 query", single * 1000, floor / single),
            ("  estampille, 8 queries batched, per query", batched * 1000, floor / batched),
        ]
    print(
        f"{args.corpus:,} images indexed ({disk:.0f} MB of shards on disk), {args.queries} queries "
        f"({result['queries_with_hits']} found a match, {result['hits']} matches); 2 cores\n"
    )
    print(f"{'what':56} {'ms':>10} {'speed-up':>9}")
    for name, ms, ratio in rows:
        print(f"{name:56} {ms:10.1f} {'' if ratio is None else f'{ratio:9.0f}x'}")
    print(
        f"\nmemory of the process that opened the index and ran the batch: {result['rss_before_mb']:.0f} MB before "
        f"opening it (Python, numpy, numba, Pillow), {result['rss_after_mb']:.0f} MB after: the index took "
        f"{result['rss_after_mb'] - result['rss_before_mb']:.0f} MB; peak {result['peak_rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
