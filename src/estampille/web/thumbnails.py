"""Thumbnails, made once per file content and kept beside the run (thumbs/<id>-<sha>.webp):
a run page of hundreds of images must not decode full-size PNGs on every view."""

from __future__ import annotations

import os
from pathlib import Path

from ..images import open_checked

THUMB_SIZE = 320


def thumbnail(run_dir: Path, image_id: str, source: Path, sha256: str) -> Path:
    """The cached thumbnail of `source`; keyed by its content hash so a retouch gets a new one."""
    target = run_dir / "thumbs" / f"{image_id}-{sha256[:16]}.webp"
    if target.is_file():
        return target
    image = open_checked(source).convert("RGB")
    image.thumbnail((THUMB_SIZE, THUMB_SIZE))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    image.save(tmp, "WEBP", quality=82)
    tmp.replace(target)  # atomic: two requests at once never serve half a file
    return target
