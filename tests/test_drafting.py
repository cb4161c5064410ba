"""Drafting against a local OpenAI-compatible server through the real `openai` client: structured
output, repair and bounded retries, refusals, invented facts, variety, audiences, templates."""

from __future__ import annotations

import pytest

from estampille.brand import load_brand
from estampille.errors import LLMError
from estampille.records import Slot
from estampille.text import templates
from estampille.text.drafting import DRAFT_SCHEMA, MAX_ATTEMPTS, write_draft
from estampille.text.guardrails import guardrails_for
from estampille.text.llm import OpenAICompatibleModel

from .conftest import DEMO_BRAND


@pytest.fixture(scope="module")
def bundle():
    return load_brand(DEMO_BRAND)


def _slot(bundle, post_id):
    post = next(p for p in bundle.calendar.posts if p.id == post_id)
    return Slot(slot_id=f"2026-W48/{post.id}", brand="demo", week="2026-W48", post=post)


def _draft(fake_llm, bundle, post_id="croissant-mercredi", variant=0, others=(), brand_dir=None):
    model = OpenAICompatibleModel(fake_llm.base_url, "fake-chat", "sk-x", max_retries=0, timeout_s=5)
    return write_draft(
        model,
        bundle.brand,
        _slot(bundle, post_id),
        variant,
        guardrails_for(bundle.brand),
        "draft-t",
        others=list(others),
        brand_dir=brand_dir,
    )


def test_structured_output_is_requested_with_the_schema_and_every_call_recorded(fake_llm, bundle):
    draft = _draft(fake_llm, bundle)
    request = fake_llm.requests[0]
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["schema"] == DRAFT_SCHEMA
    assert draft.caption.endswith("Le croissant au beurre AOP Charentes-Poitou, feuilletage en 27 couches.")
    assert draft.hashtags == ["#pain", "#lyon"] and draft.alt_text == "Une miche de pain"
    assert draft.flags == [] and draft.fact_spans == []
    call = draft.llm["calls"][0]
    assert call["structured"] == "json_schema" and call["prompt_tokens"] == 42 and call["attempt"] == 1


def test_endpoint_without_schema_support_is_asked_in_the_prompt_instead(fake_llm, bundle):
    fake_llm.schema_support = False
    draft = _draft(fake_llm, bundle)
    assert draft.llm["calls"][0]["structured"] == "prompt" and draft.caption
    assert "JSON" in fake_llm.requests[-1]["messages"][-1]["content"]
    assert "response_format" not in fake_llm.requests[-1]


def test_a_server_that_ignores_the_json_format_still_gives_a_flagged_draft(fake_llm, bundle):
    fake_llm.rules.append(("croissant", "prose"))
    draft = _draft(fake_llm, bundle)
    assert draft.llm["attempts"] == 1 and draft.hashtags == ["#pain", "#lyon"]
    assert draft.caption.endswith("feuilletage en 27 couches.") and "#pain" not in draft.caption
    assert any("answered without the JSON asked for" in f for f in draft.flags)


@pytest.mark.parametrize("behaviour", ["malformed-once", "wrongschema-once", "junk-once"])
def test_unusable_answer_is_retried_and_the_attempts_recorded(fake_llm, bundle, behaviour):
    fake_llm.rules.append(("croissant", behaviour))
    draft = _draft(fake_llm, bundle)
    assert draft.llm["attempts"] == 2 and "problem" in draft.llm["calls"][0]
    assert draft.caption and "problem" not in draft.llm["calls"][1]


@pytest.mark.parametrize(
    "behaviour,message",
    [
        (
            "junk",
            "no usable draft after 2 attempts: .* same answer for another seed",
        ),  # junk twice: not asked a third time
        ("malformed", "malformed JSON"),
        ("wrongschema", "wrong schema"),
        ("refusal", "refused: This request breaks the policy"),
        ("refusal-text", "refused: I'm sorry"),
        ("empty", "empty answer"),
    ],
)
def test_hopeless_answers_end_in_a_clear_error_for_this_slot(fake_llm, bundle, behaviour, message):
    fake_llm.rules.append(("croissant", behaviour))
    with pytest.raises(LLMError, match=message):
        _draft(fake_llm, bundle)
    assert len(fake_llm.requests) <= MAX_ATTEMPTS


def test_invented_offer_sunday_opening_and_url_are_flagged_with_spans(fake_llm, bundle):
    fake_llm.rules.append(("croissant", "invent"))
    draft = _draft(fake_llm, bundle)
    flagged = {draft.text[start:end]: kind for start, end, kind in draft.fact_spans}
    assert flagged == {"-30%": "percentage", "dimanche": "day", "https://promo-levain.example/deal": "url"}
    assert sum("unsupported" in f for f in draft.flags) == 3
    assert "27 couches" not in flagged  # stated in the brief's facts


def test_near_duplicate_variant_is_regenerated(fake_llm, bundle):
    fake_llm.rules.append(("croissant", "same"))
    first = _draft(fake_llm, bundle, variant=0)
    fake_llm.rules[:] = [("croissant", "same-once")]  # the next variant's first answer repeats it
    fake_llm.seen.clear()
    second = _draft(fake_llm, bundle, variant=1, others=[first.caption])
    assert second.llm["attempts"] == 2 and second.llm["calls"][0]["similarity"] > 0.9
    assert second.similarity["max_to_other_variants"] < 0.9 and second.caption != first.caption
    assert second.similarity["method"] == "all-MiniLM-L6-v2 cosine"
    assert not any("near-duplicate" in f for f in second.flags)


def test_variant_that_stays_a_duplicate_is_flagged(fake_llm, bundle):
    fake_llm.rules.append(("croissant", "same"))
    first = _draft(fake_llm, bundle, variant=0)
    second = _draft(fake_llm, bundle, variant=1, others=[first.caption])
    # The endpoint gave the same answer for a new seed: a third call would too, so none is made.
    assert second.llm["attempts"] == 2 < MAX_ATTEMPTS
    assert second.llm["calls"][1]["problem"] == "same answer as an earlier attempt"
    assert any("near-duplicate" in f for f in second.flags)


def test_audience_shapes_the_prompt_and_the_record(fake_llm, bundle):
    draft = _draft(fake_llm, bundle, post_id="recette-montreal")
    prompt = fake_llm.requests[0]["messages"][-1]["content"]
    assert "Montréal (fr-CA)" in prompt and "fin de semaine" in prompt and "fr-CA" in prompt
    assert draft.locale == "fr-CA" and draft.audience == "montreal-friends"


def test_brand_voice_examples_feed_the_prompt(fake_llm, bundle):
    _draft(fake_llm, bundle)
    system, user = (m["content"] for m in fake_llm.requests[0]["messages"])
    assert bundle.brand.voice.tone in system and "superlatives" in system
    assert "le levain a doublé" in user  # the French example post, few-shot


def test_brand_template_overrides_the_built_in_one_and_changes_the_version(fake_llm, bundle, brand_copy):
    builtin = templates.version("draft_user", language="fr", brand_dir=brand_copy)
    (brand_copy / "templates").mkdir()
    (brand_copy / "templates" / "draft_user.fr.txt").write_text(
        "Écris pour nos habitués, sur ce sujet : ${brief}\n${format}"
    )
    assert templates.version("draft_user", language="fr", brand_dir=brand_copy) != builtin
    _draft(fake_llm, bundle, brand_dir=brand_copy)
    assert fake_llm.requests[0]["messages"][-1]["content"].startswith("Écris pour nos habitués")
