"""Calibrate the hash thresholds on the synthetic labelled set of issue 8 (printed; written with --out).

    .venv/bin/python bench/calibrate_lookalike.py [--scenes 160] [--distractors 1500] [--seed 0]

The set (src/estampille/testing/benchset.py) is generated from the images the project ships
(demo competitors and references, scikit-image's sample photos) and procedural scenes, each
copied 28 ways. One threshold per searched hash: the largest whose false-positive rate stays
within its share of a 0.09% budget. `bench/lookalike_quality.py` then measures recall on a set
generated with another seed (held out).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=160)
    parser.add_argument("--distractors", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=None, help="write the chosen thresholds here (the shipped file is left alone)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="false-positive rate allowed per hash (default: 2e-4 pHash, 5e-4 window, 2e-4 PDQ); "
        "a corpus of millions needs ~1e-7",
    )
    args = parser.parse_args()
    from estampille.lookalike.hashing import pipeline_id
    from estampille.testing import benchset, calibration

    started = time.perf_counter()
    originals, copies, distractors = benchset.build(REPO, args.scenes, args.distractors, args.seed)
    print(
        f"set: {len(originals)} originals, {len(copies)} copies, {len(distractors)} distractors "
        f"({time.perf_counter() - started:.0f} s)",
        file=sys.stderr,
    )
    distances = calibration.measure(originals, copies, distractors)
    budget = {k: args.budget for k in calibration.BUDGET} if args.budget else calibration.BUDGET
    thresholds = calibration.choose(distances, budget)
    summary = calibration.report(distances, thresholds)
    if args.out:
        # Only this calibration's keys: the file also holds the feature tier's and verification's.
        data = json.loads(args.out.read_text()) if args.out.exists() else {}
        data.update(
            thresholds=summary["thresholds"],
            pipeline=pipeline_id(),
            synthetic_calibration={
                "seed": args.seed,
                "originals": len(originals),
                "copies": len(copies),
                "distractors": len(distractors),
                "negative_pairs": summary["negative_pairs"],
                "budget": budget,
                "false_positive_rate": summary["false_positive_rate"],
            },
        )
        args.out.write_text(json.dumps(data, indent=2) + "\n")
        print(f"written {args.out}", file=sys.stderr)
    print(json.dumps(summary, indent=2))
    print(f"{time.perf_counter() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
