"""Recall of the two-tier lookalike engine on real photographs reused as social media reuses them
(crops keeping 60-80% of each side, square and 4:5 reframes, phone screenshots, 9:16 stories,
collage tiles, imitations), beside imagehash pHash <= 10 and PDQ <= 31, with the false-positive
rate over unrelated pairs (queries against references cut from other photos).

    .venv/bin/python bench/lookalike_real_photos.py --calibrate --seed 0   # choose the feature thresholds
    .venv/bin/python bench/lookalike_real_photos.py --seed 1               # report on a held-out set

Collage queries hold three other photos' tiles: their matches with those photos are true, so
collage queries are left out of the false-positive count.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import imagehash
import numpy as np
import pdqhash
from PIL import Image

THRESHOLDS = Path(__file__).resolve().parents[1] / "src" / "estampille" / "lookalike" / "thresholds.json"
PHASH_BASELINE, PDQ_BASELINE = 10, 31
FP_BUDGET = 0.0002  # of unrelated pairs, for the feature tier alone (the target is 0.05% in all)


def _pdq(image: Image.Image) -> np.ndarray:
    bits, _ = pdqhash.compute(np.asarray(image.convert("RGB")))
    return bits.astype(bool)


def run(seed: int, feature_thresholds=None) -> dict:
    """Index the set, search every copy; keep each hit's tier, inliers and coverage."""
    from estampille.lookalike.engine import hash_queries, search_store
    from estampille.lookalike.features import reference_features
    from estampille.lookalike.hashing import hash_file
    from estampille.lookalike.store import Entry, ReferenceStore
    from estampille.testing import benchset

    originals, copies, distractors = benchset.build_real(seed)
    references = originals + distractors
    encoded = [benchset.encode(r.image) for r in references]
    with tempfile.TemporaryDirectory() as tmp:
        store = ReferenceStore(tmp)
        started = time.perf_counter()
        store.add(
            [Entry(r.name, r.group, str(n)) for n, r in enumerate(references)],
            [hash_file(data) for data in encoded],
            [reference_features(data) for data in encoded],
        )
        ingest_s = time.perf_counter() - started
        ids = {row[0]: n for n, row in enumerate(store.db.execute("SELECT id FROM images ORDER BY id"))}
        started = time.perf_counter()
        queries, _ = hash_queries([c.data for c in copies])
        prepare_s = time.perf_counter() - started
        started = time.perf_counter()
        hits = search_store(store, queries, features=feature_thresholds)
        search_s = time.perf_counter() - started
        store.close()
    group_of_original = {o.name: o.group for o in originals}
    raw = []  # (query, related: True / False / None for unknown, hash tier?, inliers, coverage)
    for hit in hits:
        ref, copy = references[ids[hit.reference_id]], copies[hit.query]
        related = (
            True
            if ref.name == copy.original
            else (
                False
                if ref.group != group_of_original[copy.original] and not copy.family.startswith("collage")
                else None
            )
        )
        if related is None:
            continue
        region = hit.region or {}
        raw.append((hit.query, related, hit.tier != "features", region.get("inliers", 0), region.get("coverage", 0.0)))
    ref_phash = {r.name: imagehash.phash(r.image) for r in originals}
    ref_pdq = {r.name: _pdq(r.image) for r in originals}
    baselines = []
    for copy in copies:
        image = Image.open(io.BytesIO(copy.data)).convert("RGB")
        baselines.append(
            (
                (imagehash.phash(image) - ref_phash[copy.original]) <= PHASH_BASELINE,
                int((_pdq(image) != ref_pdq[copy.original]).sum()) <= PDQ_BASELINE,
            )
        )
    return {
        "raw": raw,
        "families": [c.family for c in copies],
        "baselines": baselines,
        "pairs": sum(1 for c in copies if not c.family.startswith("collage")) * len(references),
        "originals": len(originals),
        "copies": len(copies),
        "distractors": len(distractors),
        "seconds": {
            "ingest per image": ingest_s / len(references),
            "prepare per query": prepare_s / len(copies),
            "search per query": search_s / len(copies),
        },
    }


