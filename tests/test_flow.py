"""The Prefect flow against one session-scoped real Prefect server (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from estampille.brand import load_brand, posts_in_week
from estampille.cli import main
from estampille.ledger import Ledger
from estampille.stages import DRAFT, STAGES

from .conftest import DEMO_WEEK

POSTGRES = os.environ.get("ESTAMPILLE_TEST_POSTGRES_URL")

STAGE_TASKS = {"open-batch", *(stage.task for stage in STAGES), "finish"}


@pytest.fixture
def prefect_harness(prefect_server):
    """The session's real Prefect server (tests/conftest.py)."""
    return prefect_server


async def _task_names(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name.rsplit("-", 1)[0] for run in runs if run.state and run.state.is_completed()}


async def _artifacts(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


@pytest.mark.prefect
def test_weekly_flow_runs_every_stage_as_a_task_and_reruns_idempotently(
    prefect_harness, fake_llm, settings, two_post_brand, capsys
):
    from flows.weekly_batch import weekly_batch

    state = weekly_batch(str(two_post_brand), DEMO_WEEK, str(settings.out), return_state=True)
    assert state.is_completed()
    summary = state.result()
    n_images = 2 * len(posts_in_week(load_brand(two_post_brand), DEMO_WEEK))
    assert summary["failures"] == [] and summary["counts"]["sign"]["new"] == n_images
    assert asyncio.run(_task_names(state.state_details.flow_run_id)) == STAGE_TASKS
    artifacts = asyncio.run(_artifacts(state.state_details.flow_run_id))
    assert artifacts["render-progress"].data == 100.0
    assert "review.html" in artifacts["weekly-batch-summary"].data
    table = artifacts["items-by-stage"].data
    assert '"stage": "render"' in table.replace("'", '"') and str(n_images) in table
    ledger = Ledger(settings.ledger_url)
    rows = ledger.count()
    assert ledger.verify().ok

    # The CLI's default engine is the same flow: a second run redoes nothing and adds no rows.
    assert main(["run", "--brand", str(two_post_brand), "--week", DEMO_WEEK]) == 0
    assert f"0 new, {n_images} already done" in capsys.readouterr().out
    assert ledger.count() == rows
    ledger.close()


@pytest.mark.prefect
def test_render_holds_the_machines_gpu_slot_when_the_limit_exists(prefect_harness):
    import socket

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from flows.weekly_batch import gpu_slot

    name = f"gpu-{socket.gethostname()}"
    assert gpu_slot().__class__.__name__ == "nullcontext"  # no limit: render without waiting
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        try:
            with gpu_slot():
                assert client.read_global_concurrency_limit_by_name(name).active_slots == 1
            assert client.read_global_concurrency_limit_by_name(name).active_slots == 0
        finally:
            client.delete_global_concurrency_limit_by_name(name)


@pytest.mark.prefect
def test_two_render_workers_split_the_images_with_one_ledger(prefect_harness, fake_llm, settings, two_post_brand):
    from flows.weekly_batch import weekly_batch_for

    summary = weekly_batch_for(render_workers=2)(str(two_post_brand), DEMO_WEEK, str(settings.out), render_workers=2)
    n_images = 2 * len(posts_in_week(load_brand(two_post_brand), DEMO_WEEK))
    assert summary["failures"] == [] and summary["counts"]["render"] == {"reused": n_images, "new": 0, "failed": 0}
    ledger = Ledger(settings.ledger_url)
    renders = [e.payload for e in ledger.events(kind="render.created")]
    workers = {r["worker"] for r in renders}
    assert len(renders) == n_images and len(workers) == 2, workers
    assert {w.rsplit(" ", 1)[-1] for w in workers} == {"1/2", "2/2"}
    pids = {w.split(":")[1].split(" ")[0] for w in workers}
    assert str(os.getpid()) not in pids  # rendered in the worker processes
    assert ledger.verify().ok and sum(e.kind == "provenance.signed" for e in ledger.events()) == n_images
    ledger.close()


def _render_events(url):
    ledger = Ledger(url)
    try:
        return {e.key: e for e in ledger.events(kind="render.created")}
    finally:
        ledger.close()


@pytest.mark.prefect
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_flow_killed_mid_render_resumes_without_redoing_anything(
    prefect_harness, fake_llm, isolated, backend, monkeypatch, two_post_brand, capsys
):
    from prefect.settings import PREFECT_API_URL

    if backend == "postgres":
        if not POSTGRES:
            pytest.skip("set ESTAMPILLE_TEST_POSTGRES_URL (see .ci/postgres.sh) for the PostgreSQL run")
        from sqlalchemy import create_engine

        from estampille.ledger.schema import metadata

        engine = create_engine(POSTGRES)
        metadata.drop_all(engine)
        engine.dispose()
        monkeypatch.setenv("ESTAMPILLE_LEDGER_URL", POSTGRES)
    url = os.environ.get("ESTAMPILLE_LEDGER_URL") or f"sqlite:///{isolated / 'out' / 'ledger.sqlite'}"
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}  # the session harness's server
    brand_file = two_post_brand / "brand.yaml"  # one image per pipeline call: the kill lands between two
    brand_file.write_text(
        brand_file.read_text(encoding="utf-8").replace("batch_size: 8", "batch_size: 1"), encoding="utf-8"
    )
    command = [sys.executable, "-m", "estampille.cli", "run", "--brand", str(two_post_brand), "--week", DEMO_WEEK]
    n_images = 2 * len(posts_in_week(load_brand(two_post_brand), DEMO_WEEK))

    flow_process = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        ledger_file = isolated / "out" / "ledger.sqlite"
        if (backend == "postgres" or ledger_file.exists()) and _render_events(url):
            break
        assert flow_process.poll() is None, "the flow ended before it could be killed"
        time.sleep(0.2)
    os.killpg(flow_process.pid, signal.SIGKILL)  # no cleanup, no finally blocks
    flow_process.wait()
    before = _render_events(url)
    assert 0 < len(before) < n_images
    run_dir = isolated / "out" / "brand" / DEMO_WEEK
    mtimes = {key: (run_dir / e.payload["file"]).stat().st_mtime_ns for key, e in before.items()}

    capsys.readouterr()
    assert main(command[3:]) == 0  # the same command again, in this process
    assert f"render: {n_images - len(before)} new, {len(before)} already done" in capsys.readouterr().out
    after = _render_events(url)
    assert len(after) == n_images  # nothing lost, no duplicate
    assert all(after[key].seq == event.seq for key, event in before.items())  # not redone
    assert all((run_dir / before[key].payload["file"]).stat().st_mtime_ns == mtime for key, mtime in mtimes.items())
    ledger = Ledger(url)
    assert ledger.verify().ok and sum(e.kind == "provenance.signed" for e in ledger.events()) == n_images
    ledger.close()


