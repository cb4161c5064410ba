"""`estampille calendar check`: how a spreadsheet calendar was read and the week's posts as the
batch will plan them, each with the row it came from (brand.py plans, calendar_sheet.py reads)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from .calendar_sheet import SheetSource
from .errors import ConfigError


def week_plan(file: Path, brand_dir: Path | None, week: str | None) -> list[str]:
    """The lines `estampille calendar check` prints: how the file was read, what was ignored, and
    the week's posts as the batch will plan them, each with the row it came from."""
    from .brand import BRAND_FILE, RecurringPost, load_brand, load_calendars, posts_in_week, week_at

    file = Path(file)
    brand_dir = Path(brand_dir) if brand_dir else file.parent
    if not (brand_dir / BRAND_FILE).is_file():
        raise ConfigError(f"{brand_dir / BRAND_FILE}: file not found: give the brand folder with --brand")
    bundle = load_brand(brand_dir, [file])
    _, sources = load_calendars(bundle.folder, bundle.brand, [file])
    source = sources[0]
    week = week or week_at(dt.datetime.now(dt.UTC), bundle.brand.timezone)
    lines = []
    if isinstance(source, SheetSource):
        how = ", ".join(
            x
            for x in (
                source.encoding,
                f"'{source.delimiter}'-separated" if source.delimiter else "",
                f"sheet '{source.sheet}'" if source.sheet else "",
            )
            if x
        )
        lines.append(
            f"{file}: {how + ', ' if how else ''}header on row {source.header_row}; columns: "
            + ", ".join(f"{source.headers[i]} -> {f}" for f, i in source.columns.items())
        )
        if source.ignored:
            lines.append(f"ignored columns: {', '.join(source.ignored)}")
    rows = {}
    for section, entries in (("posts", bundle.calendar.posts), ("recurring", bundle.calendar.recurring)):
        for i, entry in enumerate(entries):
            row = source.row_of(section, i) if isinstance(source, SheetSource) else None
            for post_id in entry.post_ids() if isinstance(entry, RecurringPost) else [entry.id]:
                rows[post_id] = row
    posts = posts_in_week(bundle, week)
    for post in posts:
        origin = f"  (row {rows[post.id]})" if rows.get(post.id) else ""
        lines.append(
            f"{post.date.strftime('%a %d/%m/%Y')} {post.time}  {post.platform}  {post.language}  "
            f"{post.audience or '-'}  {post.id}{origin}"
        )
        lines.append(f"    {post.brief}")
        if post.facts:
            lines.append(f"    facts: {' | '.join(post.facts)}")
        if post.reference_image:
            lines.append(f"    from {post.reference_image} (strength {post.strength})")
    lines.append(f"{len(posts)} post{'s' if len(posts) != 1 else ''} in {week}" if posts else f"no posts in {week}")
    return lines
