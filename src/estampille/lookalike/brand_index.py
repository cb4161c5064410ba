"""A brand's reference index: its competitors' folders and its own renders of other weeks,
brought up to date incrementally before each check (only new or changed files are hashed)."""

from __future__ import annotations

from pathlib import Path

from .ingest import ingest, merge_lists
from .store import ReferenceStore


def refresh_brand_index(
    folder: Path, competitors: dict[str, Path], own_renders: list[tuple[str, str, Path]], workers: int | None = None
) -> tuple[ReferenceStore, list[tuple[str, str]]]:
    """Open (or create) the index at `folder` and add what is new. Returns it and the skipped files."""
    store = ReferenceStore(folder)
    skipped: list[tuple[str, str]] = []
    for name, images in sorted(competitors.items()):
        skipped += ingest(store, [images], name, workers=workers, merge=False).skipped
    by_week: dict[str, list[Path]] = {}
    for week, _image_id, path in own_renders:
        if path.is_file():
            by_week.setdefault(week, []).append(path)
    for week, paths in sorted(by_week.items()):
        skipped += ingest(store, paths, f"own:{week}", workers=workers, merge=False).skipped
    # Once, after every folder: each merge rewrites all the merged lists.
    if (why := merge_lists(store)) is not None:
        skipped.append((str(folder / "lists"), why))
    return store, skipped
