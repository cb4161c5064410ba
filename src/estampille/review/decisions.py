"""Human decisions on drafts and images: every approval or rejection is a ledger event; the
latest decision on an item is its state. An image the lookalike check flagged cannot be
approved unless the reviewer overrides the verdict with a reason (recorded too)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Literal

from ..errors import EstampilleError, ExitStatus
from ..ledger import Event, Ledger, latest_payloads

DECISION_KINDS = ("review.approved", "review.rejected")
Decision = Literal["approved", "rejected"]


class ReviewError(EstampilleError):
    """A decision that cannot be taken (unknown item, lookalike without override, no reviewer)."""

    exit_status = ExitStatus.USAGE


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
    if event is None or event.kind not in ("draft.created", "render.created"):
        raise ReviewError(f"no draft or image '{item_id}' in the ledger at {ledger.safe_url}")
    return Item(item_id, "draft" if event.kind == "draft.created" else "image", event.brand, event.week,
                event.subject, event)


def lookalike_verdict(ledger: Ledger, item: Item) -> str | None:
    events = ledger.events(kind="lookalike.checked", brand=item.brand, week=item.week)
    return latest_payloads(events, ("lookalike.checked",), "image_id").get(item.item_id, {}).get("verdict")


def decide(ledger: Ledger, item_id: str, decision: Decision, reviewer: str, comment: str = "",
           override_lookalike: str | None = None, edited_text: str | None = None) -> Event:
    """Record one decision. `edited_text` replaces a draft's text (before/after kept in the event)."""
    if not reviewer.strip():
        raise ReviewError("a decision needs a reviewer name (--reviewer)")
    item = find_item(ledger, item_id)
    payload = {"item_id": item_id, "item_kind": item.kind, "decision": decision, "reviewer": reviewer,
               "comment": comment, "decided_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    if item.kind == "image" and decision == "approved" and lookalike_verdict(ledger, item) == "lookalike":
        if not override_lookalike:
            raise ReviewError(f"image {item_id} looks like a reference image (see its evidence): approving it "
                              "needs --override-lookalike REASON")
        payload["lookalike_override"] = override_lookalike
    if edited_text is not None:
        if item.kind != "draft":
            raise ReviewError("only a draft's text can be edited")
        payload["edit"] = {"before": item.event.payload["text"], "after": edited_text}
    return ledger.append(f"review.{decision}", f"review-{uuid.uuid4().hex}", payload, brand=item.brand,
                         week=item.week, subject=item.slot_id)

