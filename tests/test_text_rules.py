"""Rules enforced in code on whatever the model says: limits, hashtags, banned and competitor
terms, disclosure line; and the guardrails on image prompts."""

from __future__ import annotations

import pytest

from estampille.brand import load_brand
from estampille.platforms import PLATFORM_LIMITS, counted_length
from estampille.text.drafting import enforce_rules, parse_plain, parse_structured
from estampille.text.facts import unsupported_facts
from estampille.text.guardrails import guardrails_for

from .conftest import DEMO_BRAND


@pytest.fixture(scope="module")
def bundle():
    return load_brand(DEMO_BRAND)


def _post(bundle, platform, language):
    return next(p for p in bundle.calendar.posts if p.platform == platform and p.language == language)


def _post_on(bundle, platform, language="fr"):
    """A calendar post moved to `platform` (the calendar need not use every platform)."""
    return bundle.calendar.posts[0].model_copy(update={"platform": platform, "language": language, "audience": None})


def test_demo_brand_covers_the_five_platforms():
    assert (
        set(load_brand(DEMO_BRAND).brand.platforms)
        == set(PLATFORM_LIMITS)
        == {"instagram", "facebook", "linkedin", "x", "tiktok"}
    )


@pytest.mark.parametrize("platform", sorted(PLATFORM_LIMITS))
@pytest.mark.parametrize("language", ["fr", "en"])
def test_overlong_overtagged_multiline_draft_is_repaired_and_flagged(bundle, platform, language):
    brand, post = bundle.brand, _post_on(bundle, platform, language)
    rules = brand.rules_for(platform)
    fields = {
        "caption": "Une miche dorée.\n\n" * 3000 + "Voir https://maison-levain.example",
        "call_to_action": "Venez !",
        "hashtags": [f"#tag{i}" for i in range(40)],
        "alt_text": "",
    }
    repaired, text, flags = enforce_rules(fields, brand, post, guardrails_for(brand))
    assert counted_length(text, platform) <= rules.max_chars
    assert len(repaired["hashtags"]) <= rules.max_hashtags and len(repaired["hashtags"]) < 40
    assert text.endswith(brand.disclosure.lines[language])
    assert any("caption cut" in f for f in flags) and any("hashtags cut" in f for f in flags)
    assert not any("BREAKS RULE" in f for f in flags)
    if rules.max_line_breaks is not None:
        assert text.count("\n") <= rules.max_line_breaks


def test_x_counts_every_url_as_23_characters():
    long_url = "https://maison-levain.example/" + "a" * 100
    assert counted_length(f"Voir {long_url}", "x") == len("Voir ") + 23
    assert counted_length(f"Voir {long_url}", "instagram") == len(f"Voir {long_url}")


def test_brand_cannot_be_looser_than_the_platform(brand_copy):
    from estampille.errors import ConfigError

    text = (
        (brand_copy / "brand.yaml").read_text().replace("x: {max_hashtags: 2,", "x: {max_chars: 500, max_hashtags: 2,")
    )
    (brand_copy / "brand.yaml").write_text(text)
    with pytest.raises(ConfigError, match="above x's own limit of 280"):
        load_brand(brand_copy)


def test_disclosure_line_is_in_the_post_language_and_only_once(bundle):
    brand = bundle.brand
    for language in ("fr", "en"):
        post = _post(bundle, "instagram" if language == "fr" else "linkedin", language)
        _, text, _ = enforce_rules(
            {"caption": "Bonjour.", "call_to_action": "", "hashtags": [], "alt_text": ""},
            brand,
            post,
            guardrails_for(brand),
        )
        assert text.count(brand.disclosure.lines[language]) == 1
        other = brand.disclosure.lines["en" if language == "fr" else "fr"]
        assert other not in text


def test_disclosure_policy_never_adds_no_line(bundle):
    brand = bundle.brand.model_copy(
        update={"disclosure": bundle.brand.disclosure.model_copy(update={"policy": "never"})}
    )
    post = _post(bundle, "instagram", "fr")
    _, text, _ = enforce_rules(
        {"caption": "Bonjour.", "call_to_action": "", "hashtags": [], "alt_text": ""},
        brand,
        post,
        guardrails_for(brand),
    )
    assert text == "Bonjour."


def test_disclosure_per_platform_policy_puts_the_line_exactly_where_required(bundle):
    disclosure = bundle.brand.disclosure.model_copy(
        update={"policy": "platforms", "platforms": ["instagram", "tiktok"]}
    )
    brand = bundle.brand.model_copy(update={"disclosure": disclosure})
    for platform in PLATFORM_LIMITS:
        _, text, _ = enforce_rules(
            {"caption": "Bonjour.", "call_to_action": "", "hashtags": [], "alt_text": ""},
            brand,
            _post_on(bundle, platform),
            guardrails_for(brand),
        )
        line = brand.disclosure.lines["fr"]
        assert text.count(line) == (1 if platform in ("instagram", "tiktok") else 0), platform


