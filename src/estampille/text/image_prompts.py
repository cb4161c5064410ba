"""Turn a draft into an image prompt: the LLM describes a scene, the brand's visual rules
style it, and the guardrails remove any banned term, competitor mark or living artist."""

from __future__ import annotations

import re
from pathlib import Path

from ..brand import Brand
from ..keys import derived_seed
from ..records import Draft, ImagePrompt, Slot
from . import templates
from .guardrails import Guardrails
from .llm import ChatModel

PROMPT_MAX_TOKENS = 60
MAX_SCENE_WORDS = 30
TEMPLATES = ("image_prompt_system", "image_prompt_user")


def scene_from_answer(answer: str, fallback: str) -> str:
    """First sentence of the answer, bounded in words; the brief when the answer is empty."""
    text = re.sub(r"\s+", " ", re.sub(r"[\"{}\[\]#*]", " ", answer)).strip()
    sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0] if text else ""
    words = sentence.split()[:MAX_SCENE_WORDS]
    return " ".join(words).rstrip(".") or fallback


def styled_prompt(scene: str, brand: Brand) -> str:
    visual = brand.visual
    parts = [scene, visual.style]
    if visual.palette:
        parts.append("colour palette " + ", ".join(visual.palette))
    if visual.composition:
        parts.append(visual.composition)
    return ", ".join(p.strip() for p in parts if p.strip())


def write_image_prompt(
    model: ChatModel,
    brand: Brand,
    slot: Slot,
    draft: Draft,
    guardrails: Guardrails,
    prompt_id: str,
    brand_dir: Path | None = None,
) -> ImagePrompt:
    """The scene comes from the model, the style from the brand; the guardrails have the last word."""
    messages = [
        {"role": "system", "content": templates.render("image_prompt_system", brand_dir=brand_dir)},
        {
            "role": "user",
            "content": templates.render(
                "image_prompt_user", brand_dir=brand_dir, brief=slot.post.brief, alt_text=draft.alt_text
            ),
        },
    ]
    seed = derived_seed(draft.draft_id)
    completion = model.complete(messages, max_tokens=PROMPT_MAX_TOKENS, seed=seed)
    scene = scene_from_answer(completion.text, fallback=slot.post.brief)
    prompt, removed = guardrails.scrub(styled_prompt(scene, brand))
    negative, _ = guardrails.scrub(brand.visual.negative_prompt)
    return ImagePrompt(
        prompt_id=prompt_id,
        draft_id=draft.draft_id,
        slot_id=slot.slot_id,
        prompt=prompt,
        negative_prompt=negative,
        guardrails_version=guardrails.version,
        removed_terms=removed,
        llm={
            **completion.record,
            "template_version": templates.version(*TEMPLATES, brand_dir=brand_dir),
            "raw_answer": completion.text,
        },
    )
