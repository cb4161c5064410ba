"""Both tiers at a million references on one machine (issue 26 targets at 1M on 2 cores: one render
<= 0.5 s, a 400-render batch <= 3 min, peak resident memory of the search <= 6 GB), the shared
vocabulary against the shards' own IVF indexes, measured in the same run.

Starts from an index of real references (`bench/lookalike_false_flags.py --index DIR` builds one of
100,000; ingesting a million real ones takes ~4 h on 2 cores), and grows it tenfold in `--work`:
each extra shard is a real shard whose every keypoint descriptor has 8% of its bits flipped (the
flipped descriptors stay in their original's list), with its keypoints moved to random places (so
that, like a distinct picture, no geometry lines up with a copy of the original; the verification
thumbnails are shared), and whose hashes are random, as a distinct picture's are. Copies of a
reference still meet its nine siblings' votes: candidates cost more than among a million distinct
pictures (timings are upper bounds).
False flags are not measured here (lookalike_false_flags.py: real pictures only).

Three layouts of the same keypoints, all searched by `engine.search_store` + `verify_hits` (as
`lookalike check` does), memory-mapped:
- own IVF per shard (`own-ivf`, two sessions ago): each shard's lists trained on itself, NPROBE lists
  scanned per shard (`--layouts own-ivf vocabulary --sizes own-ivf:100k ...` to run it again);
- shared vocabulary, lists per shard (`vocabulary-per-shard`, before): `lookalike index --upgrade` files
  every shard on one vocabulary; a query's keypoints are assigned once, and every shard scans its
  part of the same PROBES lists;
- shared vocabulary, merged lists (`vocabulary`, now): the same lists merged by word across shards
  (merged_lists.py), each probed word's run scanned once for every shard.

    .venv/bin/python bench/lookalike_million.py --index /tmp/ff_index --pictures /tmp/pictures.txt --work /tmp/million
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIBLINGS = 9  # synthetic shards per real one: 100,000 real references -> 1,000,000
FLIP = 0.08
SINGLE = 21  # renders timed one at a time after the batch, of each kind (copies, unrelated)
LINKED = ("features_xy.npy", "features_size.npy", "verify.bin", "verify_offsets.npy")


_MASKS = np.packbits(np.random.default_rng(99).random((1 << 16, 64)) < FLIP, axis=1).view(np.uint64)[:, 0]


def _flip(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`array` (uint64, or uint8 rows of 8-byte multiples) with ~FLIP of its bits flipped: each 64-bit
    word XORed with one of 65,536 random masks of that density (fast enough for 256M descriptors)."""
    words = np.ascontiguousarray(array).view(np.uint64)
    flipped = words ^ _MASKS[rng.integers(0, len(_MASKS), words.shape)]
    return flipped.view(array.dtype).reshape(array.shape)


def _flipped_lists(index, rng: np.random.Generator):
    """A copy of a binary IVF whose every code has FLIP of its bits flipped, in the same list."""
    import faiss

    lists = index.invlists
    quantizer = faiss.IndexBinaryFlat(index.d)  # a copy of the shard's own (empty: filed on a vocabulary)
    if index.quantizer.ntotal:
        quantizer.add(index.quantizer.reconstruct_n(0, index.quantizer.ntotal))
    copy = faiss.IndexBinaryIVF(quantizer, index.d, index.nlist)
    copy.is_trained = True
    total = 0
    for n in range(lists.nlist):
        size = lists.list_size(n)
        if not size:
            continue
        codes = faiss.rev_swig_ptr(lists.get_codes(n), size * index.code_size).copy()
        ids = faiss.rev_swig_ptr(lists.get_ids(n), size).copy()
        flipped = np.ascontiguousarray(_flip(codes, rng))
        copy.invlists.add_entries(n, size, faiss.swig_ptr(ids), faiss.swig_ptr(flipped))
        total += size
    copy.ntotal = total
    return copy


