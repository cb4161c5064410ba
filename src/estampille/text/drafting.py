"""Draft post variants with the LLM, then enforce the brand's and platform's rules in code.

A model may ignore instructions; the rules here do not depend on it: hashtags are capped,
the caption is cut to the platform's limit, banned and competitor terms are removed, the
disclosure line is added where policy says so, and whatever had to be repaired is flagged.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from ..brand import Brand, Post
from ..records import Draft, Slot
from . import templates
from .guardrails import Guardrails
from .llm import ChatModel

HASHTAG = re.compile(r"#[\w\u00C0-\u024F]+")
DRAFT_MAX_TOKENS = 120
TEMPLATES = ("draft_system", "draft_user")


def draft_messages(brand: Brand, post: Post) -> list[dict[str, str]]:
    rules = brand.platforms[post.platform]
    examples = "".join(f"« {e.text} »\n" for e in brand.voice.examples if e.language == post.language)
    system = templates.render(
        "draft_system", post.language, brand=brand.name, tone=brand.voice.tone,
        do="; ".join(brand.voice.do), dont="; ".join(brand.voice.dont))
    user = templates.render(
        "draft_user", post.language, platform=post.platform.capitalize(), max_chars=rules.max_chars,
        max_hashtags=rules.max_hashtags, brief=post.brief, facts="; ".join(post.facts) or "-",
        examples=examples)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def variant_seed(slot_id: str, variant: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{slot_id}#{variant}".encode()).digest()[:4], "big")


def parse_draft(text: str) -> tuple[dict[str, Any], list[str]]:
    """The fields of a draft from the model's answer: a JSON object when the model gave one,
    else plain text with its hashtags pulled out and an unfinished last sentence dropped."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if match:
        try:
            data = json.loads(match.group(0))
            if isinstance(data, dict) and isinstance(data.get("caption"), str) and data["caption"].strip():
                tags = data.get("hashtags") or []
                tags = tags if isinstance(tags, list) else HASHTAG.findall(str(tags))
                return {"caption": data["caption"].strip(),
                        "hashtags": [str(t) for t in tags],
                        "call_to_action": str(data.get("call_to_action") or "").strip(),
                        "alt_text": str(data.get("alt_text") or "").strip()}, []
        except json.JSONDecodeError:
            pass
    cleaned = drop_repeats(re.sub(r"[{}\[\]\"]", "", text).strip())
    caption = re.sub(r"[ \t]{2,}", " ", HASHTAG.sub("", cleaned)).strip()
    flags = []
    finished = re.match(r"(?s)(.*[.!?…])\s", caption + " ")
    if finished and finished.group(1).strip() != caption:
        caption = finished.group(1).strip()
        flags.append("answer stopped mid-sentence: unfinished sentence dropped")
    if not caption:
        return {"caption": "", "hashtags": [], "call_to_action": "", "alt_text": ""}, ["empty answer"]
    return {"caption": caption, "hashtags": HASHTAG.findall(cleaned), "call_to_action": "",
            "alt_text": ""}, flags


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


def compose_post(caption: str, call_to_action: str, hashtags: list[str], disclosure: str | None) -> str:
    parts = [caption.strip()]
    if call_to_action and call_to_action not in caption:
        parts[0] = f"{parts[0]} {call_to_action}".strip()
    if hashtags:
        parts.append(" ".join(hashtags))
    if disclosure:
        parts.append(disclosure)
    return "\n\n".join(p for p in parts if p)


def enforce_rules(fields: dict[str, Any], brand: Brand, post: Post,
                  guardrails: Guardrails) -> tuple[dict[str, Any], str, list[str]]:
    """Apply every rule in code; return the repaired fields, the final text and the flags."""
    rules = brand.platforms[post.platform]
    flags: list[str] = []
    caption, removed = guardrails.scrub(fields["caption"])
    cta, removed_cta = guardrails.scrub(fields["call_to_action"])
    flags += [f"removed {reason} '{term}'" for term, reason in removed + removed_cta]
    tags = normalise_hashtags(fields["hashtags"])
    tags = [t for t in tags if not guardrails.find(t.lstrip("#"))]
    if len(tags) > rules.max_hashtags:
        flags.append(f"hashtags cut from {len(tags)} to {rules.max_hashtags} ({post.platform} rule)")
        tags = tags[: rules.max_hashtags]
    disclosure = brand.disclosure.lines.get(post.language) if brand.disclosure.policy == "always" else None
    text = compose_post(caption, cta, tags, disclosure)
    if len(text) > rules.max_chars:
        budget = rules.max_chars - (len(text) - len(caption)) - 1
        if budget < 20:
            tags, cta = [], ""
            budget = rules.max_chars - len(compose_post("", "", [], disclosure)) - 3
        caption = _cut_at_word(caption, max(budget, 0))
        flags.append(f"caption cut to fit {rules.max_chars} characters ({post.platform} rule)")
        text = compose_post(caption, cta, tags, disclosure)
    if rules.max_line_breaks is not None and text.count("\n") > rules.max_line_breaks:
        text = re.sub(r"\n+", " ", text) if rules.max_line_breaks == 0 else text
        flags.append(f"line breaks reduced ({post.platform} rule)")
    if not caption:
        flags.append("empty caption")
    return {**fields, "caption": caption, "call_to_action": cta, "hashtags": tags}, text, flags


def _cut_at_word(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + "…" if cut else ""


def write_draft(model: ChatModel, brand: Brand, slot: Slot, variant: int,
                guardrails: Guardrails, draft_id: str) -> Draft:
    """One variant for one slot: ask, parse, repair, enforce."""
    post = slot.post
    seed = variant_seed(slot.slot_id, variant)
    completion = model.complete(draft_messages(brand, post), max_tokens=DRAFT_MAX_TOKENS, seed=seed)
    fields, parse_flags = parse_draft(completion.text)
    fields, text, rule_flags = enforce_rules(fields, brand, post, guardrails)
    if not fields["alt_text"]:
        fields["alt_text"] = f"{brand.name}: {post.brief}"[:250]
    return Draft(draft_id=draft_id, slot_id=slot.slot_id, variant=variant, language=post.language,
                 platform=post.platform, caption=fields["caption"], hashtags=fields["hashtags"],
                 call_to_action=fields["call_to_action"], alt_text=fields["alt_text"], text=text,
                 flags=parse_flags + rule_flags,
                 llm={**completion.record, "template_version": templates.version(*TEMPLATES, language=post.language),
                      "raw_answer": completion.text})
