"""Is a caption language? The gate every variant passes before a reviewer reads it.

Rules in code catch what a platform forbids; this catches what a reader would laugh at: misspelt
or invented words, words or sentences in another language, an ending cut mid-word or
mid-sentence, a text that loops or turns into a list, and a caption that has drifted off its brief.

Dictionaries are word-frequency lists (`wordfreq`, which ships them: a word it has never seen
in a language is not a word of that language); languages come from `py3langid` (a
naive-Bayes identifier that ships its model); relevance is the cosine of the sentence model the
variety check already loads. Thresholds live in `quality.yaml`, chosen on the labelled captions in
`tests/data/captions.yaml` (see `bench/quality_gate.py`).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

THRESHOLDS_FILE = Path(__file__).with_name("quality.yaml")
OTHER_LANGUAGES = ("en", "fr", "es", "it", "de", "pt", "nl")
WORD = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*")
ADDRESS = r"(?:https?://|www\.)\S*[^\s.,;:!?)»]|\b[\w\-]+(?:\.[\w\-]+)*\.(?:com|fr|net|org|io|eu|example)\b(?:/\S*[^\s.,;:!?)»])?"
NOT_WORDS = re.compile(rf"{ADDRESS}|[#@][\w.\-]+")
TRAILING_TAGS = re.compile(rf"(?:\s*(?:{ADDRESS}|[#@][\w.\-]+))+\s*$")  # what a caption may end on
SENTENCE_END = re.compile(r"[.!?…»\"”)\]]\s*$|[^\w\s,;:'’\-(«\[]\s*$")  # punctuation, or an emoji / symbol
SENTENCE = re.compile(r"[^.!?…]+[.!?…]*")

KINDS = {  # problem kind -> what the reviewer reads
    "unknown": "misspelt or unknown words",
    "language": "wrong or mixed language",
    "truncated": "truncated ending",
    "loop": "loops or lists",
    "off_topic": "off the brief",
}


@dataclass(frozen=True)
class Problem:
    kind: str  # one of KINDS
    detail: str
    spans: tuple[tuple[int, int], ...] = ()  # where in the caption (for the review page)

    def __str__(self) -> str:
        return f"{KINDS[self.kind]}: {self.detail}"


@dataclass(frozen=True)
class Quality:
    problems: list[Problem]
    scores: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.problems

    def flag(self) -> str:
        return "LOW QUALITY: " + "; ".join(map(str, self.problems))

    def record(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "problems": [str(p) for p in self.problems],
            "kinds": sorted({p.kind for p in self.problems}),
            "scores": self.scores,
            "thresholds": thresholds_version(),
        }


@functools.lru_cache(maxsize=1)
def thresholds() -> dict[str, Any]:
    return yaml.safe_load(THRESHOLDS_FILE.read_text(encoding="utf-8"))


def thresholds_version() -> str:
    return str(thresholds()["version"])


def vocabulary(texts: Iterable[str]) -> frozenset[str]:
    """The words a brand and its brief use, known whatever the dictionary says."""
    return frozenset(
        w.casefold() for text in texts for w in WORD.findall(text or "") for w in (w, *re.split(r"['’\-]", w))
    )


@functools.lru_cache(maxsize=20000)
def _zipf(word: str, language: str) -> float:
    from wordfreq import zipf_frequency

    return zipf_frequency(word, language)


def _word_zipf(word: str, language: str) -> float:
    """A compound (`rendez-vous`, `l'été`) is as known as its rarest part when the whole is not listed."""
    whole = _zipf(word, language)
    parts = [p for p in re.split(r"['’\-]", word) if p]
    if whole > 0 or len(parts) < 2:
        return whole
    return min(_zipf(p, language) for p in parts)


@functools.cache
def _dictionary(language: str):
    """pyspellchecker's word list for `language` (None where it has none): web frequency lists
    hold common misspellings ("delicous"), an edited dictionary does not."""
    from spellchecker import SpellChecker

    try:
        return SpellChecker(language=language, distance=1)
    except ValueError:
        return None


def _in_dictionary(word: str, language: str) -> bool:
    dictionary = _dictionary(language)
    parts = [p for p in re.split(r"['’\-]", word) if len(p) > 2]
    return dictionary is None or word in dictionary or bool(parts) and all(p in dictionary for p in parts)


def _suggestion(word: str, language: str, own: float, margin: float) -> str | None:
    """The dictionary word one edit away that is far more common than `word` (`delicous` ->
    `delicious`): what tells a typo from a rare inflection (`alvéolée`), which has none."""
    dictionary = _dictionary(language)
    if dictionary is None or len(word) > 30:
        return None
    candidates = [c for c in dictionary.edit_distance_1(word) if c != word and c in dictionary]
    best = max(candidates, key=lambda c: _zipf(c, language), default=None)
    return best if best and _zipf(best, language) >= own + margin and _zipf(best, language) > 0 else None


@functools.lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify(text: str, candidates: Iterable[str]) -> tuple[str, float]:
    """(language, probability) among `candidates`."""
    identifier = _identifier()
    identifier.set_languages(sorted(set(candidates)))
    language, probability = identifier.classify(text)
    return language, float(probability)


def _words(caption: str) -> list[tuple[str, int, int, bool]]:
    """(word, start, end, starts a sentence), hashtags, handles and addresses left out."""
    masked = NOT_WORDS.sub(lambda m: " " * len(m.group(0)), caption)
    out = []
    for match in WORD.finditer(masked):
        before = masked[: match.start()].rstrip()
        out.append((match.group(0), match.start(), match.end(), not before or before[-1] in '.!?…:«"“'))
    return out


def _is_name(word: str, sentence_start: bool) -> bool:
    return not sentence_start and word[:1].isupper()


def check(
    caption: str,
    *,
    language: str,
    brief: str = "",
    known: frozenset[str] = frozenset(),
    hit_token_limit: bool = False,
    relevance: float | None = None,
) -> Quality:
    """Every problem of `caption` as a post in `language`. `relevance` is its cosine to the brief
    (None: not measured); `hit_token_limit` says the model stopped at max_tokens."""
    limits = thresholds()
    words = _words(caption)
    problems: list[Problem] = []
    scores: dict[str, Any] = {"words": len(words)}
    others = [lang for lang in OTHER_LANGUAGES if lang != language]

    unknown, foreign = [], []
    for word, start, end, first in words:
        low = word.casefold()
        if len(low) < 2 or low in known or _is_name(word, first):
            continue
        own = _word_zipf(low, language)
        if own >= limits["known_zipf"]:
            continue
        best_other, other_lang = max((_word_zipf(low, o), o) for o in others)
        if best_other >= limits["foreign_min_zipf"] and best_other - own >= limits["foreign_margin"]:
            foreign.append((word, start, end, other_lang))
        elif len(low) >= limits["unknown_min_length"]:
            if own <= limits["unknown_zipf"]:
                unknown.append((word, start, end, _suggestion(low, language, own, 0.0)))
            elif not _in_dictionary(low, language):
                better = _suggestion(low, language, own, limits["typo_margin"])
                if better:
                    unknown.append((word, start, end, better))
    scores["unknown_ratio"] = round(len(unknown) / max(len(words), 1), 3)
    if len(unknown) >= limits["unknown_min_count"]:
        problems.append(
            Problem(
                "unknown",
                ", ".join(f"'{w}'" + (f" ({better}?)" if better else "") for w, _, _, better in unknown[:8]),
                tuple((s, e) for _, s, e, _ in unknown),
            )
        )

    language_spans = [(s, e) for _, s, e, _ in foreign]
    details = [f"'{w}' ({lang})" for w, _, _, lang in foreign[:6]]
    candidates = [language, *others]
    judged = []  # (language, span) of each sentence long enough to judge
    for sentence in SENTENCE.finditer(caption):
        if len(WORD.findall(sentence.group(0))) >= limits["language_min_words"]:
            found, probability = identify(sentence.group(0), candidates)
            if found != language and probability < limits["language_min_probability"]:
                found = language  # not sure enough to call it another language
            judged.append((found, sentence.span(), sentence.group(0).strip()))
    if not judged and len(words) >= limits["language_min_words"]:
        found, probability = identify(caption, candidates)
        judged = [
            (found if probability >= limits["language_min_probability"] else language, (0, len(caption)), caption)
        ]
    strays = [j for j in judged if j[0] != language]
    scores["sentences_in_other_language"] = len(strays)
    if strays and len(strays) == len(judged):
        details.insert(0, f"the caption is in {strays[0][0]}, not {language}")
        language_spans = [(0, len(caption))]
    else:
        details += [f"a sentence in {found}: '{text[:60]}'" for found, _, text in strays]
        language_spans += [span for _, span, _ in strays]
    if details:
        problems.append(Problem("language", "; ".join(details), tuple(language_spans)))

    ending = _truncated_ending(caption, words, unknown, hit_token_limit)
    if ending:
        problems.append(ending)

    loops = _loops(caption, words, limits)
    if loops:
        problems.append(Problem("loop", "; ".join(loops)))

    if relevance is not None and brief:
        shared = _shared_stems(caption, brief, limits["stem_length"])
        scores["relevance"] = {"cosine": round(relevance, 3), "shared_words": len(shared)}
        if relevance < limits["relevance_min"] or (relevance < limits["relevance_unshared_min"] and not shared):
            problems.append(
                Problem(
                    "off_topic",
                    f"similarity to the brief {relevance:.2f}" + ("" if shared else ", and no word of the brief"),
                )
            )
    return Quality(problems, scores)


def _truncated_ending(caption: str, words, unknown, hit_token_limit: bool) -> Problem | None:
    text = caption.rstrip()
    if not text or not words or TRAILING_TAGS.search(text):
        return None  # ending on an address, a handle or hashtags is a finished caption
    last_word, start, end, _ = words[-1]
    tail = text[start:].strip()
    mid_word = end == len(text) and any(u[1] == start for u in unknown)
    mid_sentence = not SENTENCE_END.search(text)
    if not (mid_word or mid_sentence):
        return None
    what = "ends mid-word" if mid_word else "ends mid-sentence"
    limit = " at the token limit" if hit_token_limit else ""
    return Problem("truncated", f"{what}{limit}: '…{tail[-40:]}'", ((start, len(text)),))


def _shared_stems(caption: str, brief: str, length: int) -> set[str]:
    """Content words of the brief the caption uses too, compared on their first letters (a crude
    stem: `façonnent`/`façonné`, `bakers`/`baker`)."""

    def stems(text: str) -> set[str]:
        return {w.casefold()[:length] for w in WORD.findall(text) if len(w) >= length}

    return stems(caption) & stems(brief)


def _loops(caption: str, words, limits: dict[str, Any]) -> list[str]:
    """Repeated word n-grams, long comma lists, and runs of words on one prefix (`le déjà, le
    délai, le décadre…`): what a small model writes when it has lost the thread."""
    found = []
    tokens = [w.casefold() for w, *_ in words]
    n = limits["loop_ngram"]
    grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    gram, count = grams.most_common(1)[0] if grams else ((), 0)
    if count >= limits["loop_ngram_repeats"]:
        found.append(f"'{' '.join(gram)}' {count} times")
    pairs = [tuple(tokens[i : i + 2]) for i in range(len(tokens) - 1)]
    if len(tokens) >= limits["repeat_min_words"]:
        share = 1 - len(set(pairs)) / len(pairs)
        if share >= limits["repeat_share"]:
            found.append(f"{share:.0%} of its word pairs are repeats")
    for sentence in SENTENCE.findall(caption):
        items = [i for i in sentence.split(",") if i.strip()]
        if len(items) >= limits["list_items"]:
            found.append(f"a list of {len(items)} items")
            break
    run, best, prefix = 0, (0, ""), ""
    for token in tokens:
        if len(token) < limits["prefix_min_length"]:
            continue
        if token[:2] == prefix:
            run += 1
        else:
            prefix, run = token[:2], 1
        best = max(best, (run, prefix))
    if best[0] >= limits["prefix_run"]:
        found.append(f"{best[0]} words in a row start with '{best[1]}'")
    return found


def relevance(caption: str, brief: str) -> float | None:
    """Cosine of caption and brief, or None without the sentence model (a character ratio says
    nothing about topic, so the check is skipped rather than faked)."""
    from . import variety

    if not brief.strip() or variety.model_folder() is None:
        return None
    return variety.similarity(caption, brief)
