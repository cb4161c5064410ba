"""What the render stage's own work per image costs next to a fast GPU model, with and without
overlapping it with the next batch (issue 17: ~19% on a Turbo-class model at ~85 ms an image).

    .venv/bin/python bench/render_bookkeeping_overlap.py [--gpu-ms 85] [--images 64] [--batch 4]

No GPU here, so the model is stood in for by a renderer that waits `--gpu-ms` per image without
using the CPU, as a Python thread does while CUDA computes, and returns a real photograph
(skimage's astronaut, 512 px, shifted per seed so every image differs). Everything else is the real
render stage (`stages.render_images`): keys, ledger, PNG, SHA-256, fingerprints, records.
Baseline in the same run: the renderer alone (N × gpu-ms). Two stage runs: the stage as on a GPU
(bookkeeping on a background thread) and as on CPU (inline).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu-ms", type=float, default=85.0, help="model time per image (SDXL-Turbo on H100: ~84)")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-overlap-"))
    os.environ.update(ESTAMPILLE_HOME=str(work / "home"), ESTAMPILLE_OUT=str(work / "out"))

    import numpy as np
    from PIL import Image
    from skimage import data

    from estampille.batch import open_batch
    from estampille.records import ImagePrompt
    from estampille.render.renderer import Rendered
    from estampille.settings import Settings
    from estampille.stages import render_images

    photo = Image.fromarray(data.astronaut()).resize((512, 512))

    class WaitingModel:
        """A stand-in for a GPU model: waits, holding no core, then returns a photograph."""

        def __init__(self, device: str):
            self.device = device

        def weights_id(self):
            return f"waiting-{args.gpu_ms}"

        def load(self, gpu=0):
            return self

        def environment(self):
            return {"scheduler": {"class": "none", "config": {}}, "versions": {}}

        def describe(self):
            return {
                "id": "waiting",
                "name": "waiting",
                "revision": None,
                "weights_sha256": "0" * 64,
                "pipeline_class": "Waiting",
                "licence": "CC0-1.0",
                "commercial_use": "yes",
                "licence_source": "bench",
                "test_model": True,
            }

        def render(self, jobs, batch_size, *, pad=False):
            for start in range(0, len(jobs), batch_size):
                chunk = jobs[start : start + batch_size]
                time.sleep(args.gpu_ms / 1000 * len(chunk))
                for job in chunk:
                    shifted = np.roll(np.asarray(photo), job.seed % 512, axis=1)
                    yield Rendered(job, Image.fromarray(shifted), args.gpu_ms / 1000, len(chunk))

    settings = Settings.from_env()
    batch = open_batch(REPO / "brand_assets/demo", "2026-W48", settings)
    batch.bundle.brand.render.__dict__.update(batch_size=args.batch)
    slot_id = f"2026-W48/{batch.bundle.calendar.posts[0].id}"

    def prompts(tag: str) -> list[ImagePrompt]:
        return [
            ImagePrompt(
                prompt_id=f"{tag}-{i}",
                draft_id="d",
                slot_id=slot_id,
                prompt=f"loaf {i}",
                negative_prompt="",
                guardrails_version="gr",
                removed_terms=[],
                llm={},
            )
            for i in range(args.images)
        ]

    def stage(device: str, tag: str) -> float:
        batch.renderer = WaitingModel(device)
        started = time.perf_counter()
        renders = render_images(batch, prompts(tag))
        assert len(renders) == args.images
        return time.perf_counter() - started

    stage("cuda:0", "warm")
    model = args.images * args.gpu_ms / 1000
    threaded = statistics.median(stage("cuda:0", f"t{r}") for r in range(args.repeat))
    inline = statistics.median(stage("cpu", f"i{r}") for r in range(args.repeat))
    n = args.images
    print(
        f"{n} images of 512x512 (a photograph), batch {args.batch}, model {args.gpu_ms:.0f} ms per image "
        f"(stood in for), median of {args.repeat}"
    )
    print(f"{'measure':52s} {'seconds':>8s} {'per image':>10s} {'vs model':>9s}")
    print(f"{'model alone (baseline)':52s} {model:8.2f} {model / n * 1000:8.1f}ms {1:9.2f}")
    print(
        f"{'render stage, bookkeeping inline (as on CPU)':52s} {inline:8.2f} {inline / n * 1000:8.1f}ms "
        f"{inline / model:9.2f}"
    )
    print(
        f"{'render stage, bookkeeping overlapped (as on a GPU)':52s} {threaded:8.2f} {threaded / n * 1000:8.1f}ms "
        f"{threaded / model:9.2f}"
    )
    batch.ledger.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
