"""Render-stage overhead against the bare diffusers call, on the tiny model, in one run.

    .venv/bin/python bench/render_overhead.py [--images 16] [--batch 8] [--size 256]

Baseline: `pipeline(...)` on the same prompts and seeds, batch by batch. Ours: the render stage
(`stages.render_images`: keying, ledger lookups, PNG save, SHA-256, fingerprints, ledger rows),
with model loading timed apart. Also: one batch job of N images with loading included, against
N single-image bare calls.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-render-"))
    os.environ.update(ESTAMPILLE_HOME=str(work / "home"), ESTAMPILLE_OUT=str(work / "out"))

    import torch

    from estampille.batch import open_batch
    from estampille.records import ImagePrompt
    from estampille.render.renderer import load_model
    from estampille.settings import Settings
    from estampille.stages import render_images

    torch.set_num_threads(os.cpu_count() or 1)
    settings = Settings.from_env()
    batch = open_batch(REPO / "brand_assets/demo", "2026-W48", settings)
    batch.bundle.brand.render.__dict__.update(batch_size=args.batch)
    batch.plan = dataclasses.replace(batch.plan, width=args.size, height=args.size)
    steps, guidance = batch.plan.steps, batch.plan.guidance

    slot_id = f"2026-W48/{batch.bundle.calendar.posts[0].id}"

    def prompts(tag: str) -> list[ImagePrompt]:
        return [
            ImagePrompt(
                prompt_id=f"{tag}-{i}",
                draft_id="d",
                slot_id=slot_id,
                prompt=f"a sourdough loaf number {i} on a wooden table",
                negative_prompt="text",
                guardrails_version="gr",
                removed_terms=[],
                llm={},
            )
            for i in range(args.images)
        ]

    started = time.perf_counter()
    loaded = load_model(batch.model)
    load_s = time.perf_counter() - started
    pipe = loaded.pipeline

    def bare(n_per_call: int, items: list[ImagePrompt]) -> float:
        started = time.perf_counter()
        for start in range(0, len(items), n_per_call):
            chunk = items[start : start + n_per_call]
            pipe(
                prompt=[p.prompt for p in chunk],
                negative_prompt=[p.negative_prompt for p in chunk],
                num_inference_steps=steps,
                guidance_scale=guidance,
                width=args.size,
                height=args.size,
                generator=[torch.Generator("cpu").manual_seed(i) for i in range(len(chunk))],
            )
        return time.perf_counter() - started

    bare(args.batch, prompts("warm"))  # warm-up
    rows = []
    for r in range(args.repeat):
        base = bare(args.batch, prompts(f"b{r}"))
        single = bare(1, prompts(f"s{r}"))
        started = time.perf_counter()
        renders = render_images(batch, prompts(f"o{r}"))  # loads the model itself, renders, records
        stage = time.perf_counter() - started
        inside = sum(r.duration_s for r in renders)  # time inside the pipeline calls, as recorded
        rows.append((base, single, stage, inside))
    base = statistics.median(r[0] for r in rows)
    single = statistics.median(r[1] for r in rows)
    stage = statistics.median(r[2] for r in rows)
    outside = statistics.median(r[2] - r[3] for r in rows)
    n = args.images
    print(
        f"tiny model, {n} images {args.size}x{args.size}, batch {args.batch}, {steps} steps, "
        f"{torch.get_num_threads()} threads, median of {args.repeat}"
    )
    print(f"{'measure':58s} {'seconds':>9s} {'ratio':>7s}")
    print(f"{f'bare pipeline, batches of {args.batch} (baseline)':58s} {base:9.3f} {1:7.2f}")
    print(f"{'bare pipeline, one image per call':58s} {single:9.3f} {single / base:7.2f}")
    print(f"{'model load (from_pretrained + weights hash)':58s} {load_s:9.3f}")
    print(f"{'render stage incl. load':58s} {stage:9.3f} {stage / base:7.2f}")
    print(
        f"{'stage time outside pipeline calls, per image (incl. load)':58s} {outside / n:9.4f} "
        f"{(outside / n) / (base / n):7.1%}"
    )
    print(f"{'  same, load excluded':58s} {(outside - load_s) / n:9.4f} {((outside - load_s) / n) / (base / n):7.1%}")
    print(f"{f'one batch job incl. load vs {n} x bare single-image time':58s} {stage:9.3f} {stage / single:7.2f}")
    batch.ledger.close()


if __name__ == "__main__":
    sys.exit(main())
