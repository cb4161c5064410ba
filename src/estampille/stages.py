"""The weekly batch's stages as plain functions: values in, values out, ledger as memory.

`STAGES`, at the end, declares them once, in the mission's order: flows/weekly_batch.py makes each
a Prefect task; `run_batch` runs them without Prefect. Each stage loops over its items itself
(one task per stage, not per item).
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable
from functools import partial
from pathlib import Path

from PIL import Image

from .background import InOrder
from .batch import Batch, finish, open_batch
from .brand import posts_in_week
from .errors import EstampilleError, LLMError, LLMUnavailableError, LookalikeError
from .keys import check_key, derived_seed, failed_key, prompt_key, render_key, sign_key, slot_id
from .lookalike import describe
from .lookalike.brand_index import refresh_brand_index
from .lookalike.engine import Found, calibrated, find_lookalikes, verify_thresholds
from .lookalike.evidence import side_by_side
from .lookalike.feature_index import set_search_threads
from .lookalike.fingerprint import fingerprints
from .paths import file_sha256, inside, lookalike_index_folder, run_folder
from .pipeline import Stage, WeekResults, check_declaration
from .provenance.c2pa_manifest import ManifestSigner
from .provenance.identity import from_settings as identity_from_settings
from .provenance.sign import sign_render
from .provenance.soft_binding import watermark_note
from .records import Draft, ImagePrompt, Kind, LookalikeCheck, Provenance, Render, Slot
from .render.renderer import LoadedRenderer, Rendered, Renderer, RenderJob
from .review.static_page import write_review_page
from .review.week_view import load_run
from .settings import Settings
from .text import drafting, image_prompts, templates


def plan_slots(batch: Batch) -> list[Slot]:
    """One slot per calendar post in the week."""
    return [
        Slot(slot_id=slot_id(batch.week, post.id), brand=batch.slug, week=batch.week, post=post)
        for post in posts_in_week(batch.bundle, batch.week)
    ]


def draft_texts(batch: Batch, slots: list[Slot]) -> list[Draft]:
    """`text.variants` drafts per slot, each unlike the slot's others; an LLM failure costs
    that variant only (recorded as `draft.failed`, retried by the next run)."""
    drafts = []
    brand_dir = batch.bundle.folder
    for slot in slots:
        template_version = templates.version(*drafting.TEMPLATES, language=slot.post.language, brand_dir=brand_dir)
        captions: list[str] = []
        for variant in range(batch.brand.text.variants):
            key = drafting.draft_key(batch.bundle.version, slot.slot_id, variant, batch.chat, template_version)
            draft = batch.record(
                DRAFT,
                key,
                slot.slot_id,
                partial(
                    drafting.write_draft,
                    batch.chat,
                    batch.brand,
                    slot,
                    variant,
                    batch.guardrails,
                    key,
                    others=captions,
                    brand_dir=brand_dir,
                ),
            )
            if draft:
                drafts.append(draft)
                captions.append(draft.caption)
    low = [d for d in drafts if d.quality and not d.quality["passed"]]
    if low:
        batch.notes.append(
            f"{len(low)} of {len(drafts)} text variants failed the language-quality gate "
            "(flagged LOW QUALITY on the review page, with the reasons)"
        )
    return drafts


def write_image_prompts(batch: Batch, slots: list[Slot], drafts: list[Draft]) -> list[ImagePrompt]:
    """One image prompt per draft, through the guardrails."""
    by_id = {s.slot_id: s for s in slots}
    prompts = []
    template_version = templates.version(*image_prompts.TEMPLATES, brand_dir=batch.bundle.folder)
    for draft in drafts:
        slot = by_id[draft.slot_id]
        key = prompt_key(
            draft.draft_id,
            batch.bundle.version,
            batch.guardrails.version,
            batch.chat.describe(),
            template_version,
            image_prompts.PROMPT_MAX_TOKENS,
        )
        prompt = batch.record(
            PROMPT,
            key,
            draft.slot_id,
            partial(
                image_prompts.write_image_prompt,
                batch.chat,
                batch.brand,
                slot,
                draft,
                batch.guardrails,
                key,
                brand_dir=batch.bundle.folder,
            ),
        )
        if prompt:
            prompts.append(prompt)
    return prompts


def render_images(
    batch: Batch,
    prompts: list[ImagePrompt],
    progress: Callable[[int, int], None] | None = None,
    shard: tuple[int, int] = (0, 1),
) -> list[Render]:
    """`images_per_variant` renders per prompt; the model is loaded once, only if needed.
    An image that cannot be rendered (out of memory even alone) fails alone. `progress(done,
    total)` is called as images are recorded (the flow turns it into a Prefect artifact).
    With `shard=(i, n)`, this process renders only its share of the jobs (every n-th, from the
    i-th, on GPU i): n workers split a batch between them, and the ledger keeps one chain for all."""
    settings, plan = batch.brand.render, batch.plan
    weights = batch.renderer.weights_id()
    post_of = {slot_id(batch.week, p.id): p for p in posts_in_week(batch.bundle, batch.week)}
    planned: list[tuple[ImagePrompt, RenderJob]] = []
    for prompt in prompts:
        post = post_of[prompt.slot_id]
        reference = batch.bundle.folder / post.reference_image if post.reference_image else None
        reference_sha = file_sha256(reference) if reference else None
        negative = prompt.negative_prompt if plan.negative_prompt else ""
        for n in range(settings.images_per_variant):
            seed = derived_seed(prompt.prompt_id, n)
            key = render_key(
                prompt.prompt_id,
                n,
                batch.model.id,
                weights,
                plan.steps,
                plan.guidance,
                plan.width,
                plan.height,
                settings.scheduler,
                reference_sha,
                post.strength if reference else None,
                *plan.key_extras(),
            )
            planned.append(
                (
                    prompt,
                    RenderJob(
                        key=key,
                        prompt=prompt.prompt,
                        negative_prompt=negative,
                        seed=seed,
                        steps=plan.steps,
                        guidance=plan.guidance,
                        width=plan.width,
                        height=plan.height,
                        reference=reference,
                        strength=post.strength,
                        true_cfg_scale=plan.true_cfg_scale,
                        max_sequence_length=plan.max_sequence_length,
                    ),
                )
            )
    done: dict[str, Render] = {}
    fresh: list[tuple[ImagePrompt, RenderJob]] = []
    lost: dict[int, list[tuple[ImagePrompt, RenderJob]]] = {}  # recorded batch size -> jobs to re-create
    index, shards = shard
    for position, (prompt, job) in enumerate(planned):
        event = batch.ledger.get(job.key)
        if event is None:
            if position % shards == index:  # every worker plans the same list: an even split
                fresh.append((prompt, job))
        elif inside(batch.run_dir, (recorded := Render.of(event)).file).is_file():
            done[job.key] = recorded
            batch.count(RENDER.name).reused += 1
        else:
            lost.setdefault(recorded.batch_size, []).append(
                (prompt, dataclasses.replace(job, batch_index=recorded.batch_index))
            )
    total = len(planned)
    if progress:
        progress(len(done), total)
    if fresh or lost:
        loaded = batch.renderer.load(gpu=index)
        worker = f"{socket.gethostname()}:{os.getpid()}" + (f" shard {index + 1}/{shards}" if shards > 1 else "")
        environment = loaded.environment()
        passes = [(fresh, settings.batch_size, False)] + [(jobs, size, True) for size, jobs in lost.items()]
        (batch.run_dir / "renders").mkdir(exist_ok=True)
        # PNG, SHA-256 and fingerprints of one batch are made while the GPU renders the next (inline
        # on CPU); records are appended here, in render order.
        with InOrder[tuple[ImagePrompt, Rendered]](
            threaded=loaded.device != "cpu", name="render-bookkeeping"
        ) as saving:

            def record_saved(wait: bool = False) -> None:
                for (prompt, result), saved in saving.finished(wait):
                    done[result.job.key] = _store_render(batch, prompt, result, saved, loaded, environment, worker)
                    if progress:
                        progress(len(done), total)

            for todo, size, pad in passes:
                prompt_of = {job.key: prompt for prompt, job in todo}
                for result in loaded.render([job for _, job in todo], size, pad=pad):
                    prompt = prompt_of[result.job.key]
                    if result.image is None:
                        batch.count(RENDER.name).failed += 1
                        batch.failures.append(f"{RENDER.name} {prompt.slot_id} {result.job.key}: {result.error}")
                        batch.append(
                            RENDER.failed_kind(),
                            failed_key(result.job.key),
                            prompt.slot_id,
                            {"image_id": result.job.key, "error": result.error},
                        )
                        continue
                    saving.submit((prompt, result), _save_png, batch.run_dir, result)
                    record_saved()
            record_saved(wait=True)
    return [done[job.key] for _, job in planned if job.key in done]


def _save_png(run_dir: Path, result: Rendered) -> tuple[Path, str, dict[str, str]]:
    """The per-image work that needs no ledger: file, SHA-256, perceptual fingerprints."""
    file = Path("renders") / f"{result.job.key}.png"
    image = result.image
    assert image is not None, "only rendered images are saved"
    image.save(run_dir / file, "PNG")
    return file, file_sha256(run_dir / file), fingerprints(image)


def _store_render(
    batch: Batch,
    prompt: ImagePrompt,
    result: Rendered,
    saved: tuple[Path, str, dict[str, str]],
    loaded: LoadedRenderer,
    environment: dict,
    worker: str,
) -> Render:
    """Record a saved PNG; a re-created image must match its record to the byte."""
    job = result.job
    file, digest, image_fingerprints = saved
    event = batch.ledger.get(job.key)
    if event is not None:
        recorded = Render.of(event)
        if recorded.sha256 != digest:
            raise EstampilleError(
                f"render {job.key} was re-created from its record but its pixels differ "
                "from the recorded ones (another device or library version?)"
            )
        batch.count(RENDER.name).reused += 1
        return recorded
    reference = None
    if job.reference is not None:
        reference = {
            "path": str(job.reference.resolve()),
            "sha256": file_sha256(job.reference),
            "strength": job.strength,
        }
    record = Render(
        image_id=job.key,
        prompt_id=prompt.prompt_id,
        draft_id=prompt.draft_id,
        slot_id=prompt.slot_id,
        file=str(file),
        sha256=digest,
        seed=job.seed,
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        steps=job.steps,
        guidance=job.guidance,
        width=job.width,
        height=job.height,
        batch_size=result.batch_size,
        batch_index=result.batch_index,
        mode="image-to-image" if reference else "text-to-image",
        reference=reference,
        model=loaded.describe(),
        scheduler=environment["scheduler"],
        versions=environment["versions"],
        device=loaded.device,
        options={**environment.get("options", {}), **job.family_arguments()},
        duration_s=round(result.seconds, 4),
        fingerprints=image_fingerprints,
        worker=worker,
    )
    batch.append(RENDER.created_kind(), job.key, prompt.slot_id, record.model_dump(mode="json"))
    batch.count(RENDER.name).new += 1
    return record


def check_lookalikes(batch: Batch, renders: list[Render]) -> list[LookalikeCheck]:
    """Compare every render with the brand's reference index (competitors' images, refreshed
    incrementally, and the brand's renders of other weeks); write side-by-side evidence for matches."""
    own = [
        (e.week, render.image_id, run_folder(batch.settings.out, batch.slug, e.week) / render.file)
        for e in batch.ledger.events(kind=Kind.RENDER_CREATED, brand=batch.slug)
        if e.week and e.week != batch.week
        for render in [Render.of(e)]
    ]
    store, skipped = refresh_brand_index(
        lookalike_index_folder(batch.settings.out, batch.slug), batch.bundle.competitor_folders(), own
    )
    for source, reason in skipped:
        batch.notes.append(f"reference image skipped: {source}: {reason}")
    set_search_threads(batch.settings.search_threads)
    thresholds = calibrated()
    limits = thresholds.as_dict()
    version = store.version()
    # Verification's thresholds are part of what decides a check: new ones check again.
    verifying = dataclasses.asdict(verify_thresholds())
    keys = {r.image_id: check_key(r.image_id, version, limits, verifying) for r in renders}
    todo = [r for r in renders if batch.ledger.get(keys[r.image_id]) is None]
    # Each render is searched, and so is the image an image-to-image render started from: a
    # competitor's picture used as "inspiration" is caught even when the model changed it a lot.
    sources = [(r, "render", inside(batch.run_dir, r.file)) for r in todo]
    sources += [
        (r, "image-to-image reference", Path(r.reference["path"]))
        for r in todo
        if r.reference and Path(r.reference["path"]).is_file()
    ]
    found, errors = find_lookalikes(store, [path for _, _, path in sources], thresholds)
    problems = {
        r.image_id: error for (r, via, _), error in zip(sources, errors, strict=True) if error and via == "render"
    }
    by_render: dict[str, list[tuple[str, Found]]] = {r.image_id: [] for r in todo}
    for match in found:
        render_record, via, _ = sources[match.source]
        by_render[render_record.image_id].append((via, match))
    checks = []
    for render_record in renders:

        def check(render_record=render_record) -> LookalikeCheck:
            if render_record.image_id in problems:
                raise LookalikeError(
                    f"render {render_record.image_id} cannot be read: {problems[render_record.image_id]}"
                )
            matches = []
            for n, (via, found_match) in enumerate(by_render[render_record.image_id]):
                match = describe.as_record(found_match, via)
                matches.append(match)
                if Path(match.reference).is_file():
                    shown = Image.open(
                        inside(batch.run_dir, render_record.file)
                        if via == "render" or render_record.reference is None
                        else render_record.reference["path"]
                    )
                    side_by_side(
                        shown,
                        Image.open(match.reference),
                        describe.caption(match, found_match.hit.reasons),
                        batch.run_dir / "evidence" / f"{render_record.image_id}-{n}.png",
                        found_match.hit.region,
                    )
            blocking = any(m.verdict == "lookalike" for m in matches)
            return LookalikeCheck(
                image_id=render_record.image_id,
                verdict="lookalike" if blocking else "clear",
                matches=matches,
                thresholds=limits,
                index_size=store.count(),
            )

        checks.append(batch.record(CHECK, keys[render_record.image_id], render_record.slot_id, check))
    store.close()
    flagged = [c for c in checks if c and c.verdict == "lookalike"]
    if flagged:
        batch.notes.append(
            f"{len(flagged)} of {len(renders)} renders look like a reference image (evidence in "
            f"{batch.run_dir / 'evidence'}): they cannot be approved without an override"
        )
    similar = [c for c in checks if c and c.verdict == "clear" and c.matches]
    if similar:
        batch.notes.append(
            f"{len(similar)} of {len(renders)} renders share a composition with a reference image "
            "(shown on the review page for information; not a copy, nothing blocked)"
        )
    return [c for c in checks if c]


