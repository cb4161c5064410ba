"""One brand's week as its ledger tells it, read once: the one model of item state that the
review pages, the decisions and publishing share (so "the reviewer's edit wins" and "the latest
decision is the state" are written here and nowhere else).

Payloads are read back into the `records` models, so the pages name fields the type checker
knows; a week recorded by an older version still reads, through the models' defaults for fields
added since.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ledger import Event, Ledger
from ..records import (
    IMAGE_RECORDS,
    Draft,
    Export,
    ImagePrompt,
    ImageRecord,
    ItemFailure,
    Kind,
    LookalikeCheck,
    Provenance,
    Render,
    Retouch,
    ReviewDecision,
    RunStarted,
)

DECISION_KINDS = (Kind.REVIEW_APPROVED, Kind.REVIEW_REJECTED)


@dataclass
class WeekState:
    brand: str
    week: str
    events: list[Event] = field(default_factory=list)
    started: RunStarted | None = None  # the latest run.started record
    completed: bool = False
    drafts: dict[str, Draft] = field(default_factory=dict)  # draft id -> draft, in ledger order
    prompts: dict[str, ImagePrompt] = field(default_factory=dict)  # draft id -> its image prompt
    renders: dict[str, Render] = field(default_factory=dict)  # image id -> render, in ledger order
    checks: dict[str, LookalikeCheck] = field(default_factory=dict)  # image id -> latest lookalike check
    current: dict[str, Provenance | Retouch] = field(default_factory=dict)  # image id -> signed file or retouch
    decision_events: dict[str, list[Event]] = field(default_factory=dict)  # item id -> its decisions, oldest first
    exports: dict[str, list[Export]] = field(default_factory=dict)  # image id -> its exports
    draft_failures: dict[str, list[ItemFailure]] = field(default_factory=dict)  # slot id -> draft.failed
    # image id -> ledger kind -> the latest per-image record of that kind (records.IMAGE_RECORDS)
    image_records: dict[str, dict[str, ImageRecord]] = field(default_factory=dict)

    @classmethod
    def from_events(cls, events: list[Event], brand: str | None = None, week: str | None = None) -> WeekState:
        """Fold one week's events (chain order) into its state; later events win."""
        state = cls(
            brand or (events[0].brand if events else None) or "",
            week or (events[0].week if events else None) or "",
            events=events,
        )
        for event in events:
            model = IMAGE_RECORDS.get(event.kind)
            record = model.of(event) if model else None
            if record is not None:
                state.image_records.setdefault(record.image_id, {})[event.kind] = record
            if isinstance(record, Render):
                state.renders[record.image_id] = record
            elif isinstance(record, LookalikeCheck):
                state.checks[record.image_id] = record
            elif isinstance(record, Provenance | Retouch):  # an imported retouch replaces the signed render
                state.current[record.image_id] = record
            elif event.kind == Kind.RUN_STARTED:
                state.started = RunStarted.of(event)
            elif event.kind == Kind.RUN_COMPLETED:
                state.completed = True
            elif event.kind == Kind.DRAFT_CREATED:
                draft = Draft.of(event)
                state.drafts[draft.draft_id] = draft
            elif event.kind == Kind.DRAFT_FAILED:
                state.draft_failures.setdefault(event.subject or "", []).append(ItemFailure.of(event))
            elif event.kind == Kind.PROMPT_CREATED:
                prompt = ImagePrompt.of(event)
                state.prompts[prompt.draft_id] = prompt
            elif event.kind in DECISION_KINDS:
                state.decision_events.setdefault(ReviewDecision.of(event).item_id, []).append(event)
            elif event.kind == Kind.EXPORT_CREATED:
                export = Export.of(event)
                state.exports.setdefault(export.image_id, []).append(export)
        return state

    @classmethod
    def load(cls, ledger: Ledger, brand: str, week: str) -> WeekState:
        return cls.from_events(ledger.events(brand=brand, week=week), brand, week)

    @classmethod
    def all_weeks(cls, ledger: Ledger) -> list[WeekState]:
        """Every (brand, week) the ledger has events for, from one read of it."""
        grouped: dict[tuple[str, str], list[Event]] = {}
        for event in ledger.events():
            if event.brand and event.week:
                grouped.setdefault((event.brand, event.week), []).append(event)
        return [cls.from_events(events, brand, week) for (brand, week), events in grouped.items()]

    # ------------------------------------------------------------------ one item's state
    def decision(self, item_id: str) -> ReviewDecision | None:
        """The latest decision on a draft or an image: its state."""
        decided = self.decision_events.get(item_id)
        return ReviewDecision.of(decided[-1]) if decided else None

    def state_of(self, item_id: str) -> str:
        return state_of(self.decision(item_id))

    def version(self, item_id: str) -> int:
        """Decisions recorded on the item: a form made before the latest is stale."""
        return len(self.decision_events.get(item_id, []))

    def verdict(self, image_id: str) -> str | None:
        check = self.checks.get(image_id)
        return check.verdict if check else None

    def text_of(self, draft_id: str) -> str:
        return text_after(self.drafts[draft_id], self.decision(draft_id))

    def history(self) -> list[dict]:
        """Every decision, newest first, with its ledger row number."""
        return [dict(e.payload, seq=e.seq) for e in reversed(self.events) if e.kind in DECISION_KINDS]

    def post_ids(self) -> list[str]:
        return list(self.started.posts) if self.started else []


def state_of(decision: ReviewDecision | None) -> str:
    return decision.decision if decision else "pending"


def text_after(draft: Draft, decision: ReviewDecision | None) -> str:
    """The text that would be published: a reviewer's edit wins over the draft."""
    edit = decision.edit if decision else None
    return edit["after"] if edit and "after" in edit else draft.text
