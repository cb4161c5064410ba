"""Draft post variants with the LLM, then enforce the brand's and platform's rules in code.

A model may ignore instructions; nothing here depends on it obeying. Answers are parsed (JSON
against a schema where the endpoint supports it, plain text otherwise), repaired or retried a
bounded number of times; then hashtags are capped, the caption is cut to the platform's limit,
banned and competitor terms are removed, the disclosure line is added where policy says so,
every figure, date, URL and @handle is checked against the brief and the brand file; a variant
that fails the language-quality gate (`quality.py`) or is too close to another of its slot is
written again with another seed. What had to be repaired, and what still breaks a rule or
fails the gate, is flagged for the reviewer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .. import keys
from ..brand import Brand, Post
from ..errors import LLMError
from ..keys import derived_seed
from ..platforms import counted_length
from ..records import Draft, Slot
from . import quality, templates, variety
from .facts import unsupported_facts
from .guardrails import Guardrails
from .llm import ChatModel

HASHTAG = re.compile(r"#[\w\u00C0-\u024F]+")
DRAFT_MAX_TOKENS = 160
PLAIN_MAX_TOKENS = 60  # a small local model loops and drifts past two sentences (bench/demo_drafts.py)
MAX_ATTEMPTS = 3  # answers that cannot be used are asked for again, this many times in all
TEMPLATES = ("draft_system", "draft_user", "draft_json", "audience", "draft_plain_system", "draft_plain_user")
REFUSAL = re.compile(
    r"^\s*(i'?m sorry|i am sorry|i can(no|')t (help|assist)|as an ai|je suis désolée?, mais|"
    r"je ne peux pas)",
    re.IGNORECASE,
)


class DraftFields(BaseModel):
    """The structured answer asked of the model (also its JSON schema)."""

    model_config = ConfigDict(extra="forbid", title="draft")

    caption: str
    hashtags: list[str]
    call_to_action: str
    alt_text: str
    language: str


DRAFT_SCHEMA = {**DraftFields.model_json_schema(), "additionalProperties": False}


def draft_messages(brand: Brand, post: Post, structured: bool, brand_dir: Path | None = None) -> list[dict[str, str]]:
    """System prompt with the brand's voice; user prompt with examples (few-shot), audience, brief.
    A model that cannot hold a schema (the embedded one) gets `plain_messages` instead."""
    if not structured:
        return plain_messages(brand, post, brand_dir)
    rules = brand.rules_for(post.platform)
    audience = brand.audiences.get(post.audience) if post.audience else None
    locale = audience.locale if audience else post.language
    examples = "".join(f"« {e.text} »\n" for e in brand.voice.examples if e.language == post.language)
    audience_text = (
        templates.render(
            "audience",
            post.language,
            brand_dir,
            region=audience.region,
            locale=audience.locale,
            culture=audience.culture,
            interests=", ".join(audience.interests),
            tone=audience.tone,
        )
        if audience
        else ""
    )
    system = templates.render(
        "draft_system",
        post.language,
        brand_dir,
        brand=brand.name,
        tone=brand.voice.tone,
        do="; ".join(brand.voice.do),
        dont="; ".join(brand.voice.dont),
    )
    user = templates.render(
        "draft_user",
        post.language,
        brand_dir,
        platform=post.platform.capitalize(),
        max_chars=rules.max_chars,
        max_hashtags=rules.max_hashtags,
        brief=post.brief,
        facts="; ".join(post.facts) or "-",
        examples=examples,
        audience=audience_text,
        format=templates.render("draft_json", post.language, brand_dir, locale=locale) if structured else "",
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def plain_messages(brand: Brand, post: Post, brand_dir: Path | None = None) -> list[dict[str, str]]:
    """For a small model: a short system prompt, each voice example of the post's language as a
    finished exchange (its first sentence as the topic, the example as the answer), then the
    brief. Long instructions are what a 135M model repeats back instead of following; an example
    answer is what it imitates (measured with bench/demo_drafts.py)."""

    def user(topic: str) -> dict[str, str]:
        return {"role": "user", "content": templates.render("draft_plain_user", post.language, brand_dir, brief=topic)}

    messages = [
        {
            "role": "system",
            "content": templates.render("draft_plain_system", post.language, brand_dir, brand=brand.name),
        }
    ]
    for example in (e for e in brand.voice.examples if e.language == post.language):
        answer = HASHTAG.sub("", example.text).strip()
        topic = re.split(r"(?<=[.!?])\s", answer, maxsplit=1)[0]
        messages += [user(topic), {"role": "assistant", "content": answer}]
    return messages + [user(post.brief)]


def draft_key(brand_version: str, slot_id: str, variant: int, model: ChatModel, template_version: str) -> str:
    """Everything that decides a draft: brand files, slot, variant, model, templates, limits, gate."""
    return keys.draft_key(
        brand_version,
        slot_id,
        variant,
        model.describe(),
        template_version,
        DRAFT_MAX_TOKENS,
        PLAIN_MAX_TOKENS,
        MAX_ATTEMPTS,
        quality.thresholds_version(),
    )


def variant_seed(slot_id: str, variant: int, attempt: int = 0) -> int:
    return derived_seed(slot_id, variant, attempt)


def has_words(text: str, at_least: int = 3) -> bool:
    """Junk guard: a caption needs a few real words (letters, two or more each)."""
    return len(re.findall(r"[^\W\d_]{2,}", text)) >= at_least


def parse_structured(text: str) -> dict[str, Any]:
    """The JSON answer, repaired where that is safe (prose around it, a hashtag string instead
    of a list); ValueError naming the problem when it cannot be used."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if not match:
        raise ValueError("malformed JSON (unterminated object)" if "{" in text else "the answer holds no JSON object")
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError as exc:
        raise ValueError(f"malformed JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ValueError("the JSON is not an object")
    if isinstance(data.get("hashtags"), str):
        data["hashtags"] = HASHTAG.findall(data["hashtags"])
    data.setdefault("call_to_action", "")
    data.setdefault("alt_text", "")
    data.setdefault("language", "")
    try:
        fields = DraftFields.model_validate(data).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"wrong schema: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if not has_words(fields["caption"]):
        raise ValueError("the caption has fewer than three words")
    return {k: fields[k].strip() if isinstance(fields[k], str) else fields[k] for k in fields}


def parse_plain(text: str) -> tuple[dict[str, Any], list[str]]:
    """The fields of a plain-text answer: a JSON object if the model gave one anyway, else the text
    with its hashtags pulled out, repeats removed and an unfinished last sentence dropped."""
    try:
        return parse_structured(text), []
    except ValueError:
        pass
    cleaned = drop_repeats(re.sub(r"[{}\[\]\"]", "", text).strip())
    caption = re.sub(r"[ \t]{2,}", " ", HASHTAG.sub("", cleaned)).strip()
    flags = []
    finished = re.match(r"(?s)(.*[.!?…])\s", caption + " ")
    if finished and finished.group(1).strip() != caption:
        caption = finished.group(1).strip()
        flags.append("answer stopped mid-sentence: unfinished sentence dropped")
    if not has_words(caption):
        raise ValueError("the answer has no usable caption")
    return {
        "caption": caption,
        "hashtags": HASHTAG.findall(cleaned),
        "call_to_action": "",
        "alt_text": "",
        "language": "",
    }, flags


def parse_answer(text: str, structured: bool) -> tuple[dict[str, Any], list[str]]:
    """Fields and repair flags of an answer. An endpoint that accepts `response_format` and ignores
    it (`transformers serve` does) answers in prose: that prose is used, and flagged, rather
    than asked for three times in a format the server will never enforce."""
    if not structured:
        return parse_plain(text)
    try:
        return parse_structured(text), []
    except ValueError as exc:
        if "{" in text or not looks_like_prose(text):
            raise
        fields, flags = parse_plain(text)
        return fields, [
            f"the endpoint answered without the JSON asked for ({exc}): caption taken from its text",
            *flags,
        ]


def looks_like_prose(text: str, share: float = 0.85) -> bool:
    """Mostly letters, spaces and sentence punctuation: prose, not junk or broken markup."""
    ordinary = sum(c.isalpha() or c.isspace() or c in ".,;:!?'’-…()«»\"#@0123456789" for c in text)
    return bool(text.strip()) and ordinary / len(text) >= share


def drop_repeats(text: str) -> str:
    """Small models loop: keep each sentence once and stop at a phrase stuck on repeat."""
    seen, kept = set(), []
    for sentence in re.split(r"(?<=[.!?\n])\s+", text):
        norm = re.sub(r"\W+", " ", sentence).strip().casefold()
        if re.search(r"\b(\w+(?: \w+){0,3})(?: \1){2,}", norm):
            break
        if norm and norm not in seen:
            seen.add(norm)
            kept.append(sentence.strip())
    return " ".join(kept)


def normalise_hashtags(tags: list[str]) -> list[str]:
    seen, out = set(), []
    for tag in tags:
        tag = "#" + re.sub(r"[^\w\u00C0-\u024F]", "", tag.lstrip("#"))
        if len(tag) > 1 and tag.casefold() not in seen:
            seen.add(tag.casefold())
            out.append(tag)
    return out


def compose_post(
    caption: str, call_to_action: str, hashtags: list[str], disclosure: str | None, separator: str = "\n\n"
) -> str:
    parts = [caption.strip()]
    if call_to_action and call_to_action not in caption:
        parts[0] = f"{parts[0]} {call_to_action}".strip()
    if hashtags:
        parts.append(" ".join(hashtags))
    if disclosure:
        parts.append(disclosure)
    return separator.join(p for p in parts if p)


def enforce_rules(
    fields: dict[str, Any], brand: Brand, post: Post, guardrails: Guardrails
) -> tuple[dict[str, Any], str, list[str]]:
    """Apply every rule in code; return the repaired fields, the final text and the flags."""
    rules = brand.rules_for(post.platform)
    flags: list[str] = []
    caption, removed = guardrails.scrub(fields["caption"])
    cta, removed_cta = guardrails.scrub(fields["call_to_action"])
    flags += [f"removed {reason} '{term}'" for term, reason in removed + removed_cta]
    tags = normalise_hashtags(fields["hashtags"])
    tags = [t for t in tags if not guardrails.find(t.lstrip("#"))]
    if len(tags) > rules.max_hashtags:
        flags.append(f"hashtags cut from {len(tags)} to {rules.max_hashtags} ({post.platform} rule)")
        tags = tags[: rules.max_hashtags]
    disclosure = brand.disclosure.lines.get(post.language) if brand.disclosure.required_on(post.platform) else None
    text = compose_post(caption, cta, tags, disclosure)
    length = counted_length(text, post.platform)
    if length > rules.max_chars:
        budget = len(caption) - (length - rules.max_chars) - 1
        if budget < 20:
            tags, cta = [], ""
            budget = rules.max_chars - counted_length(compose_post("", "", [], disclosure), post.platform) - 3
        caption = _cut_at_word(caption, max(budget, 0))
        flags.append(f"caption cut to fit {rules.max_chars} characters ({post.platform} rule)")
        text = compose_post(caption, cta, tags, disclosure)
    if rules.max_line_breaks is not None and text.count("\n") > rules.max_line_breaks:
        caption = re.sub(r"\s*\n\s*", " ", caption)
        for separator in ("\n\n", "\n", " "):
            text = compose_post(caption, cta, tags, disclosure, separator)
            if text.count("\n") <= rules.max_line_breaks:
                break
        flags.append(f"line breaks reduced to {text.count(chr(10))} ({post.platform} rule)")
    if counted_length(text, post.platform) > rules.max_chars:
        flags.append(f"BREAKS RULE: still over {rules.max_chars} characters after repair")
    if not caption:
        flags.append("empty caption")
    return {**fields, "caption": caption, "call_to_action": cta, "hashtags": tags}, text, flags


def _cut_at_word(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + "…" if cut else ""


def fact_sources(brand: Brand, post: Post) -> list[str]:
    """What a draft may state: the post's brief and facts, and the brand file's own facts."""
    return [
        post.brief,
        *post.facts,
        brand.name,
        brand.handle or "",
        brand.website or "",
        *brand.disclosure.lines.values(),
        *(e.text for e in brand.voice.examples),
    ]


def known_words(brand: Brand, post: Post) -> frozenset[str]:
    """Words the gate must not call misspelt: the brand's own, the brief's, the audience's."""
    audience = brand.audiences.get(post.audience) if post.audience else None
    extra = [audience.region, audience.culture, *audience.interests] if audience else []
    return quality.vocabulary([*fact_sources(brand, post), *brand.voice.vocabulary, *extra])


def judge(caption: str, brand: Brand, post: Post, completion: dict[str, Any] | None = None) -> quality.Quality:
    """The language-quality gate on one caption of `post`."""
    hit_limit = completion is not None and completion.get("finish_reason") == "length"
    return quality.check(
        caption,
        language=post.language,
        brief=post.brief,
        known=known_words(brand, post),
        hit_token_limit=hit_limit,
        relevance=quality.relevance(caption, post.brief),
    )


@dataclass(frozen=True)
class Candidate:
    """The best answer so far among a variant's attempts, and why it ranks where it does."""

    fields: dict[str, Any]  # caption, hashtags, call to action, alt text, as parsed
    parse_flags: list[str]  # repairs made while parsing
    similarity: float  # to the slot's other variants
    rank: tuple[int, bool, float]  # (quality problems, near-duplicate, similarity): lower is better
    completion: dict[str, Any]  # the call's record (the quality gate reads its language scores)


def write_draft(
    model: ChatModel,
    brand: Brand,
    slot: Slot,
    variant: int,
    guardrails: Guardrails,
    draft_id: str,
    others: Sequence[str] = (),
    brand_dir: Path | None = None,
) -> Draft:
    """One variant for one slot: ask, parse, repair, retry (bounded), enforce, check facts and
    variety. Raises LLMError, for this variant only, when no usable answer came."""
    post = slot.post
    audience = brand.audiences.get(post.audience) if post.audience else None
    messages = draft_messages(brand, post, model.structured, brand_dir)
    calls: list[dict[str, Any]] = []
    problems: list[str] = []
    best: Candidate | None = None
    for attempt in range(MAX_ATTEMPTS):
        try:
            completion = model.complete(
                messages,
                max_tokens=DRAFT_MAX_TOKENS if model.structured else PLAIN_MAX_TOKENS,
                seed=variant_seed(slot.slot_id, variant, attempt),
                json_schema=DRAFT_SCHEMA if model.structured else None,
            )
        except LLMError as exc:
            raise type(exc)(
                str(exc), calls + [{**model.describe(), "attempt": attempt + 1, "error": str(exc)}]
            ) from None
        call = {**completion.record, "attempt": attempt + 1, "raw_answer": completion.text}
        repeated = any(c["raw_answer"] == completion.text for c in calls)
        calls.append(call)
        if repeated:  # greedy servers (transformers serve) ignore seed and temperature: asking again is waste
            problems.append(
                "the endpoint gave the same answer for another seed (it ignores `seed` and "
                "sampling), so it was not asked again"
            )
            call["problem"] = "same answer as an earlier attempt"
            break
        if REFUSAL.match(completion.text):
            raise LLMError(f"the LLM refused: {completion.text.strip()[:160]}", calls)
        try:
            fields, parse_flags = parse_answer(completion.text, model.structured)
        except ValueError as exc:
            call["problem"] = str(exc)
            problems.append(str(exc))
            continue
        similar = variety.max_similarity(fields["caption"], list(others))
        gate = judge(fields["caption"], brand, post, completion.record)
        call["similarity"] = round(similar, 3)
        call["quality"] = [str(p) for p in gate.problems]
        rank = (len(gate.problems), similar > variety.NEAR_DUPLICATE, similar)
        if best is None or rank < best.rank:
            best = Candidate(fields, parse_flags, similar, rank, completion.record)
        if gate.passed and similar <= variety.NEAR_DUPLICATE:
            break
        problems += [gate.flag()] if not gate.passed else []
        if similar > variety.NEAR_DUPLICATE:
            problems.append(f"too close to another variant (similarity {similar:.2f})")
    if best is None:
        raise LLMError(f"no usable draft after {len(calls)} attempts: {'; '.join(problems)}", calls)
    parse_flags, similar, answer = best.parse_flags, best.similarity, best.completion
    fields, text, rule_flags = enforce_rules(best.fields, brand, post, guardrails)
    if similar > variety.NEAR_DUPLICATE:
        rule_flags.append(f"near-duplicate of another variant (similarity {similar:.2f} after {len(calls)} attempts)")
    gate = judge(fields["caption"], brand, post, answer)  # the caption as published, after repairs
    if not gate.passed:
        rule_flags.append(gate.flag())
    facts = unsupported_facts(text, fact_sources(brand, post))
    fact_flags = [f"unsupported {f.kind} '{f.text}': not in the brief or the brand file" for f in facts]
    if not fields["alt_text"]:
        fields["alt_text"] = f"{brand.name}: {post.brief}"[:250]
    return Draft(
        draft_id=draft_id,
        slot_id=slot.slot_id,
        variant=variant,
        language=post.language,
        locale=audience.locale if audience else post.language,
        audience=post.audience,
        platform=post.platform,
        caption=fields["caption"],
        hashtags=fields["hashtags"],
        call_to_action=fields["call_to_action"],
        alt_text=fields["alt_text"],
        text=text,
        flags=parse_flags + rule_flags + fact_flags,
        fact_spans=[[f.start, f.end, f.kind] for f in facts],
        quality={**gate.record(), "spans": [[start, end, p.kind] for p in gate.problems for start, end in p.spans]},
        similarity={"max_to_other_variants": round(similar, 3), "method": variety.method()},
        llm={
            "calls": calls,
            "attempts": len(calls),
            **{k: v for k, v in calls[-1].items() if k in ("backend", "host", "model")},
            "template_version": templates.version(*TEMPLATES, language=post.language, brand_dir=brand_dir),
        },
    )
