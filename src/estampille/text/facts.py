"""Catch invented facts: every figure, price, percentage, date, day, time, URL and @handle in a
draft must come from the post's brief, its listed facts or the brand file.

This is the failure a brand fears most (a "-30%" nobody offered, "open on Sunday" when the shop is
closed), so it is checked in code, span by span, and every unsupported span is shown to the
reviewer. Matching is deliberately strict: a span is supported only when the same figure, word or
address appears in the sources.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MONTHS = (
    "janvier|février|fevrier|mars|avril|mai|juin|juillet|août|aout|septembre|octobre|novembre|décembre|"
    "decembre|january|february|march|april|may|june|july|august|september|october|november|december"
)
DAYS = (
    "lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche|monday|tuesday|wednesday|thursday|friday|"
    "saturday|sunday|aujourd'hui|demain|today|tomorrow|tonight|ce soir|ce week-end|this weekend"
)
NUMBER = r"\d+(?:[.,]\d+)?"
# Order matters: the first kind that matches a stretch of text claims it.
PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (
        "url",
        re.compile(
            r"https?://[^\s)]+|www\.[^\s)]+|\b[\w-]+(?:\.[\w-]+)*\.(?:com|fr|net|org|io|eu|co|shop|"
            r"example)\b(?:/[^\s)]*)?",
            re.IGNORECASE,
        ),
    ),
    ("handle", re.compile(r"(?<![\w.])@[A-Za-z0-9_](?:[A-Za-z0-9_.]*[A-Za-z0-9_])?")),
    ("percentage", re.compile(rf"[-−+]?\s?{NUMBER}\s?%")),
    ("price", re.compile(rf"(?:[€$£]\s?{NUMBER}|{NUMBER}\s?(?:€|\$|£|eur\b|euros?\b|dollars?\b))", re.IGNORECASE)),
    ("time", re.compile(r"\b\d{1,2}\s?(?:h|:)\s?\d{0,2}\b|\b\d{1,2}\s?(?:a\.?m\.?|p\.?m\.?)", re.IGNORECASE)),
    (
        "date",
        re.compile(
            rf"\b\d{{1,2}}(?:er)?\s+(?:{MONTHS})\b|\b(?:{MONTHS})\s+\d{{1,2}}(?:st|nd|rd|th)?\b|"
            rf"\b\d{{1,2}}[/.]\d{{1,2}}(?:[/.]\d{{2,4}})?\b",
            re.IGNORECASE,
        ),
    ),
    ("day", re.compile(rf"\b(?:{DAYS})\b", re.IGNORECASE)),
    ("figure", re.compile(rf"(?<![\w#]){NUMBER}(?!\w)")),
]


@dataclass(frozen=True)
class FactSpan:
    start: int
    end: int
    text: str
    kind: str


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold().replace("−", "-")
    text = re.sub(r"(\d),(\d)", r"\1.\2", text)
    return re.sub(r"\s+", "", text)


def _supported(span: str, kind: str, sources: str) -> bool:
    """Whitespace, case and decimal commas aside, the sources must say the same thing."""
    norm = _norm(span)
    if norm in sources:
        return True
    if kind == "figure":  # a bare number is supported by the same number anywhere in the sources
        return re.search(rf"(?<![\d.]){re.escape(norm)}(?![\d])", sources) is not None
    if kind == "url":  # with or without scheme and www
        return re.sub(r"^(https?://)?(www\.)?", "", norm).rstrip("/.") in sources
    return False


def unsupported_facts(text: str, sources: list[str]) -> list[FactSpan]:
    """Spans of `text` stating a fact that none of `sources` states."""
    corpus = _norm(" ".join(sources))
    claimed = [False] * len(text)
    spans: list[FactSpan] = []
    for kind, pattern in PATTERNS:
        for match in pattern.finditer(text):
            start, end = match.span()
            while kind == "url" and end > start and text[end - 1] in ".,;:!?'\"»":
                end -= 1  # sentence punctuation after an address is not part of it
            if any(claimed[start:end]):
                continue
            for i in range(start, end):
                claimed[i] = True
            if not _supported(text[start:end], kind, corpus):
                spans.append(FactSpan(start, end, text[start:end], kind))
    return sorted(spans, key=lambda s: s.start)
