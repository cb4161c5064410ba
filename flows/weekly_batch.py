"""The weekly visual batch as a Prefect flow: one task per stage, in the order of the mission.

The stages, their order and which ones Prefect retries are declared once, in
`estampille.stages.STAGES` (plan slots, draft texts, write image prompts, render images, check
lookalikes, record provenance, write the review page); this file makes each a task. Tasks hold
no logic: each calls one library stage. Idempotency lives in the ledger, not in Prefect's cache:
every unit of work is keyed by its inputs there, so a rerun of a crashed flow skips what finished
even across Prefect servers. Prefect adds retries where the network can fail (the stages with a
`retry_on`, the text stages: see `retried_stage`), a per-machine GPU concurrency limit on
rendering, and artifacts: render progress, a summary and a table of items by stage.

Three layers retry the text model, each for its own kind of failure: the openai client (two
quick retries of one call: a dropped connection, one 429 or 503), the drafting loop (an answer
that is junk, too long or too like another: a new seed), and Prefect (the endpoint is down for
every item: the whole stage, after 10, 20 and 40 s).
"""

from __future__ import annotations

import contextlib
import socket

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.states import Failed

from estampille import stages
from estampille.batch import check_inputs, finish, open_batch
from estampille.errors import EstampilleError
from estampille.pipeline import Stage, WeekResults, retried_errors
from estampille.settings import Settings

stage = task(cache_policy=NO_CACHE, persist_result=False)
open_batch_task = stage(open_batch, name="open-batch")
close = stage(finish, name="finish")


def gpu_slot():
    """One render at a time per GPU machine, when the operator created the limit
    (`prefect gcl create gpu-<hostname> --limit 1`, README); no limit, no waiting and no warning."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    name = f"gpu-{socket.gethostname()}"
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            return contextlib.nullcontext()
    return concurrency(name, occupy=1)


@task(name=stages.RENDER.task, cache_policy=NO_CACHE, persist_result=False)
def render(batch, prompts):
    """The render stage with a progress artifact, holding the machine's GPU slot."""
    artifact = create_progress_artifact(0.0, key="render-progress", description="Images rendered and recorded")
    shown = [0.0]

    def progress(done: int, total: int) -> None:
        # Each update is an API call (~10 ms): report in steps of 5%, not per image.
        percent = 100.0 * done / max(total, 1)
        if percent - shown[0] >= 5 or (percent == 100.0 and shown[0] < 100.0):
            update_progress_artifact(artifact, percent)
            shown[0] = percent

    with gpu_slot():
        return stages.render_images(batch, prompts, progress)


@task(name="render-shard", cache_policy=NO_CACHE, persist_result=False)
def render_shard(brand: str, week: str, out: str, prompt_ids: list[str], shard: int, shards: int) -> dict:
    """One GPU worker's share of the renders (runs in its own process under a Dask task runner)."""
    return stages.render_shard(brand, week, Settings.from_env(out=out), prompt_ids, shard, shards)


def retry_condition(step: Stage):
    """Retry a stage only on its `retry_on` errors (an endpoint that did not answer); a bug or a bad
    input fails at once."""

    def retry_when(task, task_run, state) -> bool:
        return isinstance(state.result(raise_on_failure=False), step.retry_on)

    return retry_when


def task_for(step: Stage):
    """The Prefect task of a declared stage; render has its own (progress artifact, GPU slot)."""
    if step is stages.RENDER:
        return render
    if step.retry_on:
        return task(
            step.run,
            name=step.task,
            cache_policy=NO_CACHE,
            persist_result=False,
            retry_condition_fn=retry_condition(step),
            retry_jitter_factor=0.5,
        )
    return stage(step.run, name=step.task)


TASKS = {step.name: task_for(step) for step in stages.STAGES}


def retried_stage(step: Stage, settings: Settings, batch, *args):
    """A stage that Prefect retries while its endpoint is down (each attempt's finished items
    are in the ledger, so a retry redoes none). Still down after the last retry, the stage runs
    once more recording each missing item as failed: the week goes on to review with what is
    done, and the next run drafts the rest."""
    stage_task, delays = TASKS[step.name], list(settings.llm_retry_delays)
    try:
        return stage_task.with_options(retries=len(delays), retry_delay_seconds=delays or 0)(batch, *args)
    except step.retry_on as exc:
        get_run_logger().warning(
            f"{stage_task.name}: {exc}, after {len(delays)} retries; recording the "
            "items still to do as failed (the next run does them)"
        )
        return stage_task.with_options(name=f"{stage_task.name}-record-failures", retries=0)(
            batch.recording_every_failure(), *args
        )


def run_stage(step: Stage, settings: Settings, batch, made: WeekResults):
    if step.retry_on:
        return retried_stage(step, settings, batch, *made.inputs(step))
    return TASKS[step.name](batch, *made.inputs(step))


