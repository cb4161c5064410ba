"""Keys and seeds derived from inputs: the same inputs always name the same unit of work and
draw the same random numbers, which is what makes a batch resumable and an image reproducible."""

from __future__ import annotations

import hashlib
import json


def content_key(prefix: str, *parts: object) -> str:
    """A short, stable key for a unit of work from everything that determines its result."""
    material = json.dumps(parts, sort_keys=True, default=str)
    return f"{prefix}-{hashlib.sha256(material.encode()).hexdigest()[:20]}"


def derived_seed(*parts: object) -> int:
    """A 32-bit seed from its parts ("slot#variant#attempt", "prompt#n"): stable across runs and machines."""
    return int.from_bytes(hashlib.sha256("#".join(map(str, parts)).encode()).digest()[:4], "big")
