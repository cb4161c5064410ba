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

from ..brand import BrandBundle, load_brand, posts_in_week
from ..errors import EstampilleError
from ..ledger import Ledger, latest_payloads
from ..provenance.edits import CURRENT_FILE_KINDS
from ..review.decisions import DECISION_KINDS
from ..review.static_page import marked_segments


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
    events = ledger.events()
    runs: dict[tuple[str, str], RunSummary] = {}
    decisions = latest_payloads(events, DECISION_KINDS, "item_id")
    checks = latest_payloads(events, ("lookalike.checked",), "image_id")
    for event in events:
        key = (event.brand, event.week)
        if event.kind == "run.started":
            runs[key] = RunSummary(event.brand, event.payload.get("brand", event.brand), event.week,
                                   len(event.payload.get("posts", [])))
        run = runs.get(key)
        if run is None:
            continue
        if event.kind == "run.completed":
            run.completed = True
        elif event.kind in ("draft.created", "render.created"):
            item_id = event.payload["draft_id" if event.kind == "draft.created" else "image_id"]
            run.counts["drafts" if event.kind == "draft.created" else "images"] += 1
            run.counts[state_of(decisions.get(item_id))] += 1
            if checks.get(item_id, {}).get("verdict") == "lookalike":
                run.counts["lookalikes"] += 1
        elif event.kind == "export.created":
            run.counts["exported"] += 1
    return sorted(runs.values(), key=lambda r: (r.week, r.brand), reverse=True)


def state_of(decision: dict[str, Any] | None) -> str:
    return decision["decision"] if decision else "pending"


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
        """The text that would be published: a reviewer's edit wins over the draft."""
        return (self.decision or {}).get("edit", {}).get("after", self.draft["text"])

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
        return self.slot_id.split("/", 1)[1]


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
    events = ledger.events(brand=brand, week=week)
    started = [e for e in events if e.kind == "run.started"]
    if not started:
        raise RunNotFound(f"no run of brand '{brand}' for week {week} in the ledger")
    decisions = latest_payloads(events, DECISION_KINDS, "item_id")
    versions = Counter(e.payload["item_id"] for e in events if e.kind in DECISION_KINDS)
    checks = latest_payloads(events, ("lookalike.checked",), "image_id")
    current = latest_payloads(events, CURRENT_FILE_KINDS, "image_id")
    prompts = {e.payload["draft_id"]: e.payload for e in events if e.kind == "prompt.created"}
    exports: dict[str, list[dict]] = {}
    for e in events:
        if e.kind == "export.created":
            exports.setdefault(e.payload["image_id"], []).append(e.payload)
    images = {e.payload["image_id"]: ImageItem(e.payload, decisions.get(e.payload["image_id"]),
                                               checks.get(e.payload["image_id"]), current.get(e.payload["image_id"]),
                                               exports.get(e.payload["image_id"], []), versions[e.payload["image_id"]])
              for e in events if e.kind == "render.created"}
    by_draft: dict[str, list[ImageItem]] = {}
    for item in images.values():
        by_draft.setdefault(item.render["draft_id"], []).append(item)
    bundle = find_bundle(brands_dir, brand)
    posts = {f"{week}/{p.id}": p for p in posts_in_week(bundle, week)} if bundle else {}
    slot_ids = [f"{week}/{post_id}" for post_id in started[-1].payload.get("posts", [])]
    drafts: dict[str, list[DraftItem]] = {}
    failures: dict[str, list[dict]] = {}
    for e in events:
        if e.kind == "draft.created":
            draft_id = e.payload["draft_id"]
            drafts.setdefault(e.subject, []).append(DraftItem(
                e.payload, decisions.get(draft_id), prompts.get(draft_id),
                sorted(by_draft.get(draft_id, []), key=lambda i: i.render["seed"]), versions[draft_id]))
        elif e.kind == "draft.failed":
            failures.setdefault(e.subject, []).append(e.payload)
    slots = [SlotView(slot_id, posts.get(slot_id), sorted(drafts.get(slot_id, []), key=lambda d: d.draft["variant"]),
                      failures.get(slot_id, [])) for slot_id in slot_ids]
    counts = Counter(item.state for item in images.values())
    counts["drafts"] = sum(len(s.drafts) for s in slots)
    counts["images"] = len(images)
    counts["lookalikes"] = sum(1 for i in images.values() if i.lookalike)
    history = [dict(p, seq=e.seq) for e in reversed(events) if e.kind in DECISION_KINDS for p in (e.payload,)]
    return RunView(brand, started[-1].payload.get("brand", brand), week, slots, images, history, counts, bundle)
