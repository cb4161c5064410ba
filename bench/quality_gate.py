"""How well the language-quality gate separates good captions from bad, on the labelled set.

    .venv/bin/python bench/quality_gate.py [--relevance-sweep]

Prints, per language, the share of bad captions flagged and of good ones flagged, the recall of
each problem kind, and (with --relevance-sweep) the rates the off-topic threshold would give.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from estampille.text import quality

LABELLED = Path(__file__).resolve().parent.parent / "tests" / "data" / "captions.yaml"


def judged(path: Path = LABELLED):
    """(entry, Quality, relevance) for each labelled caption."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    out = []
    for entry in data["captions"]:
        brief = data["briefs"][entry["brief"]]
        rel = quality.relevance(entry["text"], brief)
        out.append(
            (
                entry,
                quality.check(
                    entry["text"], language=entry["lang"], brief=brief, known=quality.vocabulary([brief]), relevance=rel
                ),
                rel,
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relevance-sweep", action="store_true")
    args = parser.parse_args(argv)
    results = judged()
    print(f"thresholds version {quality.thresholds_version()}\n")
    print(f"{'language':<9}{'bad':>5}{'bad flagged':>13}{'good':>6}{'good flagged':>14}")
    for lang in sorted({e["lang"] for e, _, _ in results}):
        bad = [q for e, q, _ in results if e["lang"] == lang and e["label"] == "bad"]
        good = [q for e, q, _ in results if e["lang"] == lang and e["label"] == "good"]
        print(
            f"{lang:<9}{len(bad):>5}{sum(not q.passed for q in bad) / len(bad):>13.1%}"
            f"{len(good):>6}{sum(not q.passed for q in good) / len(good):>14.1%}"
        )
    print(f"\n{'kind':<11}{'labelled':>9}{'caught':>8}")
    for kind in quality.KINDS:
        labelled = [(e, q) for e, q, _ in results if kind in e.get("kinds", [])]
        caught = sum(kind in {p.kind for p in q.problems} for _, q in labelled)
        print(f"{kind:<11}{len(labelled):>9}{caught:>8}")
        for e, q in labelled:
            if kind not in {p.kind for p in q.problems}:
                print(f"   missed: {e['text'][:80]}")
    wrong = [(e, q) for e, q, _ in results if (e["label"] == "good") != q.passed]
    for e, q in wrong:
        print(f"\nMISJUDGED ({e['label']}, {e['lang']}): {e['text'][:90]}\n  {[str(p) for p in q.problems]}")
    if args.relevance_sweep:
        limits = quality.thresholds()
        data = yaml.safe_load(LABELLED.read_text(encoding="utf-8"))

        def shares(entry) -> bool:
            return bool(quality._shared_stems(entry["text"], data["briefs"][entry["brief"]], limits["stem_length"]))

        off = [(r, shares(e)) for e, _, r in results if "off_topic" in e.get("kinds", [])]
        good = [(r, shares(e)) for e, _, r in results if e["label"] == "good"]
        print(
            f"\noff the brief when cosine < relevance_min ({limits['relevance_min']}), or < the value below "
            "and no word of the brief shared"
        )
        print(
            f"{'value':<8}{'cosine alone: caught':>22}{'good flagged':>14}{'with shared words: caught':>28}"
            f"{'good flagged':>14}"
        )
        for t in (0.2, 0.3, 0.4, 0.45, 0.48, 0.5, 0.55):

            def rate(rows, words, t=t):
                return sum(r < limits["relevance_min"] or (r < t and not (words and s)) for r, s in rows) / len(rows)

            print(
                f"{t:<8}{rate(off, False):>22.1%}{rate(good, False):>14.1%}{rate(off, True):>28.1%}"
                f"{rate(good, True):>14.1%}"
            )
        print(
            f"\nhighest off-topic cosine {max(r for r, _ in off):.3f}, lowest good {min(r for r, _ in good):.3f}; "
            f"good captions sharing no brief word: {sum(not s for _, s in good)} of {len(good)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
