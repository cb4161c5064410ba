"""Prefect and ledger overhead per rendered image, with a no-op renderer, at 400 images.

    .venv/bin/python bench/flow_overhead.py [--posts 200]

The same brand (the demo brand with a calendar of N posts, 2 variants each) runs twice in one
process: once through `stages.run_batch` (no Prefect: the baseline loop) and once through the
Prefect flow in local mode (server started beforehand, as a deployment's worker has it), after a warm-up run, alternating
twice and keeping the faster run of each. The
renderer is replaced by one that returns a blank image at once, and the LLM is the tests' local
fake server, so what differs is Prefect, and what both pay includes the ledger (timed apart).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_brand(work: Path, posts: int) -> Path:
    brand = work / "bench-brand"
    shutil.copytree(REPO / "brand_assets" / "demo", brand)
    lines = ["posts:"]
    for i in range(posts):
        day = dt.date(2026, 11, 23) + dt.timedelta(days=i % 7)
        lines += [
            f"  - id: post-{i:03d}",
            f"    date: {day}",
            f"    platform: {'instagram' if i % 2 else 'linkedin'}",
            f"    language: {'fr' if i % 2 else 'en'}",
            f"    brief: Pain numéro {i}, croûte dorée et mie souple.",
        ]
    (brand / "calendar.yaml").write_text("\n".join(lines) + "\n")
    return brand


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-flow-"))
    os.environ.update(
        ESTAMPILLE_HOME=str(work / "home"),
        PREFECT_HOME=str(work / "prefect"),
        PREFECT_LOGGING_LEVEL="ERROR",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
    )
    (work / "prefect").mkdir()
    from PIL import Image

    from estampille import batch as batch_module
    from estampille import stages
    from estampille.ledger import Ledger
    from estampille.render.renderer import Rendered
    from estampille.settings import Settings
    from tests.fake_openai import FakeOpenAI

    server = FakeOpenAI().start()
    os.environ.update(ESTAMPILLE_LLM_BASE_URL=server.base_url, ESTAMPILLE_LLM_MODEL="fake")
    blank = Image.new("RGB", (64, 64), "white")

    class NoOpRenderer:  # a `Renderer` (render/renderer.py) without a model
        device = "cpu"

        def weights_id(self):
            return "noop"

        def load(self, gpu=0):
            return self

        def environment(self):
            return {"scheduler": {"class": "none", "config": {}}, "versions": {"noop": "1"}}

        def describe(self):
            return {
                "id": "noop",
                "revision": None,
                "weights_sha256": "0" * 64,
                "pipeline_class": "NoOp",
                "licence": "Apache-2.0",
                "commercial_use": "yes",
                "licence_source": "bench",
                "test_model": True,
            }

        def render(self, jobs, batch_size, *, pad=False):
            return (Rendered(j, blank, 0.0, batch_size) for j in jobs)

    # Both runs open their batch themselves (the flow in its open-batch task): swap the default renderer.
    batch_module.DiffusersRenderer = lambda *a, **k: NoOpRenderer()
    ledger_time = [0.0]
    for name in ("append", "get"):
        original = getattr(Ledger, name)

        def timed(self, *a, __original=original, **k):
            started = time.perf_counter()
            try:
                return __original(self, *a, **k)
            finally:
                ledger_time[0] += time.perf_counter() - started

        setattr(Ledger, name, timed)

    brand = make_brand(work, args.posts)
    from prefect import flow

    from flows.weekly_batch import weekly_batch

    flow(lambda: None, name="warm-up")()  # start Prefect's local server before timing
    stages.run_batch(brand, "2026-W48", Settings.from_env(out=work / "warm-up"))  # load the sentence model etc.
    runs = {
        "plain loop (baseline)": lambda out: stages.run_batch(brand, "2026-W48", Settings.from_env(out=out)),
        "Prefect flow": lambda out: weekly_batch(str(brand), "2026-W48", str(out)),
    }
    results: dict[str, tuple] = {}
    for repeat in range(2):  # alternate, keep the faster of two of each
        for label, run in runs.items():
            ledger_time[0] = 0.0
            out = work / f"{label.split()[0]}-{repeat}"
            started = time.perf_counter()
            summary = run(out)
            result = (time.perf_counter() - started, ledger_time[0], summary["counts"]["render"]["new"])
            results[label] = min(results.get(label, result), result)
    server.stop()
    images = results["Prefect flow"][2]
    base, flow_time = results["plain loop (baseline)"][0], results["Prefect flow"][0]
    prefect_per_image = (flow_time - base) / images
    ledger_per_image = results["Prefect flow"][1] / images
    print(f"{images} images (no-op renderer), {args.posts} posts, fake LLM on loopback, SQLite ledger")
    print(f"{'measure':48s} {'seconds':>9s} {'ratio':>7s}")
    print(f"{'plain loop, no Prefect (baseline)':48s} {base:9.2f} {1:7.2f}")
    print(f"{'Prefect flow (server already up)':48s} {flow_time:9.2f} {flow_time / base:7.2f}")
    print(f"{'Prefect overhead per image':48s} {prefect_per_image * 1e3:8.2f}ms")
    print(f"{'ledger time per image (appends + lookups)':48s} {ledger_per_image * 1e3:8.2f}ms")
    total = max(prefect_per_image, 0.0) + ledger_per_image
    print(f"{'Prefect + ledger per image (target < 20 ms)':48s} {total * 1e3:8.2f}ms")


if __name__ == "__main__":
    main()
