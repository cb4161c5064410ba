"""The weekly visual batch as a Prefect flow: one task per stage, in the order of the mission.

Tasks hold no logic: each calls one library stage (estampille.stages). Idempotency lives in
the ledger, not in Prefect's cache, so results are not cached or persisted here.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from estampille import stages
from estampille.batch import finish, open_batch
from estampille.brand import iso_week
from estampille.settings import Settings

stage = task(cache_policy=NO_CACHE, persist_result=False)

open_batch_task = stage(open_batch, name="open-batch")
plan = stage(stages.plan_slots, name="plan-slots")
draft = stage(stages.draft_texts, name="draft-texts", retries=1, retry_delay_seconds=5)
write_prompts = stage(stages.write_image_prompts, name="write-image-prompts", retries=1, retry_delay_seconds=5)
render = stage(stages.render_images, name="render-images")
check = stage(stages.check_lookalikes, name="check-lookalikes")
sign = stage(stages.record_provenance, name="record-provenance")
review = stage(stages.write_review, name="write-review-page")
close = stage(finish, name="finish")


@flow(name="weekly-visual-batch", persist_result=False, log_prints=True)
def weekly_batch(brand: str, week: str | None = None, out: str | None = None) -> dict:
    """Draft, prompt, render, check, sign and lay out one brand's week (default: this week in Paris)."""
    week = week or iso_week(dt.datetime.now(ZoneInfo("Europe/Paris")).date())
    settings = Settings.from_env(out=out)
    batch = open_batch_task(brand, week, settings)
    slots = plan(batch)
    drafts = draft(batch, slots)
    prompts = write_prompts(batch, slots, drafts)
    renders = render(batch, prompts)
    checks = check(batch, renders)
    provenance = sign(batch, renders)
    review(batch, slots, drafts, prompts, renders, checks, provenance)
    return close(batch)
