"""What the embedded model writes for the demo brand, judged by the language-quality gate.

    .venv/bin/python bench/demo_drafts.py [--week 2026-W48] [--variants 2]

Drafts every demo post of the week with the embedded model, exactly as a run does (prompts,
retries, the gate), and prints per variant whether its first answer passed the gate and whether
the kept draft did, with the problems; then the shares, calls per variant and seconds per variant.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from estampille.brand import load_brand, posts_in_week
from estampille.records import Slot
from estampille.text.drafting import write_draft
from estampille.text.guardrails import guardrails_for
from estampille.text.llm import EmbeddedModel

DEMO = "brand_assets/demo"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--week", default="2026-W48")
    parser.add_argument("--variants", type=int, default=2)
    parser.add_argument("--show", action="store_true", help="print every kept caption")
    args = parser.parse_args(argv)
    bundle = load_brand(DEMO)
    guardrails = guardrails_for(bundle.brand)
    model = EmbeddedModel()
    first_ok, kept_ok, calls, kinds, rows = 0, 0, 0, Counter(), []
    started = time.perf_counter()
    for post in posts_in_week(bundle, args.week):
        slot = Slot(slot_id=f"{args.week}/{post.id}", brand="demo", week=args.week, post=post)
        others: list[str] = []
        for variant in range(args.variants):
            draft = write_draft(
                model,
                bundle.brand,
                slot,
                variant,
                guardrails,
                f"bench-{variant}",
                others=others,
                brand_dir=bundle.folder,
            )
            others.append(draft.caption)
            first = not draft.llm["calls"][0].get("quality") and "problem" not in draft.llm["calls"][0]
            first_ok += first
            kept_ok += draft.quality["passed"]
            calls += draft.llm["attempts"]
            kinds.update(draft.quality["kinds"])
            rows.append(
                (
                    post.id,
                    variant,
                    post.language,
                    first,
                    draft.quality["passed"],
                    draft.llm["attempts"],
                    "; ".join(draft.quality["problems"])[:110],
                )
            )
            if args.show:
                print(f"--- {post.id}#{variant} ({post.language}): {draft.caption}")
    elapsed = time.perf_counter() - started
    n = len(rows)
    print(f"\n{'post':<22}{'var':>4}{'lang':>5}{'1st ok':>7}{'kept ok':>8}{'calls':>6}  problems of the kept draft")
    for post_id, variant, lang, first, kept, attempts, problems in rows:
        print(
            f"{post_id:<22}{variant:>4}{lang:>5}{'yes' if first else 'no':>7}{'yes' if kept else 'no':>8}"
            f"{attempts:>6}  {problems}"
        )
    print(
        f"\nvariants {n}; first answer passes the gate {first_ok / n:.0%}; kept draft passes {kept_ok / n:.0%}; "
        f"{calls / n:.2f} calls and {elapsed / n:.1f} s per variant"
    )
    print("problem kinds among kept drafts:", dict(kinds) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
