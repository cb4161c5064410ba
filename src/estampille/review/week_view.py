"""One week's review view, read from the ledger: its slots, each slot's text variants, each
variant's images, with every item's state, check, signed file and exports. The static review page
written at the end of a batch and the web page render this same model, so a field shown to
reviewers is added once (here) and shown by both templates.

One read of a week's events builds it (no query per item): a run of 100 posts x 4 images stays
cheap; see bench/review_page.py.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import keys
from ..brand import BrandBundle, load_brand, posts_in_week
from ..errors import EstampilleError
from ..ledger import Ledger
from ..records import (
    Draft,
    Export,
    ImagePrompt,
    ImageRecord,
    ItemFailure,
    LookalikeCheck,
    Provenance,
    Render,
    Retouch,
    ReviewDecision,
)
from .week import WeekState, state_of, text_after

QUALITY_MARKS = {"unknown": "misspelt or unknown word", "language": "another language", "truncated": "truncated ending"}


def marked_segments(text: str, fact_spans: list[list], quality: dict | None = None) -> list[tuple[str, str | None]]:
    """`text` cut into (piece, why it is marked, or None) so the template can mark unsupported
    facts and the quality gate's findings (unknown words, another language, a cut ending) while
    still escaping every piece. Where two marks overlap, the first to start wins."""
    marks = [(start, end, f"unsupported {kind}: not in the brief or brand file") for start, end, kind in fact_spans]
    marks += [
        (start, end, QUALITY_MARKS[kind])
        for start, end, kind in (quality or {}).get("spans", [])
        if kind in QUALITY_MARKS
    ]
    titles: dict[tuple[int, int], list[str]] = {}
    for start, end, title in marks:  # one mark per stretch, naming every reason it has
        titles.setdefault((start, end), []).append(title)
    pieces, position = [], 0
    for (start, end), title in sorted((span, "; ".join(t)) for span, t in titles.items()):
        if start >= position:
            pieces += [(text[position:start], None), (text[start:end], title)]
            position = end
    return [p for p in pieces + [(text[position:], None)] if p[0]]


@dataclass
class ImageItem:
    render: Render
    decision: ReviewDecision | None
    check: LookalikeCheck | None
    current: Provenance | Retouch | None  # the signed file, or an imported retouch
    exports: list[Export]
    version: int = 0  # decisions recorded on it: a form made before the latest is stale
    evidence: list[str] = field(default_factory=list)  # side-by-side pictures of its matches, run-relative
    # ledger kind -> its latest record of every per-image kind (records.IMAGE_RECORDS): a new stage's
    # record reaches the templates here, as `item.records["<kind>"]`
    records: dict[str, ImageRecord] = field(default_factory=dict)

    @property
    def image_id(self) -> str:
        return self.render.image_id

    @property
    def state(self) -> str:
        return state_of(self.decision)

    @property
    def lookalike(self) -> bool:
        return bool(self.check and self.check.verdict == "lookalike")

    @property
    def file(self) -> str:
        """The file a person should look at: the signed (or retouched) one, else the raw render."""
        return (self.current or self.render).file

    @property
    def sha256(self) -> str:
        return (self.current or self.render).sha256


@dataclass
class DraftItem:
    draft: Draft
    decision: ReviewDecision | None
    prompt: ImagePrompt | None
    images: list[ImageItem]
    version: int = 0

    @property
    def draft_id(self) -> str:
        return self.draft.draft_id

    @property
    def state(self) -> str:
        return state_of(self.decision)

    @property
    def text(self) -> str:
        return text_after(self.draft, self.decision)

    @property
    def segments(self) -> list[tuple[str, str | None]]:
        if self.decision and self.decision.edit is not None:
            return [(self.text, None)]  # the reviewer rewrote it: the spans no longer apply
        return marked_segments(self.draft.text, self.draft.fact_spans, self.draft.quality)


@dataclass
class SlotView:
    slot_id: str
    post: Any | None  # the calendar post when the brand folder is at hand
    drafts: list[DraftItem]
    failures: list[ItemFailure]

    @property
    def post_id(self) -> str:
        return keys.post_id_of(self.slot_id)


@dataclass
class RunView:
    brand: str
    brand_name: str
    week: str
    slots: list[SlotView]
    images: dict[str, ImageItem]
    history: list[dict[str, Any]]  # decisions, newest first
    counts: Counter
    bundle: BrandBundle | None


class RunNotFound(EstampilleError):
    """No run for that brand and week in the ledger."""


def find_bundle(brands_dir: Path | None, slug: str) -> BrandBundle | None:
    """The brand folder named like the run's brand, when it is there and still loads."""
    if brands_dir is None or not (brands_dir / slug).is_dir():
        return None
    try:
        return load_brand(brands_dir / slug)
    except EstampilleError:
        return None


def load_run(
    ledger: Ledger,
    brand: str,
    week: str,
    brands_dir: Path | None = None,
    bundle: BrandBundle | None = None,
    run_dir: Path | None = None,
) -> RunView:
    """The week as both review pages show it. `bundle`: the brand when the caller has it (else
    looked up in `brands_dir`); `run_dir`: the run's folder, to list each image's evidence files."""
    state = WeekState.load(ledger, brand, week)
    if state.started is None:
        raise RunNotFound(f"no run of brand '{brand}' for week {week} in the ledger")
    images = {
        image_id: ImageItem(
            render,
            state.decision(image_id),
            state.checks.get(image_id),
            state.current.get(image_id),
            state.exports.get(image_id, []),
            state.version(image_id),
            _evidence(run_dir, image_id),
            state.image_records.get(image_id, {}),
        )
        for image_id, render in state.renders.items()
    }
    by_draft: dict[str, list[ImageItem]] = {}
    for item in images.values():
        by_draft.setdefault(item.render.draft_id, []).append(item)
    bundle = bundle or find_bundle(brands_dir, brand)
    posts = {keys.slot_id(week, p.id): p for p in posts_in_week(bundle, week)} if bundle else {}
    drafts: dict[str, list[DraftItem]] = {}
    for draft_id, draft in state.drafts.items():
        drafts.setdefault(draft.slot_id, []).append(
            DraftItem(
                draft,
                state.decision(draft_id),
                state.prompts.get(draft_id),
                sorted(by_draft.get(draft_id, []), key=lambda i: i.render.seed),
                state.version(draft_id),
            )
        )
    slot_ids = [keys.slot_id(week, post_id) for post_id in state.post_ids()]
    slots = [
        SlotView(
            slot_id,
            posts.get(slot_id),
            sorted(drafts.get(slot_id, []), key=lambda d: d.draft.variant),
            state.draft_failures.get(slot_id, []),
        )
        for slot_id in slot_ids
    ]
    counts = Counter(item.state for item in images.values())
    counts["drafts"] = sum(len(s.drafts) for s in slots)
    counts["images"] = len(images)
    counts["lookalikes"] = sum(1 for i in images.values() if i.lookalike)
    return RunView(brand, state.started.brand or brand, week, slots, images, state.history(), counts, bundle)


def _evidence(run_dir: Path | None, image_id: str) -> list[str]:
    if run_dir is None:
        return []
    return sorted(str(p.relative_to(run_dir)) for p in (run_dir / "evidence").glob(f"{image_id}-*.png"))
