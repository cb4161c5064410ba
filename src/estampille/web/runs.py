"""What the review pages show, read from the ledger: the runs, one run's slots with their text
and image variants and each item's state, one image with everything recorded about it.

One read of a week's events builds a whole run page (no query per item), so a run of
100 posts x 4 images stays cheap; see bench/review_page.py.
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
from ..review.static_page import marked_segments
from ..review.week import WeekState, state_of, text_after


@dataclass
class RunSummary:
    brand: str
    brand_name: str
    week: str
    posts: int
    counts: Counter = field(default_factory=Counter)   # drafts, images, pending, approved, rejected, ...
    completed: bool = False


def list_runs(ledger: Ledger) -> list[RunSummary]:
    """Every (brand, week) that was started, newest week first, with counts by state."""
    runs = []
    for week in WeekState.all_weeks(ledger):
        if week.started is None:
            continue
        run = RunSummary(week.brand, week.started.get("brand", week.brand), week.week, len(week.post_ids()),
                         completed=week.completed)
        for kind, items in (("drafts", week.drafts), ("images", week.renders)):
            for item_id in items:
                run.counts[kind] += 1
                run.counts[week.state_of(item_id)] += 1
                if week.verdict(item_id) == "lookalike":
                    run.counts["lookalikes"] += 1
        run.counts["exported"] = sum(len(e) for e in week.exports.values())
        runs.append(run)
    return sorted(runs, key=lambda r: (r.week, r.brand), reverse=True)


@dataclass
class ImageItem:
    render: dict[str, Any]
    decision: dict[str, Any] | None
    check: dict[str, Any] | None
    current: dict[str, Any] | None        # the signed file, or an imported retouch
    exports: list[dict[str, Any]]
    version: int = 0                      # decisions recorded on it: a form made before the latest is stale

    @property
    def image_id(self) -> str:
        return self.render["image_id"]

    @property
    def state(self) -> str:
        return state_of(self.decision)

    @property
    def lookalike(self) -> bool:
        return bool(self.check and self.check["verdict"] == "lookalike")

    @property
    def file(self) -> str:
        """The file a person should look at: the signed (or retouched) one, else the raw render."""
        return (self.current or self.render)["file"]

    @property
    def sha256(self) -> str:
        return (self.current or self.render)["sha256"]


@dataclass
class DraftItem:
    draft: dict[str, Any]
    decision: dict[str, Any] | None
    prompt: dict[str, Any] | None
    images: list[ImageItem]
    version: int = 0

    @property
    def draft_id(self) -> str:
        return self.draft["draft_id"]

    @property
    def state(self) -> str:
        return state_of(self.decision)

    @property
    def text(self) -> str:
        return text_after(self.draft, self.decision)

    @property
    def segments(self) -> list[tuple[str, str | None]]:
        if self.decision and "edit" in self.decision:
            return [(self.text, None)]          # the reviewer rewrote it: the spans no longer apply
        return marked_segments(self.draft["text"], self.draft.get("fact_spans", []),
                               self.draft.get("quality"))


@dataclass
class SlotView:
    slot_id: str
    post: Any | None                     # the calendar post when the brand folder is at hand
    drafts: list[DraftItem]
    failures: list[dict[str, Any]]

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
    history: list[dict[str, Any]]        # decisions, newest first
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


def load_run(ledger: Ledger, brand: str, week: str, brands_dir: Path | None = None) -> RunView:
    state = WeekState.load(ledger, brand, week)
    if state.started is None:
        raise RunNotFound(f"no run of brand '{brand}' for week {week} in the ledger")
    images = {image_id: ImageItem(render, state.decision(image_id), state.checks.get(image_id),
                                  state.current.get(image_id), state.exports.get(image_id, []),
                                  state.version(image_id))
              for image_id, render in state.renders.items()}
    by_draft: dict[str, list[ImageItem]] = {}
    for item in images.values():
        by_draft.setdefault(item.render["draft_id"], []).append(item)
    bundle = find_bundle(brands_dir, brand)
    posts = {keys.slot_id(week, p.id): p for p in posts_in_week(bundle, week)} if bundle else {}
    drafts: dict[str, list[DraftItem]] = {}
    for draft_id, draft in state.drafts.items():
        drafts.setdefault(draft["slot_id"], []).append(DraftItem(
            draft, state.decision(draft_id), state.prompts.get(draft_id),
            sorted(by_draft.get(draft_id, []), key=lambda i: i.render["seed"]), state.version(draft_id)))
    slot_ids = [keys.slot_id(week, post_id) for post_id in state.post_ids()]
    slots = [SlotView(slot_id, posts.get(slot_id), sorted(drafts.get(slot_id, []), key=lambda d: d.draft["variant"]),
                      state.draft_failures.get(slot_id, [])) for slot_id in slot_ids]
    counts = Counter(item.state for item in images.values())
    counts["drafts"] = sum(len(s.drafts) for s in slots)
    counts["images"] = len(images)
    counts["lookalikes"] = sum(1 for i in images.values() if i.lookalike)
    return RunView(brand, state.started.get("brand", brand), week, slots, images, state.history(), counts, bundle)