def record_provenance(batch: Batch, renders: list[Render]) -> list[Provenance]:
    """XMP first, then a signed C2PA manifest, then a JSON sidecar; read back to check."""
    identity = identity_from_settings(batch.settings)
    signer: ManifestSigner | None = None
    results = []
    for render_record in renders:
        generation = 1
        while True:  # a recorded signature whose file is gone is superseded, never overwritten
            key = sign_key(render_record.image_id, generation)
            event = batch.ledger.get(key)
            if event is None or _signed_file_intact(batch.run_dir, Provenance.of(event)):
                break
            generation += 1
        if event is not None:
            batch.count(SIGN.name).reused += 1
            results.append(Provenance.of(event))
            continue
        signer = signer or ManifestSigner(identity)
        record = sign_render(
            render_record,
            batch.run_dir,
            batch.brand.name,
            batch.week,
            batch.brand.rights,
            signer,
            identity,
            batch.brand.watermark,
        )
        batch.append(SIGN.created_kind(), key, render_record.slot_id, record.model_dump(mode="json"))
        batch.count(SIGN.name).new += 1
        results.append(record)
    if signer:
        signer.close()
    note = watermark_note(results)
    if note:
        batch.notes.append(note)
    return results


def _signed_file_intact(run_dir: Path, signed: Provenance) -> bool:
    path = inside(run_dir, signed.file)
    return path.is_file() and file_sha256(path) == signed.sha256


