"""The C2PA soft bindings of a render: what lets anyone holding a stripped copy find its
Content Credentials again (C2PA 2.x, "Soft bindings").

Two bindings are recorded in the manifest (`c2pa.soft-binding` assertions) and in the ledger:
- the watermark (`watermark.ALG`): its value is the mark's 7 payload bytes (version/kind and the
  image id's first 48 bits), base64 as the resolution API exchanges it; an exact key;
- an ISCC Content-Code Image (`io.iscc.v0`, on the C2PA soft-binding algorithm list): a 64-bit
  perceptual fingerprint computed by `iscc-core` from the image's 32x32 grey thumbnail, no model
  weights; a near key (a re-encoded copy lands a few bits away), used when the mark is not read.

And a `c2pa.watermarked.bound` action says that the pixels carry a mark bound to this manifest.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import iscc_core
from PIL import Image, ImageOps

from . import watermark

LABEL = "c2pa.soft-binding"
ISCC_ALG = "io.iscc.v0"
ISCC_MAX_DISTANCE = 8          # of 64 bits: a re-encoded or resized copy (measured in bench/watermark_methods.py)


def watermark_value(image_id: str) -> str:
    """The watermark binding's value: base64 of the payload bytes (header + 48-bit id)."""
    short = watermark.short_id(image_id)
    return base64.b64encode(bytes([watermark.HEADER]) + bytes.fromhex(short[4:])).decode()


def short_id_of_value(value: str) -> str | None:
    """The short image id a watermark binding value stands for; None when it is not one of ours."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 7 or raw[0] != watermark.HEADER:
        return None
    return "img-" + raw[1:].hex()


def iscc_code(image: Image.Image) -> str:
    """ISCC Content-Code Image v0 (64 bits) of a picture, as `ISCC:EEA...`."""
    grey = ImageOps.exif_transpose(image).convert("L").resize((32, 32), Image.Resampling.BICUBIC)
    return iscc_core.gen_image_code_v0(list(grey.getdata()))["iscc"]


def iscc_distance(a: str, b: str) -> int | None:
    try:
        return int(iscc_core.iscc_distance(a, b))
    except (ValueError, KeyError, TypeError):
        return None


def bindings(image_id: str | None, image: Image.Image) -> list[dict[str, str]]:
    """The soft bindings to record: the watermark's (when marked) and the ISCC fingerprint."""
    found = [{"alg": watermark.ALG, "value": watermark_value(image_id)}] if image_id else []
    return found + [{"alg": ISCC_ALG, "value": iscc_code(image)}]


def assertions(found: list[dict[str, str]]) -> list[dict[str, Any]]:
    """One `c2pa.soft-binding` assertion per binding, covering the whole image (empty scope)."""
    return [{"label": LABEL, "data": {"alg": b["alg"], "blocks": [{"scope": {}, "value": b["value"]}]}}
            for b in found]


def watermarked_action(mark: dict[str, Any]) -> dict[str, Any]:
    """The C2PA 2.2 action saying the pixels carry a watermark bound to this manifest."""
    return {"action": "c2pa.watermarked.bound",
            "description": "Invisible watermark identifying this image, bound by the soft-binding assertion",
            "softwareAgent": {"name": "estampille watermark", "version": f"{mark['method']} v{mark['version']}"},
            "parameters": {"alg": watermark.ALG, "strength": mark["strength"]}}
