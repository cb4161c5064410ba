"""The Prefect flow, in Prefect's local mode: one session-scoped harness for the whole suite."""

from __future__ import annotations

import asyncio

import pytest

from estampille.brand import load_brand, posts_in_week
from estampille.cli import main
from estampille.ledger import Ledger

from .conftest import DEMO_BRAND, DEMO_WEEK

STAGE_TASKS = {"open-batch", "plan-slots", "draft-texts", "write-image-prompts", "render-images",
               "check-lookalikes", "record-provenance", "write-review-page", "finish"}


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


async def _task_names(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name.rsplit("-", 1)[0] for run in runs if run.state and run.state.is_completed()}


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
    ledger = Ledger(settings.ledger_url)
    rows = ledger.count()
    assert ledger.verify().ok

    # The CLI's default engine is the same flow: a second run redoes nothing and adds no rows.
    assert main(["run", "--brand", str(DEMO_BRAND), "--week", DEMO_WEEK]) == 0
    assert f"0 new, {n_images} already done" in capsys.readouterr().out
    assert ledger.count() == rows
    ledger.close()
