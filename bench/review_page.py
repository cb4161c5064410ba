"""Server time of the review pages for a run of 100 post slots x 4 images (issue 6: < 1 s).

    .venv/bin/python bench/review_page.py [--slots 100] [--repeat 7]

A ledger is filled with one week of 100 slots, each with 2 text variants and 2 images per
variant, whose payloads have the size and shape of real records (about 2 KB per render), plus
one lookalike match per tenth image and a decision on every third item. The app is called
in-process through Starlette's test client; the time is the app's own (its Server-Timing
header), median of --repeat calls. Baseline, measured in the same run: reading the week's
events from the ledger, which every page of the run needs (the floor of the run page).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
WEEK = "2026-W48"
BRAND = "bench"


def fill(ledger, out: Path, slots: int) -> list[str]:
    run_dir = out / BRAND / WEEK
    (run_dir / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    posts = [f"post-{i:03d}" for i in range(slots)]
    ledger.append(
        "run.started", "run-bench", {"brand": "Bench Bakery", "week": WEEK, "posts": posts}, brand=BRAND, week=WEEK
    )
    images = []
    for n, post in enumerate(posts):
        slot = f"{WEEK}/{post}"
        for v in range(2):
            draft_id = f"draft-{n:03d}{v}"
            text = f"Fresh from the oven: loaf number {n}, golden crust and soft crumb. Come by! #bread #lyon\n\nMade with AI."
            ledger.append(
                "draft.created",
                draft_id,
                {
                    "draft_id": draft_id,
                    "slot_id": slot,
                    "variant": v,
                    "language": "en",
                    "locale": "en-GB",
                    "audience": None,
                    "platform": "instagram",
                    "caption": text,
                    "hashtags": ["#bread", "#lyon"],
                    "call_to_action": "Come by!",
                    "alt_text": "A sourdough loaf on a table",
                    "text": text,
                    "flags": [],
                    "fact_spans": [[28, 30, "figure"]] if n % 5 == 0 else [],
                    "similarity": {"max_to_other_variants": 0.71, "method": "minilm"},
                    "llm": {
                        "model": "gpt-x",
                        "backend": "openai",
                        "attempts": 1,
                        "calls": [{"host": "api.example", "tokens": 412, "latency_s": 1.2}],
                    },
                },
                brand=BRAND,
                week=WEEK,
                subject=slot,
            )
            ledger.append(
                "prompt.created",
                f"prompt-{n:03d}{v}",
                {
                    "prompt_id": f"prompt-{n:03d}{v}",
                    "draft_id": draft_id,
                    "slot_id": slot,
                    "prompt": "A crusty sourdough loaf on a floured wooden table at dawn, natural light " * 3,
                    "negative_prompt": "text, watermark, logo",
                    "guardrails_version": "g-1",
                    "removed_terms": [],
                    "llm": {},
                },
                brand=BRAND,
                week=WEEK,
                subject=slot,
            )
            for i in range(2):
                image_id = f"img-{n:03d}{v}{i}"
                file = f"images/{image_id}.png"
                Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)).save(run_dir / file)
                ledger.append(
                    "render.created",
                    image_id,
                    {
                        "image_id": image_id,
                        "prompt_id": f"prompt-{n:03d}{v}",
                        "draft_id": draft_id,
                        "slot_id": slot,
                        "file": file,
                        "sha256": f"{n:060d}{v}{i}ab",
                        "seed": 1000 + i,
                        "prompt": "A crusty loaf " * 20,
                        "negative_prompt": "text, watermark",
                        "steps": 30,
                        "guidance": 5.0,
                        "width": 1024,
                        "height": 1024,
                        "batch_size": 4,
                        "mode": "text-to-image",
                        "reference": None,
                        "model": {
                            "id": "stabilityai/sdxl",
                            "revision": "a" * 40,
                            "weights_sha256": "b" * 64,
                            "pipeline_class": "StableDiffusionXLPipeline",
                            "licence": "openrail++",
                            "commercial_use": "yes",
                            "test_model": False,
                        },
                        "scheduler": {
                            "class": "EulerDiscreteScheduler",
                            "config": {"beta_start": 0.00085, "steps": 1000},
                        },
                        "versions": {"torch": "2.13.0", "diffusers": "0.42.1"},
                        "device": "cuda:0",
                        "duration_s": 2.1,
                        "fingerprints": {"phash": "c3d4e5f601020304", "dhash": "0102030405060708"},
                        "worker": "gpu1:123",
                    },
                    brand=BRAND,
                    week=WEEK,
                    subject=slot,
                )
                flagged = len(images) % 10 == 0
                ledger.append(
                    "lookalike.checked",
                    f"check-{image_id}",
                    {
                        "image_id": image_id,
                        "verdict": "lookalike" if flagged else "clear",
                        "index_size": 100000,
                        "thresholds": {"phash": 10, "dhash": 10},
                        "matches": [
                            {
                                "source": "Rival",
                                "reference": "competitors/rival/x.jpg",
                                "distances": {"phash": 4, "dhash": 6},
                                "verdict": "lookalike",
                            }
                        ]
                        if flagged
                        else [],
                    },
                    brand=BRAND,
                    week=WEEK,
                    subject=slot,
                )
                ledger.append(
                    "provenance.signed",
                    f"sign-{image_id}",
                    {
                        "image_id": image_id,
                        "file": file,
                        "sidecar": f"images/{image_id}.json",
                        "sha256": "c" * 64,
                        "digital_source_type": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
                        "c2pa_state": "Trusted",
                        "signer": "CN=Bench",
                    },
                    brand=BRAND,
                    week=WEEK,
                    subject=slot,
                )
                images.append(image_id)
            if n % 3 == 0:
                ledger.append(
                    "review.approved",
                    f"review-{draft_id}",
                    {
                        "item_id": draft_id,
                        "item_kind": "draft",
                        "decision": "approved",
                        "reviewer": "Camille",
                        "comment": "",
                        "decided_at": "2026-11-23T09:00:00+00:00",
                    },
                    brand=BRAND,
                    week=WEEK,
                    subject=slot,
                )
    return images


def server_ms(client, url: str) -> float:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.text[-300:])
    return float(re.search(r"dur=([\d.]+)", response.headers["server-timing"]).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    from starlette.testclient import TestClient

    from estampille.ledger import Ledger
    from estampille.provenance.identity import dev_identity
    from estampille.settings import Settings
    from estampille.web.app import WebConfig, create_app
    from estampille.web.security import MIN_TOKEN_LENGTH, ReviewerPolicy

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(env={"ESTAMPILLE_HOME": f"{tmp}/home", "ESTAMPILLE_OUT": f"{tmp}/out"})
        ledger = Ledger(settings.ledger_url)
        started = time.perf_counter()
        images = fill(ledger, settings.out, args.slots)
        print(f"ledger filled: {ledger.count()} rows, {len(images)} images in {time.perf_counter() - started:.1f} s")
        token = "bench-team-token-" + "t" * MIN_TOKEN_LENGTH
        app = create_app(WebConfig(settings, dev_identity(settings.keys_dir), ReviewerPolicy(("Camille",), token)))
        client = TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 1))
        # Timings are sent to a signed-in reviewer only: sign in as the page does (CSRF token from the form).
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text).group(1)
        assert client.post("/login", data={"name": "Camille", "token": token, "csrf": csrf}).status_code == 200
        rows = []

        def measure(name: str, call) -> float:
            call()  # warm: templates compiled, connections open
            times = []
            for _ in range(args.repeat):
                times.append(call())
            rows.append((name, statistics.median(times)))
            return rows[-1][1]

        def read_week() -> float:
            t = time.perf_counter()
            ledger.events(brand=BRAND, week=WEEK)
            return (time.perf_counter() - t) * 1000

        base = measure("baseline: read the week's events", read_week)
        ticks = iter(range(10**6))

        def after_a_new_event() -> float:
            # A decision just landed: the page is rebuilt from the ledger, the case that counts.
            ledger.append("bench.tick", f"tick-{next(ticks)}", {}, brand=BRAND, week=WEEK)
            return server_ms(client, f"/runs/{BRAND}/{WEEK}")

        measure(f"run page ({args.slots} slots x 4 images), rebuilt", after_a_new_event)
        measure("run page, ledger unchanged since last view", lambda: server_ms(client, f"/runs/{BRAND}/{WEEK}"))
        measure("runs page (all runs)", lambda: server_ms(client, "/"))
        measure("image page (with C2PA read)", lambda: server_ms(client, f"/runs/{BRAND}/{WEEK}/images/{images[0]}"))
        first = server_ms(client, f"/runs/{BRAND}/{WEEK}/thumbs/{images[1]}.webp")
        rows.append(("thumbnail, first request (made, 512² PNG)", first))
        measure("thumbnail, cached", lambda: server_ms(client, f"/runs/{BRAND}/{WEEK}/thumbs/{images[1]}.webp"))
        ledger.close()
    print(f"\n{'what':45} {'median ms':>10} {'x baseline':>11}")
    for name, ms in rows:
        print(f"{name:45} {ms:10.1f} {ms / base:11.1f}")
    print(f"\npython {sys.version.split()[0]}, {args.repeat} repeats")


if __name__ == "__main__":
    main()
