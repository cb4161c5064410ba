"""Paths read from records are data: they must stay inside the folder they are relative to."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import EstampilleError


class OutsideFolder(EstampilleError, ValueError):
    """A record names a file outside its folder: a forged or corrupted record."""


def inside(folder: Path, relative: str) -> Path:
    """`folder / relative`, refusing anything that resolves outside `folder` (../, absolute, links)."""
    base = folder.resolve()
    path = (base / relative).resolve()
    if path != base and base not in path.parents:
        raise OutsideFolder(f"path {relative!r} points outside {folder}")
    return path


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (hashlib.file_digest)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# The output layout, in one place: out/<brand>/<week>/ holds one run's files (renders/, images/,
# evidence/, thumbs/, export/, review.html) and out/<brand>/lookalike-index/ the brand's references.


def brand_slug(brand_folder: str | Path) -> str:
    """The name a brand goes by in the output and the ledger: its folder's own name, links
    resolved (a symlinked brand folder is the same brand)."""
    return Path(brand_folder).resolve().name


def run_folder(out: Path, brand: str, week: str) -> Path:
    """`out/<brand>/<week>`: one run's files. A brand or week that would lead outside `out` (read
    from a request or a ledger row) is refused."""
    inside(out, f"{brand}/{week}")
    return out / brand / week


def lookalike_index_folder(out: Path, brand: str) -> Path:
    """`out/<brand>/lookalike-index`: the brand's reference index (competitors and its own past renders)."""
    inside(out, brand)
    return out / brand / "lookalike-index"
