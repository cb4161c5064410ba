"""Keys and seeds derived from inputs: the same inputs always name the same unit of work and
draw the same random numbers, which is what makes a batch resumable and an image reproducible."""

from __future__ import annotations

import hashlib
import json
import uuid


def content_key(prefix: str, *parts: object) -> str:
    """A short, stable key for a unit of work from everything that determines its result."""
    material = json.dumps(parts, sort_keys=True, default=str)
    return f"{prefix}-{hashlib.sha256(material.encode()).hexdigest()[:20]}"


def derived_seed(*parts: object) -> int:
    """A 32-bit seed from its parts ("slot#variant#attempt", "prompt#n"): stable across runs and machines."""
    return int.from_bytes(hashlib.sha256("#".join(map(str, parts)).encode()).digest()[:4], "big")


# Every ledger key and slot id is built by one function here: a key names one unit of work, and a
# second spelling of it would be a second unit (a duplicate render, a draft done twice).


def slot_id(week: str, post_id: str) -> str:
    """A calendar post's slot in its week, "<week>/<post id>" (post ids are unique within a week)."""
    return f"{week}/{post_id}"


def post_id_of(slot_id: str) -> str:
    """The calendar post a slot id names (the inverse of `slot_id`)."""
    return slot_id.split("/", 1)[1]


def run_key(*inputs: object) -> str:
    """A weekly run: brand, week and the configuration it ran with."""
    return content_key("run", *inputs)


def completed_key(run_key: str) -> str:
    """The row that closes a run in which nothing failed."""
    return f"{run_key}:completed"


def draft_key(*inputs: object) -> str:
    """One text variant: see text.drafting.draft_key for what decides it."""
    return content_key("draft", *inputs)


def prompt_key(*inputs: object) -> str:
    """One image prompt: its draft, brand files, guardrails, text model, templates, limits."""
    return content_key("prompt", *inputs)


def render_key(*inputs: object) -> str:
    """One image (its id): prompt, index, model and weights, every render setting."""
    return content_key("img", *inputs)


def check_key(*inputs: object) -> str:
    """One lookalike check: the image, the reference index's version, the thresholds."""
    return content_key("check", *inputs)


def sign_key(image_id: str, generation: int = 1) -> str:
    """An image's signature; a later generation supersedes one whose file is gone (never overwritten)."""
    return f"sign-{image_id}" + (f"-{generation}" if generation > 1 else "")


def failed_key(key: str) -> str:
    """A failed attempt at `key`: a fresh key each time, so the work itself stays to do."""
    return f"{key}:failed:{uuid.uuid4().hex[:12]}"


def review_key(item_id: str, number: int) -> str:
    """The `number`-th decision on a draft or image (1, 2, ...): two reviewers at once cannot both be n."""
    return f"review-{item_id}-{number}"


def edit_key(image_id: str, digest: str) -> str:
    """A retouch imported for an image, by the SHA-256 of the signed file."""
    return f"edit-{image_id}-{digest[:16]}"


def export_key(image_id: str, decision: dict, sha256: str | None = None) -> str:
    """An image exported under one decision; a re-export after a lost file adds its new bytes' hash."""
    key = f"export-{image_id}-{hashlib.sha256(json.dumps(decision, sort_keys=True).encode()).hexdigest()[:16]}"
    return key if sha256 is None else f"{key}-{sha256[:12]}"
