"""What a stage of the weekly batch is, and what the stages have made so far.

The stages themselves are declared once, in order, in `stages.STAGES`: `run_batch`, the Prefect flow
(flows/weekly_batch.py) and the tests all read that table, so adding a stage is adding one entry
there and one function. This module holds only the shapes, so that `batch.py` can record a stage's
items without importing the stages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .records import Draft, ImagePrompt, Kind, LookalikeCheck, Provenance, Record, Render, Slot


@dataclass(frozen=True, kw_only=True)
class Stage:
    """One step of the weekly batch: its function, what it takes and gives, how its items are
    recorded in the ledger and which errors make Prefect retry it as a whole."""

    name: str  # its label in counts, failures and the run's summary ("draft")
    task: str  # its Prefect task's name ("draft-texts")
    run: Callable[..., Any]  # run(batch, *inputs): the library function
    takes: tuple[str, ...] = ()  # the `WeekResults` fields it reads, in its arguments' order
    gives: str  # the `WeekResults` field its result fills
    result: type[Record] | None = None  # what one recorded item reads back into
    created: Kind | None = None  # the ledger event of one finished item
    failed: Kind | None = None  # the ledger event of one failed item (a fresh key: the next run retries it)
    item_errors: tuple[type[Exception], ...] = ()  # errors that cost one item, recorded as `failed`
    # Errors that stop the stage under Prefect, which retries it while they last (an endpoint down
    # for every item); without Prefect, or after the last retry, they cost one item each.
    retry_on: tuple[type[Exception], ...] = ()

    def created_kind(self) -> Kind:
        if self.created is None or self.result is None:
            raise TypeError(f"stage {self.name!r} declares no ledger kind and result type for its items")
        return self.created

    def failed_kind(self) -> Kind:
        if self.failed is None:
            raise TypeError(f"stage {self.name!r} declares no ledger kind for a failed item")
        return self.failed


@dataclass
class WeekResults:
    """What the stages made so far in one run: a typed field for each of the first stages' `gives`,
    and `more` for what a stage added later gives, so that adding a stage does not touch this module
    (its result is typed where its own function is)."""

    slots: list[Slot] = field(default_factory=list)
    drafts: list[Draft] = field(default_factory=list)
    prompts: list[ImagePrompt] = field(default_factory=list)
    renders: list[Render] = field(default_factory=list)
    checks: list[LookalikeCheck] = field(default_factory=list)
    provenance: list[Provenance] = field(default_factory=list)
    review_page: Path | None = None
    more: dict[str, Any] = field(default_factory=dict)

    def inputs(self, stage: Stage) -> list[Any]:
        return [getattr(self, name) if name in TYPED else self.more[name] for name in stage.takes]

    def keep(self, stage: Stage, result: Any) -> None:
        if stage.gives in TYPED:
            setattr(self, stage.gives, result)
        else:
            self.more[stage.gives] = result


TYPED = frozenset(f.name for f in fields(WeekResults)) - {"more"}


def check_declaration(stages: Sequence[Stage]) -> None:
    """A stage may only take what an earlier one gives; names and tasks are unique. Run at import,
    so a wrong table fails the first import, not a batch halfway."""
    given: set[str] = set()
    for stage in stages:
        missing = [name for name in stage.takes if name not in given]
        if missing or stage.gives in given or stage.gives == "more":
            raise TypeError(
                f"stage {stage.name!r} takes {missing or stage.takes} before a stage gives it, "
                f"or gives {stage.gives!r}, which another stage gives (or a reserved name)"
            )
        if (stage.created is not None and stage.result is None) or (stage.item_errors and stage.failed is None):
            raise TypeError(f"stage {stage.name!r}: recorded items need a `result` type, item errors a `failed` kind")
        given.add(stage.gives)
    for attribute in ("name", "task"):
        values = [getattr(s, attribute) for s in stages]
        if len(set(values)) != len(values):
            raise TypeError(f"two stages share a {attribute}: {values}")


def retried_errors(stages: Sequence[Stage]) -> tuple[type[Exception], ...]:
    """Every error some stage is retried on: what stops an item instead of costing it, under Prefect."""
    return tuple(dict.fromkeys(error for stage in stages for error in stage.retry_on))