def write_review(batch: Batch) -> Path:
    """The week's offline review page, from what the ledger holds for it: the same view
    (`review.week_view`) the web page shows, so a reviewer sees one shape in both."""
    run = load_run(batch.ledger, batch.slug, batch.week, bundle=batch.bundle, run_dir=batch.run_dir)
    return write_review_page(batch.run_dir / "review.html", batch.brand.name, batch.week, run, batch.notes)


def render_shard(
    brand_dir: str | Path, week: str, settings: Settings, prompt_ids: list[str], shard: int, shards: int
) -> dict:
    """One render worker's share of the prompts the main flow recorded (`prompt_ids`, in its
    order): it opens its own ledger connection, loads the model once on its own GPU (number
    `shard`) and renders nothing else; drafting and prompting stay with the main flow."""
    batch = open_batch(brand_dir, week, settings)
    try:
        render_images(batch, recorded_prompts(batch, prompt_ids), shard=(shard, shards))
    finally:
        batch.ledger.close()
    return {
        "shard": shard,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        **vars(batch.count(RENDER.name)),
        "failures": batch.failures,
    }


def recorded_prompts(batch: Batch, prompt_ids: list[str]) -> list[ImagePrompt]:
    """The image prompts recorded under these ids; an id the ledger lacks is an error that names it."""
    prompts = []
    for prompt_id in prompt_ids:
        event = batch.ledger.get(prompt_id)
        if event is None or event.kind != Kind.PROMPT_CREATED or event.week != batch.week:
            raise EstampilleError(
                f"image prompt {prompt_id} is not recorded for {batch.slug} {batch.week} in "
                f"{batch.ledger.safe_url}: a render worker renders only prompts the batch wrote"
            )
        prompts.append(ImagePrompt.of(event))
    return prompts


