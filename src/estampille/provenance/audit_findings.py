"""What an audit found, as named types rather than dicts read by key: the report's terminal
text, its HTML and CSV, the web audit page and `--json` all read these fields, so a misspelt
name is a type error, not an empty cell. `AuditReport.as_dict` (audit.py) turns them into the
JSON document: every field, `null` where unknown.

Built from the ledger's `records` models (audit.py): `OurImage` keeps the render and signature
records it was read from, so a field a stage adds to them can be shown by the report's
templates without a line here (they are left out of the JSON: the JSON says what the audit
concluded, not the whole ledger row).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..records import ImageRecord, Provenance, Render

# Fields that carry whole ledger records for the templates; `AuditReport.as_dict` leaves them out.
RECORD_FIELDS = frozenset({"render_record", "signed_record", "records"})


@dataclass
class Trace:
    """How an audited file was traced, and the ledger row it led to (`AuditReport.record`)."""

    found_by: str  # content hash, our C2PA manifest, XMP DocumentID, invisible watermark, perceptual hash, ...
    kind: str  # the row's event kind: render.created, provenance.signed, export.created, edit.imported
    ledger_row: int
    brand: str | None
    week: str | None
    slot: str | None
    image_id: str
    model: str | None
    reviewer: str | None = None  # who approved it, for an exported file
    editor: str | None = None  # who retouched it, for an imported retouch
    distances: dict[str, int] | None = None  # pHash and dHash distances, when traced by them
    region: dict[str, Any] | None = None  # the part of the render found, when traced by local features


@dataclass
class Candidate:
    """A render nearest by perceptual hash, listed when nothing was close enough to trace."""

    image_id: str
    brand: str | None
    week: str | None
    phash: int
    dhash: int
    thresholds: dict[str, int]  # the distances at or under which a file is traced


@dataclass
class WatermarkFound:
    """Our invisible watermark, read from the pixels (watermark.Detection, without its internals)."""

    image_id: str
    method: str
    version: int
    scale: float
    rotation: float
    mirrored: bool


@dataclass
class Conflict:
    """One field on which the file's layers (XMP, C2PA, ledger, sidecar) disagree."""

    field: str
    layers: dict[str, str]  # layer -> what it says


@dataclass
class ReviewFinding:
    decision: str = "pending"  # approved, rejected or pending
    reviewer: str | None = None
    decided_at: str | None = None
    lookalike_override: str | None = None  # why a flagged image was approved anyway


@dataclass
class IngredientMatch:
    source: str
    reference: str  # the matched reference's file name
    distances: dict[str, int]


@dataclass
class Ingredient:
    """The picture an image-to-image render started from, and what the lookalike check said of it."""

    title: str
    relationship: str
    sha256: str | None
    strength: float | None
    lookalike: str  # lookalike, clear or not checked
    matches: list[IngredientMatch] = field(default_factory=list)


@dataclass
class LookalikeFinding:
    verdict: str
    matches: int


@dataclass
class ExportFinding:
    file: str
    reviewer: str
    ledger_row: int


@dataclass
class RetouchFinding:
    editor: str
    source_name: str
    ledger_row: int


@dataclass
class OurImage:
    """What the ledger knows of one of our images, whichever file of it was audited (`AuditReport.ours`)."""

    image_id: str
    brand: str | None
    week: str | None
    model: str | None
    model_name: str | None
    revision: str | None
    weights_sha256: str | None
    pipeline: str | None
    licence: str | None
    commercial_use: Any
    test_model: bool | None
    mode: str
    seed: int
    signer: str | None  # of the latest signature
    digital_source_type: str | None
    expected_xmp: dict[str, Any] | None  # the XMP fields written when it was signed
    lookalike: LookalikeFinding | None
    ingredients: list[Ingredient]
    review: ReviewFinding
    exports: list[ExportFinding]
    edits: list[RetouchFinding]
    changed_since_signing: bool
    render_record: Render | None = field(default=None, repr=False)  # for templates; not in the JSON
    signed_record: Provenance | None = field(default=None, repr=False)  # the latest signature; not in the JSON
    # ledger kind -> the image's latest record of every per-image kind (records.IMAGE_RECORDS): a new
    # stage's record reaches the report's templates here, as `ours.records["<kind>"]`; not in the JSON
    records: dict[str, ImageRecord] = field(default_factory=dict, repr=False)
