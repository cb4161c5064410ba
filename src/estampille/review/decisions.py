"""Human decisions on drafts and images: every approval or rejection is a ledger event; the
latest decision on an item is its state. An image the lookalike check flagged cannot be
approved unless the reviewer overrides the verdict with a reason (recorded too)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import EstampilleError, ExitStatus
from ..keys import review_key
from ..ledger import Event, Ledger
from ..records import Draft, Kind, ReviewDecision
from .week import WeekState

Decision = Literal["approved", "rejected"]


class ReviewError(EstampilleError):
    """A decision that cannot be taken (unknown item, lookalike without override, no reviewer)."""

    exit_status = ExitStatus.USAGE


class StaleDecision(ReviewError):
    """The item was decided on since the form was made (or at the same moment, by someone else)."""

    def __init__(self, item_id: str, expected: int, recorded: int, latest: Event | None):
        self.item_id, self.expected, self.recorded = item_id, expected, recorded
        self.latest = ReviewDecision.of(latest) if latest else None  # the decision recorded since
        who = (
            f": now {self.latest.decision} by {self.latest.reviewer} at {self.latest.decided_at}" if self.latest else ""
        )
        super().__init__(f"{item_id} changed since decision {expected}{who}; look again and decide again")


@dataclass(frozen=True)
class Item:
    """A draft or an image, as the ledger knows it."""

    item_id: str
    kind: Literal["draft", "image"]
    brand: str
    week: str
    slot_id: str
    event: Event


def find_item(ledger: Ledger, item_id: str) -> Item:
    event = ledger.get(item_id)
    if event is None or event.kind not in (Kind.DRAFT_CREATED, Kind.RENDER_CREATED):
        raise ReviewError(f"no draft or image '{item_id}' in the ledger at {ledger.safe_url}")
    return Item(item_id, "draft" if event.kind == Kind.DRAFT_CREATED else "image", *event.place(), event)


SAME_DECISION = ("decision", "reviewer", "comment", "lookalike_override", "edit")


def decide(
    ledger: Ledger,
    item_id: str,
    decision: Decision,
    reviewer: str,
    comment: str = "",
    override_lookalike: str | None = None,
    edited_text: str | None = None,
    version: int | None = None,
) -> Event:
    """Record one decision. `edited_text` replaces a draft's text (before/after kept in the event).

    The n-th decision on an item has the ledger key review-<item>-<n>, so of two decisions made
    on the same state (two reviewers, or one form sent twice) the ledger keeps one: the same
    decision sent again is that one; another raises StaleDecision. `version` is the number of
    decisions the form saw (the web page's forms carry it); without it, the current state is used."""
    if not reviewer.strip():
        raise ReviewError("a decision needs a reviewer name (--reviewer)")
    item = find_item(ledger, item_id)
    payload: dict[str, Any] = {
        "item_id": item_id,
        "item_kind": item.kind,
        "decision": decision,
        "reviewer": reviewer,
        "comment": comment,
        "decided_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    week = WeekState.load(ledger, item.brand, item.week)
    if item.kind == "image" and decision == "approved" and week.verdict(item_id) == "lookalike":
        if not override_lookalike:
            raise ReviewError(
                f"image {item_id} looks like a reference image (see its evidence): approving it "
                "needs --override-lookalike REASON"
            )
        payload["lookalike_override"] = override_lookalike
    if edited_text is not None:
        if item.kind != "draft":
            raise ReviewError("only a draft's text can be edited")
        payload["edit"] = {"before": Draft.of(item.event).text, "after": edited_text}
    earlier = week.decision_events.get(item_id, [])
    if version is not None and version != len(earlier):
        if version == len(earlier) - 1 and _same(earlier[-1].payload, payload):
            return earlier[-1]  # a double submit: recorded once
        raise StaleDecision(item_id, version, len(earlier), earlier[-1] if earlier else None)
    number = len(earlier) + 1
    event = ledger.append(
        Kind(f"review.{decision}"),
        review_key(item_id, number),
        payload,
        brand=item.brand,
        week=item.week,
        subject=item.slot_id,
    )
    if not event.created and not _same(event.payload, payload):
        raise StaleDecision(item_id, number - 1, number, event)
    return event


def _same(recorded: dict, payload: dict) -> bool:
    return all(recorded.get(k) == payload.get(k) for k in SAME_DECISION)
