"""What the review pages show, read from the ledger: the runs; one run's slots with their text
and image variants and each item's state is `review.week_view` (shared with the static page)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..ledger import Ledger
from ..review.week import WeekState
from ..review.week_view import DraftItem, ImageItem, RunNotFound, RunView, SlotView, find_bundle, load_run

# The run page's view model is the static page's too: review/week_view.py.
__all__ = [
    "DraftItem",
    "ImageItem",
    "RunNotFound",
    "RunSummary",
    "RunView",
    "SlotView",
    "find_bundle",
    "list_runs",
    "load_run",
]


@dataclass
class RunSummary:
    brand: str
    brand_name: str
    week: str
    posts: int
    counts: Counter = field(default_factory=Counter)  # drafts, images, pending, approved, rejected, ...
    completed: bool = False


def list_runs(ledger: Ledger) -> list[RunSummary]:
    """Every (brand, week) that was started, newest week first, with counts by state."""
    runs = []
    for week in WeekState.all_weeks(ledger):
        if week.started is None:
            continue
        run = RunSummary(
            week.brand, week.started.brand or week.brand, week.week, len(week.post_ids()), completed=week.completed
        )
        for kind, items in (("drafts", week.drafts), ("images", week.renders)):
            for item_id in items:
                run.counts[kind] += 1
                run.counts[week.state_of(item_id)] += 1
                if week.verdict(item_id) == "lookalike":
                    run.counts["lookalikes"] += 1
        run.counts["exported"] = sum(len(e) for e in week.exports.values())
        runs.append(run)
    return sorted(runs, key=lambda r: (r.week, r.brand), reverse=True)
