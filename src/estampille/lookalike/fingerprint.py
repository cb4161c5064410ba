"""Perceptual fingerprints, bit-compatible with `imagehash` (it computes them)."""

from __future__ import annotations

import imagehash
from PIL import Image

HASH_KINDS = ("phash", "dhash")
HASH_BITS = 64


def fingerprints(image: Image.Image) -> dict[str, str]:
    """64-bit pHash and dHash as hex strings (imagehash's own hex format)."""
    rgb = image.convert("RGB")
    return {"phash": str(imagehash.phash(rgb)), "dhash": str(imagehash.dhash(rgb))}


def hex_to_int(value: str) -> int:
    return int(value, 16)