def grow(source: Path, work: Path, layout: str) -> Path:
    """`work`/<layout>: the source index (shard files hard-linked, feature lists copied) plus SIBLINGS
    flipped siblings of every shard, catalogued."""
    import faiss

    from estampille.lookalike.store import ReferenceStore

    folder = work / layout
    if (folder / "grown").is_file():
        if not (folder / "grown").read_text():
            _rehash_siblings(folder, source)
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "shards").mkdir(parents=True)
    shutil.copy(source / "catalog.sqlite", folder / "catalog.sqlite")
    for shard in sorted((source / "shards").iterdir()):
        if not shard.name.isdigit():
            continue
        (folder / "shards" / shard.name).mkdir()
        for item in shard.iterdir():
            target = folder / "shards" / shard.name / item.name
            if item.name in ("features.fbin", "meta.json"):
                shutil.copy(item, target)  # rewritten by --upgrade
            else:
                os.link(item, target)
    if layout == "vocabulary":
        from estampille.cli import main as cli

        started = time.perf_counter()
        assert cli(["lookalike", "index", "--index", str(folder), "--upgrade"]) == 0
        print(
            f"  `lookalike index --upgrade` (vocabulary trained, 100,000 references filed): "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
    store = ReferenceStore(folder)
    real = store.shard_numbers()
    rows = store.db.execute(
        "SELECT id, source, competitor, sha256, shard, row FROM images WHERE removed = 0 ORDER BY id"
    ).fetchall()
    by_shard: dict[int, list] = {}
    for row in rows:
        by_shard.setdefault(row[4], []).append(row)
    next_id = max(r[0] for r in rows) + 1
    number = max(real) + 1
    vocabulary = store.vocabulary()
    for sibling in range(SIBLINGS):
        for original in real:
            rng = np.random.default_rng(1000 * sibling + original)
            src = folder / "shards" / f"{original:06d}"
            dst = folder / "shards" / f"{number:06d}"
            dst.mkdir()
            for name in LINKED:
                if (src / name).exists() and name != "features_xy.npy":
                    os.link(src / name, dst / name)
            # Keypoints at random places: a sibling's descriptors vote like a real picture's, but no
            # geometry lines up with a copy of its original (as for a million distinct pictures).
            xy = np.load(src / "features_xy.npy")
            size = np.load(src / "features_size.npy").astype(np.float32)[:, None, :]
            placed = (rng.random(xy.shape, dtype=np.float32) * size).astype(np.float16)
            np.save(dst / "features_xy.npy", np.where(np.isnan(xy), xy, placed))
            _sibling_hashes(src, dst, rng)
            count = len(np.load(src / "ids.npy", mmap_mode="r"))
            np.save(dst / "ids.npy", np.arange(next_id, next_id + count, dtype=np.int64))
            index = faiss.read_index_binary(str(src / "features.fbin"))
            faiss.write_index_binary(_flipped_lists(index, rng), str(dst / "features.fbin"))
            meta = json.loads((src / "meta.json").read_text())
            (dst / "meta.json").write_text(json.dumps(meta))
            store.db.execute("BEGIN")
            store.db.executemany(
                "INSERT INTO images (id, source, competitor, sha256, pipeline, shard, row, removed, added_at)"
                " VALUES (?, ?, 'synthetic', ?, ?, ?, ?, 0, '')",
                [
                    (next_id + r[5], f"{r[1]}~{sibling}", f"~{r[3]}", meta["pipeline"], number, r[5])
                    for r in by_shard[original]
                ],
            )
            store.db.execute("COMMIT")
            next_id += count
            number += 1
        print(f"  {layout}: sibling {sibling + 1} of {SIBLINGS} written", flush=True)
    assert vocabulary is None or layout == "vocabulary"
    store.close()
    (folder / "grown").write_text(json.dumps({"hashes": "random"}))
    return folder


def _sibling_hashes(src: Path, dst: Path, rng: np.random.Generator) -> None:
    """A sibling's hashes: unrelated to its original's (every bit random), as a distinct picture's
    are. (With 8% of their bits flipped, the first run's siblings were each a hash-tier candidate of
    every copy of their original: 35 candidates to verify per copy, where a million distinct pictures
    give about one.)"""
    for name in ("phash", "dhash", "colour", "windows", "pdq"):
        original = np.load(src / f"{name}.npy")
        np.save(dst / f"{name}.npy", rng.integers(0, 2**64, original.shape, dtype=np.uint64))


def _rehash_siblings(folder: Path, source: Path) -> None:
    """Give the siblings of an index grown by the first version of this bench random hashes."""
    real = sorted(int(p.name) for p in (source / "shards").iterdir() if p.name.isdigit())
    number = max(real) + 1
    for sibling in range(SIBLINGS):
        for original in real:
            rng = np.random.default_rng(7000 + 1000 * sibling + original)
            _sibling_hashes(folder / "shards" / f"{original:06d}", folder / "shards" / f"{number:06d}", rng)
            number += 1
    (folder / "grown").write_text(json.dumps({"hashes": "random"}))


def merged(folder: Path) -> None:
    """Merge the index's keypoint lists across shards (as ingest does after writing a shard), timed."""
    from estampille.lookalike.store import ReferenceStore

    store = ReferenceStore(folder)
    started = time.perf_counter()
    codes = store.merge_lists()
    if codes:
        print(f"  {folder.name}: {codes:,} keypoints merged in {time.perf_counter() - started:.0f} s", flush=True)
    store.close()


def _evict(folder: Path, part: str) -> None:
    """Drop the page cache of the keypoint lists under `folder`/`part` (posix_fadvise: no root needed)."""
    for path in (folder / part).rglob("*"):
        if path.is_file() and (path.name == "features.fbin" or part == "lists"):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _status(field: str) -> float:
    """MB of a /proc/self/status field (VmHWM: peak resident; RssAnon, RssFile: now)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(folder: Path, queries: list, copied: list[str | None], label: str, per_shard: bool = False) -> dict:
    """One render, then a batch, through search_store + verify_hits: run in a fresh process each.
    `per_shard`: every shard scans its own lists, as before the merge (the merged lists are ignored)."""
    from estampille.lookalike import vocabulary
    from estampille.lookalike.engine import search_store, verify_hits
    from estampille.lookalike.feature_index import NPROBE
    from estampille.lookalike.store import ReferenceStore

    if per_shard:
        ReferenceStore.merged_lists = lambda self: None  # type: ignore[method-assign]
    # Each row starts with the other layout's lists out of the page cache, as on a machine that only
    # searches this one: the two do not fit 24 GB together, and the kernel's LRU would otherwise keep
    # the pages of the row run first and evict the other's.
    _evict(folder, "lists" if per_shard else "shards")
    store = ReferenceStore(folder)
    search_store(store, queries[:1])  # opens every shard (memory maps) and warms the JIT

    def render(n: int) -> float:
        started = time.perf_counter()
        verify_hits(store, queries[n : n + 1], search_store(store, queries[n : n + 1]))
        return time.perf_counter() - started

    cold = render(1)  # lists this render probes may not be in the page cache yet
    # The batch's own peak: what single renders keep mapped (RESIDENT_BELOW) is released first, as a
    # batch does when it starts, then the peak is reset to the current resident size (clear_refs 5).
    merged = store.merged_lists()
    if merged is not None:
        merged[0].prepare(len(queries) * 10_000)
    Path("/proc/self/clear_refs").write_text("5")
    started = time.perf_counter()
    hits = search_store(store, queries)
    verified = verify_hits(store, queries, hits)
    batch = time.perf_counter() - started
    batch_peak = _status("VmHWM")  # before the single renders below, which keep the lists mapped whole
    # The same batch without the copies: what a brand's week of mostly original renders costs. Each copy
    # above is a crop or edit of a picture indexed in ~136 overlapping regions, so it brings ~60
    # candidates to fit and verify; an original render brings almost none.
    unrelated_queries = [q for q, c in zip(queries, copied, strict=True) if c is None]
    started = time.perf_counter()
    verify_hits(store, unrelated_queries, search_store(store, unrelated_queries))
    unrelated_batch = time.perf_counter() - started
    # After the batch, a warm index: 21 copies of different pictures (every ninth; the copies of one
    # picture come together) and 21 unrelated renders, each timed alone. Copies above meet their
    # original's nine flipped siblings (extra candidates to fit); an unrelated render meets none, as
    # among a million distinct pictures.
    copies = [render(n) for n in [n for n, c in enumerate(copied) if c is not None][1::9][:SINGLE]]
    unrelated = [render(n) for n in [n for n, c in enumerate(copied) if c is None][-SINGLE:]]
    blocking = [(h.query, h.reference_id) for h, v in verified if v.blocking]
    sources = store.describe({r for _, r in blocking})
    found = {q for q, r in blocking if copied[q] and sources[r]["source"].split("#")[0] == copied[q]}
    flagged = {q for q, _ in blocking if copied[q] is None}
    # What the index takes on disk as if every reference were distinct (hard-linked files counted each time).
    disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {
        "label": label,
        "references": store.count(),
        "one": float(np.median(copies)),
        "one_p90": float(np.percentile(copies, 90)),
        "one_unrelated": float(np.median(unrelated)),
        "one_unrelated_p90": float(np.percentile(unrelated, 90)),
        "cold": cold,
        "batch": batch,
        "unrelated_batch": unrelated_batch,
        "unrelated_queries": len(unrelated_queries),
        "queries": len(queries),
        "recall": len(found) / max(1, sum(1 for c in copied if c)),
        "unrelated_flagged": len(flagged),
        "probes": vocabulary.PROBES if store.vocabulary() else f"{NPROBE}/shard",
        "lists": "per shard" if per_shard or store.merged_lists() is None else "merged",
        "peak_rss_mb": _status("VmHWM"),
        "batch_peak_rss_mb": batch_peak,
        "anon_mb": _status("RssAnon"),
        "file_mb": _status("RssFile"),
        "disk_gb": disk / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True, help="an index of real references (100,000)")
    parser.add_argument("--pictures", type=Path, required=True, help="the list lookalike_false_flags.py used")
    parser.add_argument("--work", type=Path, required=True, help="where the grown indexes go (~25 GB)")
    parser.add_argument("--renders", type=int, default=400)
    parser.add_argument("--layouts", nargs="+", default=["vocabulary"])
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=["vocabulary-per-shard:100k", "vocabulary:100k", "vocabulary-per-shard:1M", "vocabulary:1M"],
    )
    parser.add_argument("--probes", type=int, nargs="*", default=[], help="also the vocabulary at 1M with these")
    parser.add_argument(
        "--measure", nargs=4, metavar=("FOLDER", "LABEL", "PROBES", "PER_SHARD"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    queries_file = args.work / "queries.pkl"
    import pickle

    if args.measure:
        from estampille.lookalike import vocabulary

        vocabulary.PROBES = int(args.measure[2]) or vocabulary.PROBES
        queries, copied = pickle.loads(queries_file.read_bytes())
        print(json.dumps(measure(Path(args.measure[0]), queries, copied, args.measure[1], args.measure[3] == "1")))
        return
    if not queries_file.is_file():
        queries_file.write_bytes(pickle.dumps(_queries(args)))
    runs = []
    for layout in args.layouts:
        started = time.perf_counter()
        folder = grow(args.index, args.work, layout)
        print(f"{layout}: grown in {time.perf_counter() - started:.0f} s", flush=True)
        real = args.work / f"{layout}-100k"
        if not real.exists():
            _first_shards(folder, real, args.index)
        if layout == "vocabulary":
            for where in (real, folder):
                merged(where)
        plan = []
        for size, where in (("100k", real), ("1M", folder)):
            count = "100,000" if size == "100k" else "1,000,000"
            plan += (
                [(where, f"{layout}-per-shard at {count}", 0, True)]
                if f"{layout}-per-shard:{size}" in args.sizes
                else []
            )
            plan += [(where, f"{layout} at {count}", 0, False)] if f"{layout}:{size}" in args.sizes else []
        if layout == "vocabulary":
            plan += [(folder, f"vocabulary at 1,000,000, {p} probes", p, False) for p in args.probes]
        for where, label, probes, per_shard in plan:
            command = [sys.executable, __file__, "--index", str(args.index), "--pictures", str(args.pictures)]
            command += ["--work", str(args.work), "--measure", str(where), label, str(probes), str(int(per_shard))]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
            r = runs[-1]
            print(
                f"  {label}: {r['one']:.2f} s one render, {r['batch']:.0f} s batch, recall {r['recall']:.3f}",
                flush=True,
            )
    _table(runs)


def _first_shards(grown: Path, target: Path, source: Path) -> None:
    """The grown index's real shards alone (its first 100,000 references), for the same layout."""
    target.mkdir()
    shutil.copy(grown / "catalog.sqlite", target / "catalog.sqlite")
    if (grown / "vocabulary.fbin").is_file():
        os.link(grown / "vocabulary.fbin", target / "vocabulary.fbin")
    real = {p.name for p in (source / "shards").iterdir() if p.name.isdigit()}
    (target / "shards").mkdir()
    for name in real:
        os.symlink(grown / "shards" / name, target / "shards" / name)
    db = sqlite3.connect(target / "catalog.sqlite")
    db.execute("DELETE FROM images WHERE competitor = 'synthetic'")
    db.commit()
    db.close()


def _queries(args) -> tuple[list, list[str | None]]:
    """`--renders` real queries: copies of every kind of 40 reference pictures (their whole frame is a
    reference of the index), and unrelated real pictures (as lookalike_false_flags.py makes them).
    Returns the queries and, for each, the picture it copies (None: unrelated)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from lookalike_false_flags import regions, split
    from PIL import Image

    from estampille.lookalike.engine import hash_queries
    from estampille.testing import benchset

    pictures = sorted(p for p in args.pictures.read_text().split("\n") if p.strip())
    query_pictures, reference_pictures = split(pictures)
    rng = np.random.default_rng(5)
    others = [Image.open(io.BytesIO(d)).convert("RGB") for p in query_pictures[:40] for d in regions(p, 1, 7)]
    datas, copied = [], []
    for path in reference_pictures[:40]:
        whole = regions(path, 1, 0)[0]
        original = benchset.Original(path, path, Image.open(io.BytesIO(whole)).convert("RGB"))
        for copy in benchset.real_copies_of(original, others, rng):
            datas.append(copy.data)
            copied.append(path)
    datas, copied = datas[: args.renders // 2], copied[: args.renders // 2]
    for path in query_pictures:
        found = regions(path, 4, 11)
        datas += found
        copied += [None] * len(found)
        if len(datas) >= 1.1 * args.renders:  # a few cannot be read
            break
    queries, _ = hash_queries(datas)
    kept = [n for n, q in enumerate(queries) if q is not None][: args.renders]
    return [queries[n] for n in kept], [copied[n] for n in kept]


def _with_p90(run: dict, key: str) -> str:
    """A median render time with its 90th percentile."""
    return f"{run[key]:.2f} ({run[key + '_p90']:.2f})"


def _per_400(run: dict) -> str:
    """The unrelated renders' batch, scaled to 400 renders (its cost grows with the renders)."""
    if "unrelated_batch" not in run:
        return "-"
    return f"{run['unrelated_batch'] * 400 / run['unrelated_queries']:.1f} ({run['unrelated_queries']})"


def _table(runs: list[dict]) -> None:
    print(
        f"\n{'layout at size':40} {'references':>10} {'lists':>9} {'probes':>7} {'cold render s':>13} {'copy render s (p90)':>19} {'unrelated s (p90)':>17} {'batch s':>8} "
        f"{'originals-only batch s':>22} {'renders':>7} {'recall':>6} {'unrelated flagged':>17} {'peak RSS MB':>11} {'batch peak MB':>13} {'anon MB':>8} "
        f"{'file MB':>8} {'disk GB':>8}"
    )
    for r in runs:
        print(
            f"{r['label']:40} {r['references']:>10,} {r.get('lists', ''):>9} {r['probes']:>7} {r.get('cold', 0):>13.2f} {_with_p90(r, 'one'):>19} {_with_p90(r, 'one_unrelated'):>17} {r['batch']:>8.1f} "
            f"{_per_400(r):>22} {r['queries']:>7} {r['recall']:>6.3f} {r['unrelated_flagged']:>17} {r['peak_rss_mb']:>11.0f} {r.get('batch_peak_rss_mb', 0):>13.0f} "
            f"{r['anon_mb']:>8.0f} {r['file_mb']:>8.0f} {r['disk_gb']:>8.1f}"
        )


if __name__ == "__main__":
    main()