def summarize(result: dict, min_inliers: int, min_coverage: float) -> dict:
    """Recall per family and false pairs per tier, for feature floors at or above the run's."""
    found = defaultdict(set)
    false = defaultdict(int)
    for query, related, by_hash, inliers, coverage in result["raw"]:
        by_features = inliers >= min_inliers and coverage >= min_coverage
        tiers = ({"hash"} if by_hash else set()) | ({"features"} if by_features else set())
        if not tiers:
            continue
        if related:
            found[query] |= tiers
        else:
            for tier in tiers | {"both"}:
                false[tier] += 1
    rows = defaultdict(lambda: defaultdict(int))
    for n, family in enumerate(result["families"]):
        row = rows[family]
        row["copies"] += 1
        row["both"] += bool(found[n])
        row["hash"] += "hash" in found[n]
        row["features"] += "features" in found[n]
        row["phash10"] += result["baselines"][n][0]
        row["pdq31"] += result["baselines"][n][1]
    return {"rows": rows, "false": false}


def calibrate(seed: int) -> dict:
    """The inlier and coverage floors with the best worst-family margin over the issue's targets
    whose false positives stay within FP_BUDGET (one loose search, floors applied after)."""
    from estampille.lookalike.features import FeatureThresholds
    from estampille.testing import benchset

    loose = FeatureThresholds(min_inliers=8, min_coverage=0.0)
    result = run(seed, loose)
    best = None
    for inliers in (10, 12, 14, 16, 18, 22):
        for coverage in (0.02, 0.04, 0.06, 0.1):
            summary = summarize(result, inliers, coverage)
            rate = summary["false"]["features"] / result["pairs"]
            margin = min(
                summary["rows"][f]["both"] / summary["rows"][f]["copies"] - t
                for f, t in benchset.REAL_FAMILIES.items()
                if t
            )
            print(
                f"  inliers>={inliers} coverage>={coverage}: worst margin {margin:+.3f}, "
                f"feature-tier false {rate * 100:.4f}%"
            )
            # Equal margins: the setting with the fewest false positives.
            if rate <= FP_BUDGET and (
                best is None or margin > best[0] + 1e-9 or (abs(margin - best[0]) <= 1e-9 and rate < best[2])
            ):
                best = (margin, replace(loose, min_inliers=inliers, min_coverage=coverage), rate)
    assert best, "no setting within the false-positive budget"
    data = json.loads(THRESHOLDS.read_text())
    data["features"] = {
        "min_inliers": best[1].min_inliers,
        "min_coverage": best[1].min_coverage,
        "max_hamming": best[1].max_hamming,
        "min_votes": best[1].min_votes,
        "reprojection": best[1].reprojection,
        "calibrated_on": {
            "seed": seed,
            "set": "real photographs (benchset.build_real)",
            "false_positive_rate": best[2],
            "budget": FP_BUDGET,
        },
    }
    THRESHOLDS.write_text(json.dumps(data, indent=2) + "\n")
    return data["features"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--calibrate", action="store_true")
    args = parser.parse_args()
    if args.calibrate:
        print(f"calibrating the feature tier on seed {args.seed}:")
        print(json.dumps(calibrate(args.seed), indent=2))
        return
    from estampille.testing import benchset

    result = run(args.seed)
    from estampille.lookalike.engine import feature_thresholds

    chosen = feature_thresholds()
    summary = summarize(result, chosen.min_inliers, chosen.min_coverage)
    print(
        f"\nreal-photo set (seed {args.seed}): {result['originals']} originals, {result['copies']} copies, "
        f"{result['distractors']} distractors, {result['pairs']:,} unrelated pairs"
    )
    print(
        f"{'kind of copy':20} {'copies':>6} {'both tiers':>10} {'target':>6} {'hash tier':>9} {'features':>8} "
        f"{'pHash<=10':>9} {'PDQ<=31':>8}"
    )
    for family, target in benchset.REAL_FAMILIES.items():
        row = summary["rows"][family]
        n = row["copies"]
        print(
            f"{family:20} {n:6d} {row['both'] / n:10.3f} {target if target else '-':>6} {row['hash'] / n:9.3f} "
            f"{row['features'] / n:8.3f} {row['phash10'] / n:9.3f} {row['pdq31'] / n:8.3f}"
        )
    for tier in ("both", "hash", "features"):
        print(
            f"false positives, {tier}: {summary['false'][tier]} = {100 * summary['false'][tier] / result['pairs']:.4f}% "
            "of unrelated pairs" + (" (target <= 0.05%)" if tier == "both" else "")
        )
    print("seconds: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in result["seconds"].items()))


if __name__ == "__main__":
    main()
