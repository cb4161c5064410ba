"""Terms that must never reach a post or an image prompt, and the version of that rule set.

Three sources: the brand's banned terms, competitors' names and marks, and living artists
whose names are often used to imitate a style. The version (a hash of all three) is recorded
with every prompt, so a reviewer knows which rules a prompt went through.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..brand import Brand

# Living artists frequently named in image prompts to copy a style. Extend per brand with banned_terms.
LIVING_ARTISTS = (
    "Greg Rutkowski",
    "Beeple",
    "Loish",
    "Ross Tran",
    "Artgerm",
    "Sam Yang",
    "WLOP",
    "Ilya Kuvshinov",
    "Karla Ortiz",
    "Simon Stålenhag",
    "James Jean",
    "Yoshitaka Amano",
    "Hayao Miyazaki",
    "Kim Jung Gi",
    "Banksy",
    "Jeff Koons",
    "Yayoi Kusama",
    "Kaws",
)


@dataclass(frozen=True)
class Guardrails:
    terms: dict[str, str]  # term -> reason ("banned term", "competitor", "living artist")

    @property
    def version(self) -> str:
        listing = "\n".join(f"{reason}:{term.casefold()}" for term, reason in sorted(self.terms.items()))
        return "gr-" + hashlib.sha256(listing.encode()).hexdigest()[:12]

    def find(self, text: str) -> list[tuple[str, str]]:
        """(term, reason) for each guarded term present in `text`, case-insensitive, whole words."""
        return [(term, reason) for term, reason in self.terms.items() if _pattern(term).search(text)]

    def scrub(self, text: str) -> tuple[str, list[tuple[str, str]]]:
        """`text` without any guarded term, and what was removed."""
        hits = self.find(text)
        for term, _ in hits:
            text = _pattern(term).sub("", text)
        text = re.sub(r"[ \t]{2,}", " ", text)
        text = re.sub(r"\s+([,.;:!?])", r"\1", text)
        return text.strip(), hits


def _pattern(term: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(term)}(?!\w)", re.IGNORECASE)


def guardrails_for(brand: Brand) -> Guardrails:
    terms: dict[str, str] = {artist: "living artist" for artist in LIVING_ARTISTS}
    for competitor in brand.competitors:
        terms[competitor.name] = "competitor"
        for mark in competitor.marks:
            terms[mark] = "competitor mark"
    for term in brand.banned_terms:
        terms[term] = "banned term"
    return Guardrails(terms)
