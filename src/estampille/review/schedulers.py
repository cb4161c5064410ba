"""Bulk-upload files for the schedulers community managers use, one writer per tool, written by
`publish` beside each platform's approved images and captions (`export/<platform>/`).

Each writer follows the tool's own help page, as we read it on 2026-12-06 (README, "Scheduler
exports", cites each page): its header (or none), its date and time format, UTF-8. A tool whose
bulk format we found no documentation for is refused by name in brand.yaml rather than guessed
(Buffer, Later, Meta Business Suite). Images go the way each tool takes them: Hootsuite's and
Sprout Social's files carry the text and the images are attached in the tool from the export
folder; Agorapulse takes public image URLs, made from `publish.image_base_url` when the brand
serves its output folder on the web.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
from dataclasses import dataclass
from pathlib import Path

from ..publish_settings import PublishSettings

SPROUT_MIN_GAP = dt.timedelta(minutes=10)  # Sprout: "at least 10 minutes apart from one another"


@dataclass(frozen=True)
class ExportRow:
    """One approved post as the schedulers see it."""

    post_id: str
    date: dt.date
    time: str  # HH:MM, the brand's local time
    text: str  # the caption as approved (disclosure line included)
    images: tuple[str, ...]  # file names in export/<platform>/


def image_urls(settings: PublishSettings, week: str, platform: str, row: ExportRow) -> list[str]:
    if not settings.image_base_url:
        return []
    return [f"{settings.image_base_url.rstrip('/')}/{week}/export/{platform}/{name}" for name in row.images]


def _write(path: Path, header: list[str] | None, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def write_hootsuite(folder: Path, platform: str, week: str, rows: list[ExportRow], settings: PublishSettings):
    """Hootsuite's bulk composer: no header row; date and time as DD/MM/YYYY HH:MM (choose that
    format when uploading), the message, an optional link. The images are attached in Hootsuite."""
    data = [[f"{r.date:%d/%m/%Y} {r.time}", r.text, ""] for r in rows]
    return _write(folder / f"hootsuite-{platform}.csv", None, data), []


def write_sprout(folder: Path, platform: str, week: str, rows: list[ExportRow], settings: PublishSettings):
    """Sprout Social's bulk scheduling: case-sensitive headers `date` (dd/mm/yyyy or mm/dd/yyyy, as
    chosen in Sprout's import preferences), `time_24hr`, `message_text`. Images are attached in
    Sprout after the import."""
    date_format = "%d/%m/%Y" if settings.date_order == "day-first" else "%m/%d/%Y"
    data = [[r.date.strftime(date_format), r.time, r.text] for r in rows]
    warnings = []
    moments = sorted((dt.datetime.combine(r.date, dt.time.fromisoformat(r.time)), r.post_id) for r in rows)
    for (before, first), (after, second) in itertools.pairwise(moments):
        if after - before < SPROUT_MIN_GAP:
            warnings.append(
                f"sprout-{platform}.csv: {first} and {second} are less than 10 minutes apart; Sprout "
                "Social refuses that: move one in the calendar"
            )
    return _write(folder / f"sprout-{platform}.csv", ["date", "time_24hr", "message_text"], data), warnings


def write_agorapulse(folder: Path, platform: str, week: str, rows: list[ExportRow], settings: PublishSettings):
    """Agorapulse's bulk import from CSV: `post_content`, `post_link`, `video_url`, `image_url`
    (public image URLs). Profiles, dates and times are chosen in Agorapulse's import window."""
    warnings = (
        []
        if settings.image_base_url or not any(r.images for r in rows)
        else [
            (
                f"agorapulse-{platform}.csv: Agorapulse takes images by public URL only: set publish.image_base_url "
                f"in brand.yaml, or attach the images of export/{platform}/ in Agorapulse"
            )
        ]
    )
    data = [[r.text, "", "", ",".join(image_urls(settings, week, platform, r))] for r in rows]
    return _write(
        folder / f"agorapulse-{platform}.csv", ["post_content", "post_link", "video_url", "image_url"], data
    ), warnings


WRITERS = {"hootsuite": write_hootsuite, "sprout": write_sprout, "agorapulse": write_agorapulse}


def write_all(
    export_folder: Path, week: str, rows: dict[str, list[ExportRow]], settings: PublishSettings
) -> tuple[list[Path], list[str]]:
    """Every chosen scheduler's file for every platform with exported posts: (files, warnings)."""
    files, warnings = [], []
    for platform, platform_rows in rows.items():
        ordered = sorted(platform_rows, key=lambda r: (r.date, r.time, r.post_id))
        for name in settings.schedulers:
            path, notes = WRITERS[name](export_folder / platform, platform, week, ordered, settings)
            files.append(path)
            warnings += notes
    return files, warnings
