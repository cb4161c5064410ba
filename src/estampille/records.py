"""What each stage produces. These are the payloads of ledger events, so they round-trip
through JSON: a rerun rebuilds them from the ledger instead of redoing the work."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal, Protocol, Self

from pydantic import BaseModel, ConfigDict

from .brand import Post


class Kind(StrEnum):
    """The kind of every ledger event (a str: the ledger and old rows hold the same text)."""

    RUN_STARTED = "run.started"
    RUN_COMPLETED = "run.completed"
    DRAFT_CREATED = "draft.created"
    DRAFT_FAILED = "draft.failed"
    PROMPT_CREATED = "prompt.created"
    PROMPT_FAILED = "prompt.failed"
    RENDER_CREATED = "render.created"
    RENDER_FAILED = "render.failed"
    LOOKALIKE_CHECKED = "lookalike.checked"
    CHECK_FAILED = "check.failed"
    PROVENANCE_SIGNED = "provenance.signed"
    REVIEW_APPROVED = "review.approved"
    REVIEW_REJECTED = "review.rejected"
    EDIT_IMPORTED = "edit.imported"
    EXPORT_CREATED = "export.created"
    NOTIFY_SENT = "notify.sent"  # the week-ready message reached a channel (notify.py)
    NOTIFY_FAILED = "notify.failed"  # it did not: recorded, the batch itself succeeded


class HasPayload(Protocol):
    @property
    def payload(self) -> dict[str, Any]: ...


class Record(BaseModel):
    """A ledger payload as a typed value. Fields added after a payload was first recorded carry
    defaults, so a week recorded by an older version still reads back (fields the model no longer
    names are ignored on reading)."""

    model_config = ConfigDict(frozen=True)

    @classmethod
    def of(cls, event: HasPayload) -> Self:
        """The payload of a ledger event (ledger.Event) read back as this record."""
        return cls.model_validate(event.payload)


class ItemFailure(Record):
    """A stage's item that failed (`draft.failed`, ...): why, and the endpoint calls it cost. Written by
    `Batch.record` under a fresh key, so the next run tries the item again."""

    error: str = ""
    error_type: str = ""
    calls: list[dict[str, Any]] = []


class RunStarted(Record):
    """The start of a weekly run: the brand's display name, the week and its posts (the run's
    settings recorded beside them are for the ledger's reader, not read back here)."""

    brand: str = ""  # "" in a row that did not record it: the brand folder's name is shown instead
    week: str = ""
    posts: list[str] = []


class Slot(Record):
    slot_id: str  # "<week>/<post id>"
    brand: str
    week: str
    post: Post


class Draft(Record):
    draft_id: str
    slot_id: str
    variant: int
    language: str
    locale: str = ""  # the first drafts (before locales) lack it
    audience: str | None = None
    platform: str
    caption: str
    hashtags: list[str]
    call_to_action: str
    alt_text: str
    text: str  # the post as published: caption, call to action, hashtags, disclosure
    flags: list[str]  # rule problems a reviewer must see; empty when clean
    fact_spans: list[list] = []  # [start, end, kind] of each unsupported fact in `text`
    quality: dict[str, Any] = {}  # the language-quality gate: passed, problems, scores, spans in `text`
    similarity: dict[str, Any] = {}
    llm: dict[str, Any]  # every call made for this variant (attempts), with host, tokens, latency


class ImagePrompt(Record):
    prompt_id: str
    draft_id: str
    slot_id: str
    prompt: str
    negative_prompt: str
    guardrails_version: str
    removed_terms: list[tuple[str, str]]
    llm: dict[str, Any]


