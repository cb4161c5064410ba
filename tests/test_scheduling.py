"""Scheduling for real: `prefect deploy --all` against a real Prefect server makes the server
create the Monday 07:00 Paris runs, a real process worker runs a scheduled run for the week of
its scheduled time, and `estampille schedule` serves the flow with the brand and a Paris cron.

These are the slowest tests of the suite (a worker starts a flow-run process): one worker run."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from estampille.ledger import Ledger

from .conftest import DEMO_BRAND, REPO

PARIS = ZoneInfo("Europe/Paris")
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.prefect


def _cli(*args: str, cwd: Path = REPO, env: dict | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=cwd,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


async def _scheduled_runs(deployment_name: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    async with get_client() as client:
        deployment = await client.read_deployment_by_name(deployment_name)
        runs = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )
        return deployment, runs


def _wait_for_scheduled_runs(deployment_name: str, timeout: float = 90):
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    while True:
        try:
            deployment, runs = asyncio.run(_scheduled_runs(deployment_name))
            if runs:
                return deployment, runs
        except ObjectNotFound:  # not deployed yet
            pass
        assert time.monotonic() < deadline, f"no scheduled run of {deployment_name} within {timeout} s"
        time.sleep(1)


def _next_monday_7am_paris(now: dt.datetime) -> dt.datetime:
    local = now.astimezone(PARIS)
    day = local.date() + dt.timedelta(days=(7 - local.weekday()) % 7)
    candidate = dt.datetime.combine(day, dt.time(7), PARIS)
    return candidate if candidate > local else candidate + dt.timedelta(days=7)


async def _clear_scheduled_runs_except(keep: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            )
        )
        for run in runs:
            if str(run.id) != keep:
                await client.delete_flow_run(run.id)


async def _run_and_artifacts(run_id: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
        return run, {a.key: a for a in artifacts}


async def _create_scheduled_run(deployment_id, when: dt.datetime) -> str:
    """A run scheduled for `when`, started now if that is still to come (as "run now" on a
    scheduled run does): its expected start time, which makes the week, stays `when`."""
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    async with get_client() as client:
        run = await client.create_flow_run_from_deployment(deployment_id, state=Scheduled(scheduled_time=when))
        now = dt.datetime.now(dt.UTC)
        if when > now:
            await client.set_flow_run_state(run.id, Scheduled(scheduled_time=now), force=True)
        assert (await client.read_flow_run(run.id)).expected_start_time == when
        return str(run.id)


def test_deployed_schedules_fire_and_a_worker_makes_the_week_of_the_scheduled_time(prefect_server, fake_llm, isolated):
    _cli("prefect", "work-pool", "create", "estampille", "--type", "process", "--overwrite")
    _cli("prefect", "--no-prompt", "deploy", "--all")

    # The server's scheduler creates the runs: next Monday 07:00 in Paris, with the brand.
    weekly, runs = _wait_for_scheduled_runs("weekly-visual-batch/weekly-visual-batch")
    now = dt.datetime.now(dt.UTC)
    first = runs[0].expected_start_time
    assert first.astimezone(PARIS) == _next_monday_7am_paris(now), first
    assert runs[0].parameters["brand"] == "brand_assets/demo"
    assert weekly.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
    _, nightly = _wait_for_scheduled_runs("competitor-index-refresh/competitor-index-refresh")
    assert (nightly[0].expected_start_time.astimezone(PARIS).hour, nightly[0].expected_start_time.minute) == (2, 30)
    listed = _cli("prefect", "flow-run", "ls", "--state", "Scheduled", "--limit", "50").stdout
    assert "weekly-visual-b" in listed
    log = prefect_server.log_text()
    assert "Can't evaluate bulk DML" not in log and "Traceback" not in log, log[-3000:]

    # A run scheduled for Monday 2026-12-07 07:00 Paris, run by a real process worker started in
    # another folder: it makes 2026-W50 (the recurring posts' week), whatever today's date.
    monday = dt.datetime(2026, 12, 7, 7, 0, tzinfo=PARIS)
    run_id = asyncio.run(_create_scheduled_run(weekly.id, monday))
    asyncio.run(_clear_scheduled_runs_except(run_id))  # nothing else may be due for --run-once
    worker_dir = isolated / "worker"
    worker_dir.mkdir()
    _cli("prefect", "worker", "start", "--pool", "estampille", "--run-once", cwd=worker_dir, timeout=600)
    run, artifacts = asyncio.run(_run_and_artifacts(run_id))
    assert run.state.is_completed(), run.state
    assert {"render-progress", "weekly-batch-summary", "items-by-stage"} <= set(artifacts)
    assert "2026-W50" in artifacts["weekly-batch-summary"].data
    run_dir = isolated / "out" / "demo" / "2026-W50"
    assert (run_dir / "review.html").is_file()
    ledger = Ledger(f"sqlite:///{isolated / 'out' / 'ledger.sqlite'}")
    started = [e for e in ledger.events(kind="run.started")]
    assert [e.week for e in started] == ["2026-W50"]
    assert started[0].payload["posts"] == ["pain-de-la-semaine", "offre-du-vendredi"]
    assert sum(e.kind == "provenance.signed" for e in ledger.events()) == 4  # 2 posts x 2 variants
    assert ledger.verify().ok
    ledger.close()


def test_estampille_schedule_serves_the_weekly_flow_for_the_brand_on_paris_time(prefect_server, isolated):
    server = subprocess.Popen(
        [str(BIN / "estampille"), "schedule", "--brand", str(DEMO_BRAND), "--name", "weekly-test"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deployment, runs = _wait_for_scheduled_runs("weekly-visual-batch/weekly-test", timeout=120)
        schedule = deployment.schedules[0].schedule
        assert (schedule.cron, schedule.timezone) == ("0 7 * * 1", "Europe/Paris")
        assert deployment.parameters == {"brand": str(DEMO_BRAND.resolve())}
        assert runs[0].expected_start_time.astimezone(PARIS) == _next_monday_7am_paris(dt.datetime.now(dt.UTC))
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def test_schedule_without_a_server_says_how_to_start_one(isolated):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(isolated / "prefect-home")
    done = subprocess.run(
        [str(BIN / "estampille"), "schedule", "--brand", str(DEMO_BRAND)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "prefect server start" in done.stderr and "PREFECT_API_URL" in done.stderr
    assert "Traceback" not in done.stderr
