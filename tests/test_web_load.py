"""A bounded load test of the review server as `estampille serve` runs it (its own process, on
loopback): 50 readers, each reloading the run page about once a second, while 10 uploads are
audited. The run page stays fast (p95 under 200 ms), the server's memory with its audit workers
stays under 600 MB, and nothing is lost (every request answered, every audit reported, the
ledger still verifies, no temporary file left). 750 page loads + 10 uploads."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from estampille.ledger import Ledger

from .web_harness import TOKEN, free_port, run_url

READERS, LOADS_EACH, UPLOADS = 50, 15, 10
THINK = (0.5, 1.5)  # seconds a reader spends on the page before reloading it


def _peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process and of its children (the audit workers), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024 + sum(_peak_rss_mb(int(c)) for c in children)


@pytest.fixture
def serving(served_run, tmp_path):
    port = free_port()
    settings = served_run["settings"]
    env = dict(
        os.environ,
        ESTAMPILLE_HOME=str(settings.home),
        ESTAMPILLE_OUT=str(settings.out),
        ESTAMPILLE_REVIEW_TOKEN=TOKEN,
        ESTAMPILLE_REVIEWERS="Camille",
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from estampille.cli import main; raise SystemExit(main())",
            "serve",
            "--port",
            str(port),
            "--brands",
            str(served_run["brand"].parent),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            assert server.poll() is None, server.stdout.read().decode()
            time.sleep(0.2)
    try:
        yield base, server.pid, settings
    finally:
        server.terminate()
        server.wait(20)


def _upload(seed: int) -> bytes:
    """A 1600x1200 photo-like JPEG (no record in the ledger: the audit runs every tier)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((1600, 1200), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


async def _load(base: str) -> tuple[list[float], list[int], list[str]]:
    files = [_upload(n) for n in range(UPLOADS)]
    rng = np.random.default_rng(0)
    async with httpx.AsyncClient(base_url=base, timeout=120) as auditor:
        page = await auditor.get("/")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        signed = await auditor.post(
            "/login", data={"name": "Camille", "token": TOKEN, "csrf": csrf}, follow_redirects=True
        )
        csrf = re.search(r'name="csrf" value="([^"]+)"', signed.text).group(1)
        latencies: list[float] = []
        statuses: list[int] = []

        async def reader(client: httpx.AsyncClient, pauses: np.ndarray) -> None:
            for pause in pauses:
                await asyncio.sleep(pause)
                started = time.perf_counter()
                response = await client.get(run_url())
                latencies.append(time.perf_counter() - started)
                statuses.append(response.status_code)

        async def upload(n: int) -> str:
            await asyncio.sleep(n * 0.5)
            response = await auditor.post(
                f"/audit?csrf={csrf}", files={"file": (f"post-{n}.jpg", files[n], "image/jpeg")}
            )
            return f"{response.status_code}:{f'post-{n}.jpg' in response.text}"

        limits = httpx.Limits(max_connections=READERS)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as readers:
            await readers.get(run_url())  # the run's view built once
            uploads = [asyncio.create_task(upload(n)) for n in range(UPLOADS)]
            await asyncio.gather(*(reader(readers, rng.uniform(*THINK, LOADS_EACH)) for _ in range(READERS)))
            audited = await asyncio.gather(*uploads)
    return latencies, statuses, audited


def test_the_run_page_stays_fast_while_uploads_are_audited(serving):
    base, pid, settings = serving
    latencies, statuses, audited = asyncio.run(_load(base))
    peak = _peak_rss_mb(pid)
    p95 = float(np.percentile(latencies, 95))
    print(
        f"\nrun page under load: {len(latencies)} loads, p50 {np.median(latencies) * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms; server and audit workers peak memory {peak:.0f} MB; audits {audited}"
    )
    assert statuses == [200] * READERS * LOADS_EACH
    assert audited == ["200:True"] * UPLOADS  # every upload audited, its report names it
    assert p95 < 0.2
    assert peak < 600
    ledger = Ledger(settings.ledger_url)
    assert ledger.verify().ok
    ledger.close()
    assert not list(Path(tempfile.gettempdir()).glob("estampille-audit-*"))  # every upload's temp folder removed