def split_renders(brand: str, week: str, settings: Settings, prompts, render_workers: int) -> None:
    """The render workers' shares, each in its own process under the Dask task runner; the render
    stage that follows collects them (and renders whatever a failed worker left)."""
    prompt_ids = [p.prompt_id for p in prompts]
    shares = [
        render_shard.submit(brand, week, str(settings.out), prompt_ids, i, render_workers)
        for i in range(render_workers)
    ]
    for share in shares:
        share.wait()


def report(batch_name: str, week: str, summary: dict) -> None:
    rows = [
        {"stage": name, "new": c["new"], "already done": c["reused"], "failed": c["failed"]}
        for name, c in summary["counts"].items()
    ]
    create_table_artifact(rows, key="items-by-stage", description=f"{batch_name} {week}")
    failures = "".join(f"\n- {f}" for f in summary["failures"]) or " none"
    create_markdown_artifact(
        f"# {batch_name} — {week}\n\nReview page: `{summary['review_page']}`\n\n"
        f"Ledger: `{summary['ledger']}`\n\nFailures:{failures}\n\n"
        + "".join(f"> {note}\n\n" for note in summary["notes"]),
        key="weekly-batch-summary",
    )


@flow(name="weekly-visual-batch", persist_result=False, log_prints=True)
def weekly_batch(brand: str, week: str | None = None, out: str | None = None, render_workers: int = 1) -> dict:
    """Draft, prompt, render, check, sign and lay out one brand's week (default: the week of the
    run's scheduled time in the brand's timezone).

    With `render_workers` > 1 and a Dask task runner (one worker process per GPU), the renders are
    split between the workers; the render stage that follows only collects them (and renders
    whatever a failed worker left)."""
    from prefect.runtime import flow_run

    settings = Settings.from_env(out=out)
    try:
        # Without a week, the one of the run's *scheduled* start on the brand's clock: a Monday run
        # that starts late, or is retried on Tuesday, still makes the week it was scheduled for.
        week = check_inputs(brand, week, settings, when=flow_run.scheduled_start_time).week
    except EstampilleError as exc:
        # Bad input (brand file, week, model, licence) is the user's to fix: one line in the
        # run's log and a Failed state that names it, not a traceback of Prefect's.
        get_run_logger().error(str(exc))
        return Failed(message=str(exc), data=exc)
    batch = open_batch_task(brand, week, settings, stop_on=retried_errors(stages.STAGES))
    made = WeekResults()
    for step in stages.STAGES:  # plan, draft, prompt, render, check, sign, review
        if step is stages.RENDER and render_workers > 1:
            split_renders(brand, week, settings, made.prompts, render_workers)
        made.keep(step, run_stage(step, settings, batch, made))
    summary = close(batch)
    report(batch.brand.name, week, summary)
    return summary


def weekly_batch_for(render_workers: int = 1, dask_address: str | None = None):
    """The flow with the task runner its render workers need: a local Dask cluster of one worker
    process per GPU, or an existing Dask scheduler; the plain flow otherwise."""
    if render_workers <= 1 and not dask_address:
        return weekly_batch
    from prefect_dask import DaskTaskRunner

    runner = (
        DaskTaskRunner(address=dask_address)
        if dask_address
        else DaskTaskRunner(cluster_kwargs={"n_workers": render_workers, "processes": True, "threads_per_worker": 1})
    )
    return weekly_batch.with_options(task_runner=runner)


def serve_weekly(bundle, cron: str, timezone: str, name: str) -> None:
    """Serve the weekly flow on `cron` in `timezone` with the brand as parameter, from this
    process, against the configured Prefect server (Prefect will not schedule on its ephemeral
    one). Blocks until interrupted; each scheduled run makes the week of its scheduled time."""
    import httpx
    from prefect.schedules import Cron
    from prefect.settings import get_current_settings

    from estampille.errors import ConfigError, SetupError

    url = get_current_settings().api.url
    if not url:
        raise SetupError(
            "scheduling needs a Prefect server: start one with `.venv/bin/prefect server start` "
            "and set PREFECT_API_URL=http://127.0.0.1:4200/api (Prefect does not schedule runs "
            "on its temporary local server)"
        )
    try:
        schedule = Cron(cron, timezone=timezone)
    except ValueError as exc:
        raise ConfigError(f"--cron {cron!r} in {timezone}: {exc}") from None
    try:
        httpx.get(f"{url.rstrip('/')}/health", timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        raise SetupError(f"no Prefect server answers at {url} ({exc}): start it, or fix PREFECT_API_URL") from None
    weekly_batch.serve(name=name, schedules=[schedule], parameters={"brand": str(bundle.folder.resolve())})
