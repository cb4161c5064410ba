"""Recall per kind of copy and false-positive rate of the lookalike verdict, beside plain
imagehash pHash at threshold 10, on a labelled set the thresholds were NOT calibrated on.

    .venv/bin/python bench/lookalike_quality.py [--seed 1] [--scenes 160] [--distractors 1500]
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenes", type=int, default=160)
    parser.add_argument("--distractors", type=int, default=1500)
    args = parser.parse_args()
    from estampille.lookalike.engine import calibrated
    from estampille.testing import benchset, calibration

    originals, copies, distractors = benchset.build(REPO, args.scenes, args.distractors, args.seed)
    thresholds = calibrated()
    summary = calibration.report(calibration.measure(originals, copies, distractors), thresholds)
    print(
        f"held-out set (seed {args.seed}): {len(originals)} originals, {len(copies)} copies, "
        f"{len(distractors)} distractors, {summary['negative_pairs']:,} unrelated pairs"
    )
    print(f"hash rule: {thresholds.describe()} (the hash tier alone: the feature tier is not measured here)\n")
    print(
        f"{'kind of copy':14} {'copies':>7} {'recall':>8} {'target':>7} {'imagehash pHash@10':>19} {'x baseline':>11}"
    )
    for family, row in summary["families"].items():
        target = f"{row['target']:.2f}" if row["target"] else "-"
        ratio = row["recall"] / row["baseline_phash10"] if row["baseline_phash10"] else float("inf")
        print(
            f"{family:14} {row['copies']:7d} {row['recall']:8.3f} {target:>7} {row['baseline_phash10']:19.3f} {ratio:11.1f}"
        )
    print(
        f"\nfalse positives: {summary['false_positive_rate'] * 100:.4f}% of unrelated pairs "
        f"(target <= 0.1%); imagehash pHash@10: {summary['baseline_false_positive_rate'] * 100:.4f}%"
    )


if __name__ == "__main__":
    main()
