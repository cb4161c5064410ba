"""False flags per render, the figure a reviewer meets (issue 26), beside recall, at growing index sizes.

A render is compared with every reference, so the false flags it gets are the per-pair rate times the
index size. This benchmark builds one index of real pictures and searches it nested: the first
1,000 references, the first 10,000, ... (`--sizes`), with
- unrelated real queries: pictures (and regions of them) from packages none of the references come
  from (bench/real_pictures.sh lists them; a folder's files all go to one side, so the two sides
  share no picture), and scikit-image's photographs;
- copies of references in the first 1,000 (every kind of benchset.real_copies_of: light edits,
  mirror/rotation, crops, reframes, screenshots and stories, imitations, collage tiles), for recall.

References are distinct regions of real pictures: each picture gives its whole frame and crops at
random places and scales (30-90% of each side), resized to 640 px, as many as needed.

Printed per size: candidates before verification and blocking flags after it, per render; recall by
kind before and after; and the per-pair rates of imagehash-style pHash <= 10 and PDQ <= 31 on the
same pairs. For sizes beyond what was indexed, flags per render are the measured per-pair rate times
the size, with the 95% upper bound (3 / pairs when none was seen).

    PYTHON=.venv/bin/python bash bench/real_pictures.sh > /tmp/pictures.txt
    .venv/bin/python bench/lookalike_false_flags.py --pictures /tmp/pictures.txt --sizes 1000 10000
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
import zlib
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 640


def _load(path: str) -> Image.Image | None:
    try:
        image = Image.open(path)
        image.draft("RGB", (1600, 1600))
        return image.convert("RGB")
    except (OSError, ValueError):
        return None


def _fit(image: Image.Image, side: int = SIDE) -> Image.Image:
    scale = side / max(image.size)
    return (
        image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BICUBIC
        )
        if scale < 1
        else image
    )


def _encode(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def regions(path: str, count: int, seed: int) -> list[bytes]:
    """The whole picture and count - 1 crops of it (30-90% of each side), each as a JPEG of <= 640 px."""
    image = _load(path)
    if image is None:
        return []
    rng = np.random.default_rng(zlib.crc32(path.encode()) + seed)
    found = [_encode(_fit(image))]
    for _ in range(count - 1):
        sx, sy = rng.uniform(0.3, 0.9, 2)
        w, h = max(32, int(image.width * sx)), max(32, int(image.height * sy))
        x, y = int(rng.integers(0, image.width - w + 1)), int(rng.integers(0, image.height - h + 1))
        found.append(_encode(_fit(image.crop((x, y, x + w, y + h)))))
    return found


def _reference(data: bytes):
    from estampille.lookalike.features import reference_features
    from estampille.lookalike.hashing import hash_file

    return hash_file(data), reference_features(data)


def split(pictures: list[str]) -> tuple[list[str], list[str]]:
    """(query pictures, reference pictures), a quarter to the queries, so that no picture is on both
    sides: a small folder (a photo album, a game's few paintings: where variants of one picture sit
    together) goes whole to one side; the pictures of a large folder (the deduplicated astrophotographs)
    go one by one."""
    per_folder: dict[Path, int] = defaultdict(int)
    for path in pictures:
        per_folder[Path(path).parent] += 1
    queries, references = [], []
    for path in pictures:
        unit = str(Path(path).parent) if per_folder[Path(path).parent] <= 100 else path
        if "skycultures" in path:
            # Constellation drawings are redrawn from one another across cultures (one bear in the Chinese
            # and the Mongolian sky, one fish's scales in two al-Sufi figures): a first run counted those
            # real copies as false flags. They all stay on the reference side.
            references.append(path)
            continue
        (queries if zlib.crc32(unit.encode()) % 4 == 0 else references).append(path)
    return queries, references


def build(store, reference_pictures: list[str], sizes: list[int], seed: int, per_picture: int, made: int = 0) -> None:
    """Index references up to max(sizes), one shard per size step, from reference number `made` on
    (an index kept with --index grows to a larger size without redoing the first ones)."""
    from estampille.lookalike.store import Entry

    bounds = [b for b in sorted(set(sizes)) if b > made]
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        start = made
        for bound in bounds:
            entries, hashes, features = [], [], []
            while made < bound:
                path = reference_pictures[(made // per_picture) % len(reference_pictures)]
                offset = made % per_picture  # a size step can end in the middle of a picture's regions
                # Each pass over the pictures takes other crops of them; only the first takes the whole frame.
                cycle = made // (per_picture * len(reference_pictures))
                datas = regions(path, per_picture + (cycle > 0), seed + cycle)[(cycle > 0) :]
                datas = datas[offset : offset + bound - made]
                for n, (h, f) in enumerate(pool.map(_reference, datas, chunksize=16)):
                    entries.append(Entry(f"{path}#{made + n}", "bench", str(made + n)))
                    hashes.append(h)
                    features.append(f)
                made += len(datas) if datas else per_picture - offset
                # One shard at most every 50,000 references (the ingest's own shard size).
                if len(entries) >= 50_000 or made >= bound:
                    store.add(entries, hashes, features)
                    entries, hashes, features = [], [], []
            print(f"  indexed {start:,}..{made:,}", flush=True)
            start = made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pictures", type=Path, required=True, help="file listing real pictures, one path a line")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--unrelated", type=int, default=300, help="unrelated query images")
    parser.add_argument("--originals", type=int, default=24, help="references whose copies are queried")
    parser.add_argument("--extrapolate", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index", type=Path, help="keep the index here (reused when it exists)")
    parser.add_argument("--evidence", type=Path, help="write each false flag's side-by-side here (and list them)")
    parser.add_argument(
        "--per-picture", type=int, help="regions per reference picture (default: enough for the largest size)"
    )
    args = parser.parse_args()

    from estampille.lookalike.engine import hash_queries, search_store, verify_hits
    from estampille.lookalike.store import ReferenceStore
    from estampille.testing import benchset

    pictures = sorted(p for p in args.pictures.read_text().split("\n") if p.strip())
    query_pictures, reference_pictures = split(pictures)
    rng = np.random.default_rng(args.seed)
    folder = args.index or Path(tempfile.mkdtemp(prefix="false-flags-"))
    store = ReferenceStore(folder)
    started = time.perf_counter()
    # Regions per picture: fixed by --per-picture, so that an index kept with --index can grow.
    per_picture = args.per_picture or max(1, -(-max(args.sizes) // len(reference_pictures)))
    if store.count() < max(args.sizes):
        build(store, reference_pictures, args.sizes, args.seed, per_picture, store.count())
    # The first 1,000 references again (regions() is deterministic), for the copies.
    first: list[bytes] = []
    for path in reference_pictures:
        first += regions(path, per_picture, args.seed)
        if len(first) >= 1000:
            break
    first = first[:1000]
    ingest_s = time.perf_counter() - started
    from estampille.lookalike.engine import verify_thresholds

    print(f"verification thresholds: {verify_thresholds()}")
    print(
        f"index: {store.count():,} references from {len(reference_pictures)} pictures "
        f"({ingest_s:.0f} s to build); {len(query_pictures)} query pictures",
        flush=True,
    )

    # Unrelated queries: whole query pictures and regions of them, plus scikit-image's photographs.
    unrelated: list[bytes] = []
    labels: list[str] = []
    per = max(1, -(-args.unrelated // max(1, len(query_pictures))))
    for path in query_pictures:
        found = regions(path, per, args.seed + 7)
        unrelated += found
        labels += [f"{path}#{k}" for k in range(len(found))]
    order = rng.permutation(len(unrelated))[: args.unrelated]
    unrelated, labels = [unrelated[i] for i in order], [labels[i] for i in order]
    for name, image in benchset.real_photos():
        unrelated.append(_encode(image))
        labels.append(f"skimage:{name}")
    # Copies of references in the first 1,000.
    picks = rng.choice(min(1000, len(first)), size=min(args.originals, len(first)), replace=False)
    originals = [
        benchset.Original(f"ref{int(i)}", f"ref{int(i)}", Image.open(io.BytesIO(first[int(i)])).convert("RGB"))
        for i in picks
    ]
    others = [Image.open(io.BytesIO(d)).convert("RGB") for d in unrelated[:40]]
    copy_rng = np.random.default_rng(args.seed + 1)
    copies = [(int(o.name[3:]), c) for o in originals for c in benchset.real_copies_of(o, others, copy_rng)]
    datas = unrelated + [c.data for _, c in copies]
    started = time.perf_counter()
    queries, errors = hash_queries(datas)
    prepare_s = time.perf_counter() - started
    keep = [n for n, q in enumerate(queries) if q is not None]
    queries = [queries[n] for n in keep]
    kinds = ["unrelated" if n < len(unrelated) else copies[n - len(unrelated)][1].family for n in keep]
    target = {n: (copies[k - len(unrelated)][0] if k >= len(unrelated) else None) for n, k in enumerate(keep)}
    n_unrelated = kinds.count("unrelated")
    ids = {row[0]: row[1] for row in store.db.execute("SELECT id, sha256 FROM images")}  # sha256 holds the ref number

    shard_sizes = []
    for number in store.shard_numbers():
        shard_sizes.append((number, len(store.load_shard(number))))
    print(
        f"\n{n_unrelated} unrelated real queries, {len(copies)} copies of {len(originals)} references; "
        f"query preparation {1000 * prepare_s / len(datas):.0f} ms each"
    )
    header = (
        f"{'references':>10} {'pairs':>11} {'candidates/render':>17} {'flags/render':>12} "
        f"{'similar/render':>14} {'flag rate/pair':>14} {'pHash<=10 /render':>17} {'PDQ<=31 /render':>15} "
        f"{'s/render':>8}"
    )
    table, recall_rows = [], {}
    for size in sorted(set(args.sizes)):
        chosen, count = [], 0
        for number, n in shard_sizes:
            if count >= size:
                break
            chosen.append(number)
            count += n
        started = time.perf_counter()
        hits = search_store(store, queries, shards=chosen)
        verified = verify_hits(store, queries, hits)
        seconds = time.perf_counter() - started
        candidates = sum(1 for h in hits if kinds[h.query] == "unrelated")
        if args.evidence:
            from estampille.lookalike.evidence import side_by_side

            described = store.describe({h.reference_id for h, _ in verified})
            for h, v in verified:
                if kinds[h.query] == "unrelated" and v.blocking:
                    source = described[h.reference_id]["source"]
                    print(f"  FALSE FLAG at {count:,}: {labels[keep[h.query]]} ~ {source}: {v.as_dict()}")
                    picture, number = source.rsplit("#", 1)
                    side_by_side(
                        Image.open(io.BytesIO(datas[keep[h.query]])),
                        Image.open(picture),
                        f"{v.grade} {v.agreement:.2f} {v.placement}",
                        args.evidence / f"{count}-{h.query}-{number}.png",
                        h.region,
                    )
        flags = sum(1 for h, v in verified if kinds[h.query] == "unrelated" and v.blocking)
        similar = sum(1 for h, v in verified if kinds[h.query] == "unrelated" and not v.blocking)
        # Baselines on the same pairs: pHash (ours is imagehash's algorithm) <= 10, PDQ <= 31.
        base_phash = base_pdq = 0
        unrelated_queries = [q for q, k in zip(queries, kinds, strict=True) if k == "unrelated"]
        q_ph = np.array([q.hashes.hashes.phash for q in unrelated_queries], dtype=np.uint64)
        q_pdq = np.array([q.hashes.hashes.pdq for q in unrelated_queries], dtype=np.uint64)
        for number in chosen:
            shard = store.load_shard(number)
            ph = np.asarray(shard.phash)
            pdq = np.asarray(shard.pdq)
            d = (
                np.unpackbits((q_ph[:, None] ^ ph[None, :]).view(np.uint8), axis=-1)
                .reshape(len(q_ph), len(ph), -1)
                .sum(-1)
            )
            base_phash += int((d <= 10).sum())
            x = q_pdq[:, :, None] ^ pdq[None, :, :]  # (Q, 4, N)
            dp = np.unpackbits(x.view(np.uint8).reshape(len(q_pdq), 4, len(ph), 8), axis=-1).sum(axis=(1, 3))
            base_pdq += int((dp <= 31).sum())
        pairs = n_unrelated * count
        table.append(
            (
                count,
                pairs,
                candidates / n_unrelated,
                flags / n_unrelated,
                similar / n_unrelated,
                flags / pairs,
                base_phash / n_unrelated,
                base_pdq / n_unrelated,
                seconds / len(queries),
            )
        )
        found_before, found_after = defaultdict(set), defaultdict(set)
        for h in hits:
            if target[h.query] == int(ids[h.reference_id]):
                found_before[kinds[h.query]].add(h.query)
        for h, v in verified:
            if target[h.query] == int(ids[h.reference_id]) and v.blocking:
                found_after[kinds[h.query]].add(h.query)
        recall_rows[count] = (found_before, found_after)
    print(header)
    for row in table:
        print(
            f"{row[0]:>10,} {row[1]:>11,} {row[2]:>17.3f} {row[3]:>12.4f} {row[4]:>14.3f} {row[5]:>14.2e} "
            f"{row[6]:>17.3f} {row[7]:>15.3f} {row[8]:>8.3f}"
        )
    # The sizes are nested (the first 1,000 references are inside the first 10,000): the largest one's
    # pairs are all the distinct pairs measured.
    total_pairs = table[-1][1]
    total_flags = table[-1][3] * n_unrelated
    rate = total_flags / total_pairs
    upper = (3 / total_pairs) if total_flags == 0 else (total_flags + 2 * np.sqrt(total_flags) + 2) / total_pairs
    print(
        f"\nper-pair blocking flag rate over {total_pairs:,} unrelated real pairs: {rate:.2e} "
        f"(95% upper bound {upper:.2e})"
    )
    for size in args.extrapolate:
        print(f"  at {size:>9,} references: {rate * size:.3f} false flags per render (upper bound {upper * size:.3f})")
    families = [f for f in benchset.REAL_FAMILIES]
    counts = defaultdict(int)
    for k in kinds:
        counts[k] += 1
    print(
        f"\n{'recall (copies)':22} {'copies':>6} "
        + " ".join(f"{f'{s:,} before':>13} {f'{s:,} after':>12}" for s in recall_rows)
    )
    for family in families:
        if not counts[family]:
            continue
        cells = " ".join(
            f"{len(b[family]) / counts[family]:13.3f} {len(a[family]) / counts[family]:12.3f}"
            for b, a in recall_rows.values()
        )
        print(f"{family:22} {counts[family]:6d} {cells}")
    store.close()


if __name__ == "__main__":
    main()