def test_banned_terms_and_competitor_names_are_removed_and_flagged(bundle):
    brand, post = bundle.brand, _post(bundle, "instagram", "fr")
    fields = {
        "caption": "Le meilleur de France, mieux que Boulangerie Dorée, et gratuit !",
        "call_to_action": "",
        "hashtags": ["#Dorée", "#pain"],
        "alt_text": "",
    }
    repaired, text, flags = enforce_rules(fields, brand, post, guardrails_for(brand))
    lowered = text.casefold()
    assert "meilleur de france" not in lowered and "boulangerie dorée" not in lowered and "gratuit" not in lowered
    assert repaired["hashtags"] == ["#pain"]
    assert any("competitor" in f for f in flags) and any("banned term" in f for f in flags)


def test_structured_answer_is_validated_and_safely_repaired():
    fields = parse_structured(
        'Sure! {"caption": "Pain chaud ce matin", "hashtags": "#pain #lyon", '
        '"call_to_action": "", "alt_text": "Une miche", "language": "fr"}'
    )
    assert fields["caption"] == "Pain chaud ce matin" and fields["hashtags"] == ["#pain", "#lyon"]
    for answer, problem in (
        ("no json at all", "no JSON object"),
        ('{"caption": "Pain', "unterminated"),
        ('{"caption": "Pain chaud",}', "malformed JSON"),
        ('{"caption": 42}', "wrong schema"),
        ('{"caption": "ok", "hashtags": []}', "fewer than three words"),
        ('{"caption": "Pain chaud ce matin", "hashtags": [], "extra": 1}', "wrong schema"),
    ):
        with pytest.raises(ValueError, match=problem):
            parse_structured(answer)


def test_plain_answers_are_parsed_and_repaired():
    fields, flags = parse_plain("Pain chaud ce matin. Pain chaud ce matin. #pain #lyon")
    assert fields["caption"] == "Pain chaud ce matin." and fields["hashtags"] == ["#pain", "#lyon"]
    assert flags == []
    fields, flags = parse_plain("Croûte dorée et belle. Mie souple. Et le levain qui")
    assert fields["caption"] == "Croûte dorée et belle. Mie souple." and "mid-sentence" in flags[0]
    for junk in ("le plus le plus le plus le plus le plus", "   ", "%%% ]]] ###"):
        with pytest.raises(ValueError, match="no usable caption"):
            parse_plain(junk)


SOURCES = [
    "Le croissant au beurre AOP Charentes-Poitou, feuilletage en 27 couches.",
    "27 couches",
    "samedi matin",
    "Maison Levain",
    "@maisonlevain",
    "https://maison-levain.example",
]


@pytest.mark.parametrize(
    "invented,kind",
    [
        ("-30%", "percentage"),
        ("ouvert dimanche", "day"),
        ("https://promo-levain.example/deal", "url"),
        ("www.levain-deals.com", "url"),
        ("2,50 €", "price"),
        ("dès 7h30", "time"),
        ("le 3 décembre", "date"),
        ("@boulangerie_doree", "handle"),
        ("depuis 1987", "figure"),
    ],
)
def test_invented_facts_are_flagged_with_their_span(invented, kind):
    text = f"Nos croissants en 27 couches, {invented}, suivez @maisonlevain samedi matin."
    spans = unsupported_facts(text, SOURCES)
    assert [s.kind for s in spans] == [kind]
    assert invented.endswith(text[spans[0].start : spans[0].end]) or text[spans[0].start : spans[0].end] in invented


def test_facts_from_the_brief_and_brand_are_not_flagged():
    text = "Feuilletage en 27 couches, beurre AOP Charentes-Poitou, samedi matin : maison-levain.example @maisonlevain"
    assert unsupported_facts(text, SOURCES) == []


def test_image_prompt_guardrails_remove_artists_and_marks_and_are_versioned(bundle):
    guardrails = guardrails_for(bundle.brand)
    prompt, removed = guardrails.scrub("croissant in the style of Greg Rutkowski, Croissant d'Or packaging, bio flour")
    assert "rutkowski" not in prompt.casefold() and "croissant d'or" not in prompt.casefold()
    assert {reason for _, reason in removed} == {"living artist", "competitor mark", "banned term"}
    changed = guardrails_for(bundle.brand.model_copy(update={"banned_terms": ["vegan"]}))
    assert changed.version != guardrails.version and guardrails.version.startswith("gr-")
