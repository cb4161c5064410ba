"""Rules enforced in code on whatever the model says: limits, hashtags, banned and competitor
terms, disclosure line; and the guardrails on image prompts."""

from __future__ import annotations

import pytest

from estampille.brand import load_brand
from estampille.text.drafting import enforce_rules, parse_draft
from estampille.text.guardrails import guardrails_for

from .conftest import DEMO_BRAND


@pytest.fixture(scope="module")
def bundle():
    return load_brand(DEMO_BRAND)


def _post(bundle, platform, language):
    return next(p for p in bundle.calendar.posts if p.platform == platform and p.language == language)


@pytest.mark.parametrize("platform,language", [("instagram", "fr"), ("linkedin", "en"), ("x", "en")])
def test_overlong_overtagged_draft_is_repaired_and_flagged(bundle, platform, language):
    brand, post = bundle.brand, _post(bundle, platform, language)
    rules = brand.platforms[platform]
    fields = {"caption": "Une miche dorée. " * 400, "call_to_action": "Venez !",
              "hashtags": [f"#tag{i}" for i in range(40)], "alt_text": ""}
    repaired, text, flags = enforce_rules(fields, brand, post, guardrails_for(brand))
    assert len(text) <= rules.max_chars
    assert len(repaired["hashtags"]) <= rules.max_hashtags
    assert text.endswith(brand.disclosure.lines[language])
    assert any("cut" in f for f in flags)


def test_disclosure_line_is_in_the_post_language_and_only_once(bundle):
    brand = bundle.brand
    for language in ("fr", "en"):
        post = _post(bundle, "instagram" if language == "fr" else "linkedin", language)
        _, text, _ = enforce_rules({"caption": "Bonjour.", "call_to_action": "", "hashtags": [], "alt_text": ""},
                                   brand, post, guardrails_for(brand))
        assert text.count(brand.disclosure.lines[language]) == 1
        other = brand.disclosure.lines["en" if language == "fr" else "fr"]
        assert other not in text


def test_disclosure_policy_never_adds_no_line(bundle):
    brand = bundle.brand.model_copy(update={"disclosure": bundle.brand.disclosure.model_copy(update={"policy": "never"})})
    post = _post(bundle, "instagram", "fr")
    _, text, _ = enforce_rules({"caption": "Bonjour.", "call_to_action": "", "hashtags": [], "alt_text": ""},
                               brand, post, guardrails_for(brand))
    assert text == "Bonjour."


def test_banned_terms_and_competitor_names_are_removed_and_flagged(bundle):
    brand, post = bundle.brand, _post(bundle, "instagram", "fr")
    fields = {"caption": "Le meilleur de France, mieux que Boulangerie Dorée, et gratuit !",
              "call_to_action": "", "hashtags": ["#Dorée", "#pain"], "alt_text": ""}
    repaired, text, flags = enforce_rules(fields, brand, post, guardrails_for(brand))
    lowered = text.casefold()
    assert "meilleur de france" not in lowered and "boulangerie dorée" not in lowered and "gratuit" not in lowered
    assert repaired["hashtags"] == ["#pain"]
    assert any("competitor" in f for f in flags) and any("banned term" in f for f in flags)


def test_json_and_plain_answers_are_parsed_and_repaired():
    fields, flags = parse_draft('Sure! {"caption": "Pain chaud", "hashtags": ["#pain"], "alt_text": "Une miche"}')
    assert fields["caption"] == "Pain chaud" and fields["hashtags"] == ["#pain"] and flags == []
    fields, flags = parse_draft("Pain chaud ce matin. Pain chaud ce matin. #pain #lyon")
    assert fields["caption"] == "Pain chaud ce matin." and fields["hashtags"] == ["#pain", "#lyon"]
    assert flags == []
    fields, flags = parse_draft("Croûte dorée. Mie souple. Et le levain qui")
    assert fields["caption"] == "Croûte dorée. Mie souple." and "mid-sentence" in flags[0]
    fields, flags = parse_draft("le plus le plus le plus le plus le plus")
    assert fields["caption"] == "" and flags == ["empty answer"]
    _, flags = parse_draft("   ")
    assert flags == ["empty answer"]


def test_image_prompt_guardrails_remove_artists_and_marks_and_are_versioned(bundle):
    guardrails = guardrails_for(bundle.brand)
    prompt, removed = guardrails.scrub("croissant in the style of Greg Rutkowski, Croissant d'Or packaging, bio flour")
    assert "rutkowski" not in prompt.casefold() and "croissant d'or" not in prompt.casefold()
    assert {reason for _, reason in removed} == {"living artist", "competitor mark", "banned term"}
    changed = guardrails_for(bundle.brand.model_copy(update={"banned_terms": ["vegan"]}))
    assert changed.version != guardrails.version and guardrails.version.startswith("gr-")
