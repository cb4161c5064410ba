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