@pytest.mark.prefect
def test_a_bad_brand_file_fails_the_flow_run_with_one_line_and_no_traceback(
    prefect_harness, brand_copy, settings, capfd
):
    """What a deployment run does with bad input: the run ends Failed, its message names file and
    line, the log has that line and no traceback, and nothing was written."""
    from flows.weekly_batch import weekly_batch

    brand_file = brand_copy / "brand.yaml"
    brand_file.write_text(brand_file.read_text().replace("licence_policy: commercial", "licence_policy: [oops", 1))
    capfd.readouterr()
    state = weekly_batch(str(brand_copy), "2026-W50", str(settings.out), return_state=True)
    assert state.is_failed()
    assert state.message.startswith(f"{brand_file}, line ") and "invalid YAML" in state.message
    logged = capfd.readouterr()
    assert "Traceback" not in logged.out + logged.err
    assert not settings.out.exists() or not any(settings.out.iterdir())


class DroppingEndpoint:
    """An address where the text endpoint is down: connections are accepted and dropped unanswered
    (what a client sees of a crashed server behind its port), and counted."""

    def __init__(self):
        import socket
        import threading

        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.1)
        self.port, self.connections, self._open = self.socket.getsockname()[1], 0, True
        self._thread = threading.Thread(target=self._drop, daemon=True)
        self._thread.start()

    def _drop(self):
        while self._open:
            try:
                connection, _ = self.socket.accept()
            except OSError:  # the timeout: look at the flag again
                continue
            self.connections += 1
            connection.close()

    def close(self):
        self._open = False
        self._thread.join()
        self.socket.close()


