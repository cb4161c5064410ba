"""One weekly batch for one brand: its context, and the idempotency every stage relies on.

Each unit of work (a draft, a prompt, a render, a check, a signature) has a key derived from
its inputs. Before doing the work, a stage looks the key up in the ledger: if it is there,
the recorded result is reused; if not, the work is done and recorded under that key. So a
repeated or crashed batch redoes nothing that finished, and adds no duplicate rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from . import __version__
from .brand import BrandBundle, load_brand, parse_week, posts_in_week, week_at
from .errors import LLMUnavailableError
from .keys import completed_key, failed_key, run_key
from .ledger import Ledger
from .paths import run_folder
from .pipeline import Stage
from .records import Kind, Record
from .render.families import RenderPlan, plan_render
from .render.registry import ResolvedModel, check_licence, load_registry, resolve_model, tiny_folder
from .render.renderer import DiffusersRenderer, Renderer
from .settings import Settings
from .text.guardrails import Guardrails, guardrails_for
from .text.llm import ChatModel, EmbeddedModel, chat_model_for, embedded_model_path

R = TypeVar("R", bound=Record)


@dataclass
class StageCount:
    reused: int = 0  # already in the ledger from an earlier run
    new: int = 0
    failed: int = 0


@dataclass
class Batch:
    """One brand's week while it runs: inputs checked once (brand, model, guardrails, text model),
    the ledger every stage reads and writes, and what the run tells people (counts, failures, notes)."""

    bundle: BrandBundle
    week: str
    settings: Settings
    ledger: Ledger
    run_dir: Path
    model: ResolvedModel
    guardrails: Guardrails
    run_key: str
    chat: ChatModel  # cheap to create; the embedded model loads on its first call
    renderer: Renderer  # the image model behind the render stage (diffusers by default)
    plan: RenderPlan  # steps, guidance, size and family arguments the renders use
    # Errors that stop a stage instead of costing one item: the Prefect flow sets the stages'
    # `retry_on` (an endpoint that is down for everyone is retried as a stage).
    stop_on: tuple[type[Exception], ...] = ()
    unavailable: dict[str, LLMUnavailableError] = field(default_factory=dict)  # stage -> first "down" error
    counts: dict[str, StageCount] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def brand(self):
        return self.bundle.brand

    @property
    def slug(self) -> str:
        return self.bundle.slug

    def count(self, stage: str) -> StageCount:
        return self.counts.setdefault(stage, StageCount())

    def record(self, stage: Stage, key: str, subject: str | None, make: Callable[[], R]) -> R | None:
        """Reuse the result recorded under `key`, or make it and record it as `stage.created`.

        An exception listed in `stage.item_errors` costs only this item: it is recorded as a
        `stage.failed` event (a fresh key, so the next run tries again) and None is returned,
        unless it is one of `stop_on`, which propagates (nothing is recorded for the item). Once
        the endpoint was unavailable in a stage, its later items are recorded as failed without
        asking it again (one wait for the client's retries, not one per item).
        When another process records the same key while this one works, the ledger keeps the
        first and this returns it, so every later step builds on what the ledger holds.
        """
        created, failed, read_back = stage.created_kind(), stage.failed_kind(), cast(type[R], stage.result)
        existing = self.ledger.get(key)
        if existing is not None:
            self.count(stage.name).reused += 1
            return read_back.model_validate(existing.payload)
        down = self.unavailable.get(stage.name)
        failures = stage.item_errors
        try:
            if down is not None and issubclass(LLMUnavailableError, failures):
                raise LLMUnavailableError(f"{down} (not asked again in this run)")
            result = make()
        except failures as exc:
            if isinstance(exc, self.stop_on):
                raise
            if isinstance(exc, LLMUnavailableError):
                self.unavailable.setdefault(stage.name, exc)
            self.count(stage.name).failed += 1
            self.failures.append(f"{stage.name} {subject}: {exc}")
            self.append(
                failed,
                failed_key(key),
                subject,
                {"error": str(exc), "error_type": type(exc).__name__, "calls": getattr(exc, "calls", [])},
            )
            return None
        event = self.append(created, key, subject, result.model_dump(mode="json"))
        if not event.created:  # another process recorded this key meanwhile: its result is the one
            self.count(stage.name).reused += 1
            return read_back.model_validate(event.payload)
        self.count(stage.name).new += 1
        return result

    def recording_every_failure(self) -> Batch:
        """This batch, sharing its ledger, counts, failures and notes, but with no `stop_on`: every
        item error is recorded as the item's failure. The last pass of a stage Prefect gave up retrying."""
        return dataclasses.replace(self, stop_on=())

    def append(self, kind: str, key: str, subject: str | None, payload: dict):
        return self.ledger.append(kind, key, payload, brand=self.slug, week=self.week, subject=subject)


@dataclass(frozen=True)
class BatchInputs:
    """A brand folder, week and model that passed every check, before anything is written."""

    bundle: BrandBundle
    week: str
    posts: list
    chat: ChatModel
    model: ResolvedModel
    plan: RenderPlan  # the render settings the model really takes (families.py)
    build_tiny: str | None = None  # family of a tiny test model open_batch must build first


def check_inputs(
    brand_dir: str | Path, week: str | None, settings: Settings, when: dt.datetime | None = None
) -> BatchInputs:
    """Validate brand, calendar, week, model and licence without writing anything, so a bad
    input stops in one line before Prefect (10-20 s to start) or any model loads. Without `week`,
    the week of `when` (default now) on the brand's clock."""
    bundle = load_brand(brand_dir)
    week = week or week_at(when or dt.datetime.now(dt.UTC), bundle.brand.timezone)
    parse_week(week)
    posts = posts_in_week(bundle, week)
    chat = chat_model_for(bundle.brand.text.llm, settings)
    if isinstance(chat, EmbeddedModel):
        embedded_model_path()  # installed, or the fix is named
    render_settings = bundle.brand.render
    registry = load_registry(settings.home)
    entry, build = registry.get(render_settings.model), None
    folder = tiny_folder(render_settings.model, settings.models_dir)
    if entry and entry.source == "tiny" and not folder.is_dir():
        build = entry.family  # open_batch builds it; its licence is ours
        model = ResolvedModel(id=render_settings.model, entry=entry, load_from=str(folder))
    else:
        model = resolve_model(render_settings.model, settings.models_dir, settings.home)
    check_licence(model, bundle.brand.licence_policy, render_settings.accepted_licences, registry)
    plan = plan_render(
        model,
        render_settings,
        bundle.brand.visual.negative_prompt,
        [(p.id, p.strength) for p in posts if p.reference_image],
    )
    return BatchInputs(bundle, week, posts, chat, model, plan, build)


def open_batch(
    brand_dir: str | Path,
    week: str,
    settings: Settings,
    renderer: Renderer | None = None,
    stop_on: tuple[type[Exception], ...] = (),
) -> Batch:
    """Validate everything first (brand, calendar, week, model, licence); only then write.
    `renderer` defaults to the brand's diffusers model; `stop_on`: see `Batch.stop_on`."""
    inputs = check_inputs(brand_dir, week, settings)
    bundle, posts, render_settings = inputs.bundle, inputs.posts, inputs.bundle.brand.render
    model, plan = inputs.model, inputs.plan
    if inputs.build_tiny:
        from .render.tiny import build_tiny_model

        build_tiny_model(Path(model.load_from), family=inputs.build_tiny)
    run_dir = run_folder(settings.out, bundle.slug, week)
    run_dir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(settings.ledger_url)
    chat = inputs.chat
    batch = Batch(
        bundle=bundle,
        week=week,
        settings=settings,
        ledger=ledger,
        run_dir=run_dir,
        model=model,
        guardrails=guardrails_for(bundle.brand),
        run_key="",
        chat=chat,
        stop_on=stop_on,
        plan=plan,
        renderer=renderer
        or DiffusersRenderer(
            model,
            settings.home / "weights-sha256.json",
            render_settings.scheduler,
            render_settings.cpu_offload,
            render_settings.attention_slicing,
            plan.speed,
        ),
    )
    config = {
        "brand_version": bundle.version,
        "llm": chat.describe(),
        "model": model.id,
        "render": render_settings.model_dump(),
        "render_plan": plan.record(),
        "estampille": __version__,
    }
    batch.run_key = run_key(bundle.slug, week, config)
    batch.append(
        Kind.RUN_STARTED,
        batch.run_key,
        None,
        {"brand": bundle.brand.name, "week": week, "posts": [p.id for p in posts], **config},
    )
    batch.notes.extend(f"Render setting not applied: {warning}" for warning in plan.warnings)
    if model.entry.test_model:
        batch.notes.append(
            f"Images were made by a tiny TEST model ({model.id}) with random weights: "
            "they are noise, for checking the pipeline only. Set render.model in "
            "brand.yaml to a real model for real visuals."
        )
    return batch


def finish(batch: Batch) -> dict:
    """Close the run: a `run.completed` event when nothing failed, and a summary for people."""
    if not batch.failures:
        batch.append(
            Kind.RUN_COMPLETED,
            completed_key(batch.run_key),
            None,
            {"counts": {k: vars(v) for k, v in batch.counts.items()}},
        )
    summary: dict[str, Any] = {
        "run_dir": str(batch.run_dir),
        "review_page": str(batch.run_dir / "review.html"),
        "counts": {k: vars(v) for k, v in batch.counts.items()},
        "failures": list(batch.failures),
        "notes": list(batch.notes),
        "ledger": batch.ledger.safe_url,
    }
    if batch.brand.notify is not None:  # the week-ready message: a failure is a note, never the batch's
        from .notify import describe, send_week_ready

        summary["notifications"] = send_week_ready(batch, summary)
        summary["notes"] += describe(summary["notifications"])
    batch.ledger.close()
    return summary