def run_batch(brand_dir: str | Path, week: str, settings: Settings, renderer: Renderer | None = None) -> dict:
    """The whole weekly batch without Prefect: `STAGES` in order, as the flow runs them."""
    batch = open_batch(brand_dir, week, settings, renderer=renderer)
    made = WeekResults()
    for stage in STAGES:
        made.keep(stage, stage.run(batch, *made.inputs(stage)))
    return finish(batch)


# The weekly batch, in the mission's order. Each entry: the function, what it takes and gives
# (WeekResults fields), how its items are recorded, and what Prefect retries it on.
PLAN = Stage(name="plan", task="plan-slots", run=plan_slots, gives="slots")
DRAFT = Stage(
    name="draft",
    task="draft-texts",
    run=draft_texts,
    takes=("slots",),
    gives="drafts",
    result=Draft,
    created=Kind.DRAFT_CREATED,
    failed=Kind.DRAFT_FAILED,
    item_errors=(LLMError,),
    retry_on=(LLMUnavailableError,),
)
PROMPT = Stage(
    name="prompt",
    task="write-image-prompts",
    run=write_image_prompts,
    takes=("slots", "drafts"),
    gives="prompts",
    result=ImagePrompt,
    created=Kind.PROMPT_CREATED,
    failed=Kind.PROMPT_FAILED,
    item_errors=(LLMError,),
    retry_on=(LLMUnavailableError,),
)
RENDER = Stage(
    name="render",
    task="render-images",
    run=render_images,
    takes=("prompts",),
    gives="renders",
    result=Render,
    created=Kind.RENDER_CREATED,
    failed=Kind.RENDER_FAILED,
)
CHECK = Stage(
    name="check",
    task="check-lookalikes",
    run=check_lookalikes,
    takes=("renders",),
    gives="checks",
    result=LookalikeCheck,
    created=Kind.LOOKALIKE_CHECKED,
    failed=Kind.CHECK_FAILED,
    item_errors=(LookalikeError,),
)
SIGN = Stage(
    name="sign",
    task="record-provenance",
    run=record_provenance,
    takes=("renders",),
    gives="provenance",
    result=Provenance,
    created=Kind.PROVENANCE_SIGNED,
)  # a failed signature stops the run
REVIEW = Stage(name="review", task="write-review-page", run=write_review, gives="review_page")  # reads the ledger
STAGES: tuple[Stage, ...] = (PLAN, DRAFT, PROMPT, RENDER, CHECK, SIGN, REVIEW)
check_declaration(STAGES)