async def _run_counts(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name.rsplit("-", 1)[0]: run.run_count for run in runs}


@pytest.mark.prefect
def test_text_stages_wait_for_an_endpoint_that_is_down_and_go_on_without_it(
    prefect_harness, two_post_brand, settings, monkeypatch
):
    """The retry policy: an endpoint down for every item stops the stage, Prefect retries it; back
    in time, the week completes with nothing failed; down for good, the items are recorded as
    failed after the last retry and the week still reaches the review page."""
    import threading

    from flows.weekly_batch import weekly_batch

    from .fake_openai import FakeOpenAI

    monkeypatch.setenv("ESTAMPILLE_LLM_RETRY_DELAYS", "1,1")
    monkeypatch.setenv("ESTAMPILLE_LLM_MODEL", "fake-chat")

    # Down for good: three attempts at the draft stage, then one pass that records each variant.
    down = DroppingEndpoint()
    monkeypatch.setenv("ESTAMPILLE_LLM_BASE_URL", f"http://127.0.0.1:{down.port}/v1")
    try:
        state = weekly_batch(str(two_post_brand), DEMO_WEEK, str(settings.out), return_state=True)
    finally:
        down.close()
    assert state.is_completed()
    summary = state.result()
    assert len(summary["failures"]) == 4 and all("cannot reach" in f for f in summary["failures"])
    assert (settings.out / "brand" / DEMO_WEEK / "review.html").is_file()
    counts = asyncio.run(_run_counts(state.state_details.flow_run_id))
    assert counts[DRAFT.task] == 3 and counts[f"{DRAFT.task}-record-failures"] == 1
    assert down.connections == 3 * 3 + 3  # each call: the client's own 1 + 2 tries; then not asked again
    events = Ledger(settings.ledger_url).events()
    assert sum(e.kind == "draft.failed" for e in events) == 4 and not any(e.kind == "draft.created" for e in events)

    # Down when the stage starts, back before its first retry: nothing fails, nothing is recorded twice.
    down = DroppingEndpoint()
    monkeypatch.setenv("ESTAMPILLE_LLM_BASE_URL", f"http://127.0.0.1:{down.port}/v1")
    revived = []

    def come_back():
        while down.connections < 3:  # the first attempt's call, with the client's retries
            time.sleep(0.02)
        down.close()
        revived.append(FakeOpenAI(port=down.port).start())

    watcher = threading.Thread(target=come_back, daemon=True)
    watcher.start()
    try:
        state = weekly_batch(str(two_post_brand), DEMO_WEEK, str(settings.out), return_state=True)
    finally:
        watcher.join(timeout=60)
        for server in revived:
            server.stop()
    assert state.is_completed()
    summary = state.result()
    assert summary["failures"] == [] and summary["counts"]["draft"] == {"reused": 0, "new": 4, "failed": 0}
    counts = asyncio.run(_run_counts(state.state_details.flow_run_id))
    assert counts[DRAFT.task] == 2 and f"{DRAFT.task}-record-failures" not in counts
    events = Ledger(settings.ledger_url).events()
    assert sum(e.kind == "draft.created" for e in events) == 4
    assert sum(e.kind == "provenance.signed" for e in events) == 4 and any(e.kind == "run.completed" for e in events)
