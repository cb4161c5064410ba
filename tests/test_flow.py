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

from .conftest import DEMO_BRAND, DEMO_WEEK

POSTGRES = os.environ.get("ESTAMPILLE_TEST_POSTGRES_URL")

STAGE_TASKS = {"open-batch", "plan-slots", "draft-texts", "write-image-prompts", "render-images",
               "check-lookalikes", "record-provenance", "write-review-page", "finish"}


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
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in found}


@pytest.mark.prefect
def test_weekly_flow_runs_every_stage_as_a_task_and_reruns_idempotently(prefect_harness, fake_llm, settings,
                                                                          capsys):
    from flows.weekly_batch import weekly_batch

    state = weekly_batch(str(DEMO_BRAND), DEMO_WEEK, str(settings.out), return_state=True)
    assert state.is_completed()
    summary = state.result()
    n_images = 2 * len(posts_in_week(load_brand(DEMO_BRAND), DEMO_WEEK))
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
    assert main(["run", "--brand", str(DEMO_BRAND), "--week", DEMO_WEEK]) == 0
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
    assert gpu_slot().__class__.__name__ == "nullcontext"       # no limit: render without waiting
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        try:
            with gpu_slot():
                assert client.read_global_concurrency_limit_by_name(name).active_slots == 1
            assert client.read_global_concurrency_limit_by_name(name).active_slots == 0
        finally:
            client.delete_global_concurrency_limit_by_name(name)


@pytest.mark.prefect
def test_two_render_workers_split_the_images_with_one_ledger(prefect_harness, fake_llm, settings):
    from flows.weekly_batch import weekly_batch_for

    summary = weekly_batch_for(render_workers=2)(str(DEMO_BRAND), DEMO_WEEK, str(settings.out), render_workers=2)
    n_images = 2 * len(posts_in_week(load_brand(DEMO_BRAND), DEMO_WEEK))
    assert summary["failures"] == [] and summary["counts"]["render"] == {"reused": n_images, "new": 0, "failed": 0}
    ledger = Ledger(settings.ledger_url)
    renders = [e.payload for e in ledger.events(kind="render.created")]
    workers = {r["worker"] for r in renders}
    assert len(renders) == n_images and len(workers) == 2, workers
    assert {w.rsplit(" ", 1)[-1] for w in workers} == {"1/2", "2/2"}
    pids = {w.split(":")[1].split(" ")[0] for w in workers}
    assert str(os.getpid()) not in pids                      # rendered in the worker processes
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
def test_flow_killed_mid_render_resumes_without_redoing_anything(prefect_harness, fake_llm, isolated, backend,
                                                                 monkeypatch):
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
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}   # the session harness's server
    command = [sys.executable, "-m", "estampille.cli", "run", "--brand", str(DEMO_BRAND), "--week", DEMO_WEEK]
    n_images = 2 * len(posts_in_week(load_brand(DEMO_BRAND), DEMO_WEEK))

    flow_process = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        ledger_file = isolated / "out" / "ledger.sqlite"
        if (backend == "postgres" or ledger_file.exists()) and _render_events(url):
            break
        assert flow_process.poll() is None, "the flow ended before it could be killed"
        time.sleep(0.2)
    os.killpg(flow_process.pid, signal.SIGKILL)              # no cleanup, no finally blocks
    flow_process.wait()
    before = _render_events(url)
    assert 0 < len(before) < n_images
    run_dir = isolated / "out" / "demo" / DEMO_WEEK
    mtimes = {key: (run_dir / e.payload["file"]).stat().st_mtime_ns for key, e in before.items()}

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"render: {n_images - len(before)} new, {len(before)} already done" in rerun.stdout
    after = _render_events(url)
    assert len(after) == n_images                            # nothing lost, no duplicate
    assert all(after[key].seq == event.seq for key, event in before.items())       # not redone
    assert all((run_dir / before[key].payload["file"]).stat().st_mtime_ns == mtime for key, mtime in mtimes.items())
    ledger = Ledger(url)
    assert ledger.verify().ok and sum(e.kind == "provenance.signed" for e in ledger.events()) == n_images
    ledger.close()


@pytest.mark.prefect
def test_a_bad_brand_file_fails_the_flow_run_with_one_line_and_no_traceback(prefect_harness, brand_copy, settings,
                                                                             capfd):
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
