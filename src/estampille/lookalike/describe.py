"""A lookalike match told to people, written once: the lines of `estampille lookalike check`, the
caption of the batch's side-by-side evidence picture, the match lines of the static review page
and of the web image page, and the audit's region all come from here, so a wording (or a new
field of a match) changes in one place.

Everything reads a `records.Match`, the shape a match has in the ledger; `as_record` makes one
from what the engine found, for the batch (which records it) and for the CLI (which prints it).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from ..records import Match
from .evidence import GRADE_WORDS

if TYPE_CHECKING:  # the review pages and the audit word matches without loading the search (numba, faiss)
    from .engine import Found


def summary(region: dict | None) -> dict | None:
    """A match's region for records and reports: without the inlier pairs (they are for the evidence image)."""
    return {k: v for k, v in region.items() if k != "pairs"} if region else None


def as_record(found: Found, via: str = "render") -> Match:
    """The engine's match as the record the ledger keeps and every view reads. `via`: what was
    searched, the render or the picture an image-to-image render started from."""
    return Match(
        source=found.reference["competitor"],
        reference=found.reference["source"],
        distances=found.hit.distances,
        verdict="lookalike" if found.blocking else "similar",
        via=via,
        tier=found.hit.tier,
        region=summary(found.hit.region),
        grade=found.verification.grade,
        verification=found.verification.as_dict(),
    )


def grade(match: Match) -> str:
    """COPY, DERIVED PART, UNVERIFIED MATCH, similar composition; the verdict for a match
    recorded before verification graded matches."""
    return GRADE_WORDS.get(match.grade or "", match.verdict)


def headline(match: Match) -> str:
    """'COPY (render, hash+features): Boulangerie X': the grade, what was searched and which tier found it."""
    return f"{grade(match)} ({match.via}, {match.tier or 'hash'}): {match.source}"


def pixels(match: Match) -> str:
    """What the pixel check found: the share of detailed blocks that agree once the two pictures
    are laid on each other, or why it could not say; empty for a match recorded before it ran."""
    v = match.verification
    if not v:
        return ""
    if v.get("reason"):
        return v["reason"]
    return f"{v['agreement']:.0%} of {v['textured_blocks']} detailed blocks agree ({v['placement'] or 'no placement'})"


def distances(match: Match, within: Collection[str] = ()) -> str:
    """'phash=4* window=9': each hash distance, starred when `within` names it as under its threshold."""
    return "  ".join(f"{k}={d}" + ("*" if k in within else "") for k, d in match.distances.items())


def region(found: Mapping[str, Any] | None) -> str:
    """Where a feature-tier match lies on both pictures, in percent of each side; empty without one."""
    if not found:
        return ""

    def box(b: list[float]) -> str:
        return f"x {b[0]:.0%}–{b[2]:.0%}, y {b[1]:.0%}–{b[3]:.0%}"

    return (
        f"{found['inliers']} keypoints in place: their part {box(found['reference_box'])} is this image's "
        f"{box(found['query_box'])} (scale {found['scale']}, rotation {found['rotation']}°"
        + (", mirrored" if found.get("mirrored") else "")
        + ")"
    )


def caption(match: Match, within: Collection[str] = ()) -> str:
    """The evidence picture's caption: the headline and the pixel check, then the distances."""
    return f"{headline(match)}; {pixels(match)}\n{distances(match, within)}"


def lines(match: Match, thresholds: Mapping[str, int]) -> list[str]:
    """The terminal lines of one match (`estampille lookalike check`)."""
    limits = " ".join(f"{k}<={t}" for k, t in thresholds.items())
    found = [f"{headline(match)}: {match.reference}", f"  {distances(match)}  (thresholds {limits})"]
    found += [f"  pixels: {pixels(match)}"] if match.verification else []
    found += [f"  features: {region(match.region)}"] if match.region else []
    return found