class Render(Record):
    image_id: str
    prompt_id: str
    draft_id: str
    slot_id: str
    file: str  # raw render, relative to the run folder
    sha256: str
    seed: int
    prompt: str
    negative_prompt: str
    steps: int
    guidance: float
    width: int
    height: int
    batch_size: int  # images per pipeline call: on CPU, pixels depend on it (renderer.render)
    batch_index: int = 0  # the image's position in that call: pixels can depend on it too
    mode: Literal["text-to-image", "image-to-image"] = "text-to-image"
    reference: dict[str, Any] | None = None  # image-to-image input: path, sha256, strength
    model: dict[str, Any]  # id, revision, weights_sha256, pipeline_class, licence, commercial_use
    scheduler: dict[str, Any]
    versions: dict[str, str]
    device: str
    # family, dtype, speed options in use, family arguments (max_sequence_length, true_cfg_scale)
    options: dict[str, Any] = {}
    duration_s: float
    fingerprints: dict[str, str]  # perceptual hashes, for audits of stripped files
    worker: str = ""  # host:pid (and shard) of the process that rendered it


class Match(Record):
    source: str  # competitor name, or "own:<week>" for the brand's own past renders
    reference: str  # the matched image's path or image id
    distances: dict[str, int]
    # lookalike: blocks approval until overridden; similar: a similar composition, shown, never blocking
    verdict: Literal["lookalike", "near", "similar"]
    via: str = "render"  # or "image-to-image reference": the picture the render started from matched
    tier: str = "hash"  # which tier found it: hash, features, or hash+features
    region: dict[str, Any] | None = None  # feature tier: matched boxes on both images, inliers, scale, rotation
    # copy, derived (a part of one in the other), similar or unverified (lookalike/verify.py); None before it
    grade: str | None = None
    verification: dict[str, Any] | None = None  # agreement, textured blocks, placement, overlaps, reason


class LookalikeCheck(Record):
    image_id: str
    verdict: Literal["clear", "lookalike"]
    matches: list[Match]
    thresholds: dict[str, int]
    index_size: int


class Provenance(Record):
    image_id: str
    file: str  # signed image, relative to the run folder
    sidecar: str
    sha256: str
    digital_source_type: str
    c2pa_state: str  # validation state read back right after signing
    signer: str  # certificate subject, never key material
    prompt_disclosure: str = "full"
    prompt_salt: str | None = None  # for "hashed": sha256(salt + prompt) is in the manifest
    instance_id: str | None = None  # the manifest's and the XMP's xmpMM:InstanceID
    xmp: dict[str, Any] | None = None  # the XMP fields written, for audits that cross-check layers
    watermark: dict[str, Any] | None = None  # method, version, strength, payload; None: brand turned it off
    soft_bindings: list[dict[str, str]] = []  # C2PA soft bindings (alg, value): the resolver's keys


class ReviewDecision(Record):
    """A reviewer's decision (review.approved / review.rejected), written by review.decisions."""

    item_id: str
    item_kind: str = ""  # draft or image
    decision: str  # approved or rejected
    reviewer: str
    comment: str = ""
    decided_at: str
    lookalike_override: str | None = None  # why a flagged image was approved anyway
    edit: dict[str, str] | None = None  # a draft rewritten by the reviewer: before, after


class Export(Record):
    """An approved image signed again for publishing (export.created), written by review.export."""

    image_id: str
    file: str  # relative to the run folder
    sha256: str
    reviewer: str
    decided_at: str


class Retouch(Record):
    """A retouched image imported and signed (edit.imported), written by review.edits; it replaces
    the signed render as the image's current file."""

    image_id: str
    file: str  # relative to the run folder
    sha256: str
    editor: str
    source_name: str
    digital_source_type: str
    c2pa_state: str
    parent_sha256: str
    signer: str


# A record one stage makes per image (each names its image_id).
ImageRecord = Render | LookalikeCheck | Provenance | Retouch

# The per-image records both review pages (`ImageItem.records`) and the audit (`OurImage.records`)
# hold for each image, by ledger kind, the latest of each: a stage that records one item per image
# adds its kind here (and its model to `ImageRecord`), and its fields reach the pages' and the
# audit's templates with no other change to the week model or the audit.
IMAGE_RECORDS: dict[str, type[ImageRecord]] = {
    Kind.RENDER_CREATED: Render,
    Kind.LOOKALIKE_CHECKED: LookalikeCheck,
    Kind.PROVENANCE_SIGNED: Provenance,
    Kind.EDIT_IMPORTED: Retouch,
}
