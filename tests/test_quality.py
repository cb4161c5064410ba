"""The language-quality gate: each problem kind on its own, the labelled set's rates, and the gate
inside drafting (written again with another seed, then kept with a LOW QUALITY flag)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from estampille.brand import load_brand
from estampille.records import Slot
from estampille.text import quality
from estampille.text.drafting import MAX_ATTEMPTS, write_draft
from estampille.text.guardrails import guardrails_for
from estampille.text.llm import OpenAICompatibleModel

from .conftest import DEMO_BRAND

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from quality_gate import judged  # noqa: E402  (the benchmark's own reading of the labelled set)

DEMO_CAPTION = (
    "Le pain au levian est un événement de la journée, avec le début de la semana, le début du "
    "marché, le déjeuner, le déjà, le délai, le décadre, le déché, le détroit, le débil, le défaut, "
    "le débat, le dévouement, le démarrage, le démocratique, le déput de la rue, le délept, le "
    "déclin, le délibération, le dénommage, le désabillage, le dernier jour, le décep, le "
    "découvert, le défeu, le défil"
)


def kinds(caption: str, language: str = "fr", **kwargs) -> set[str]:
    return {p.kind for p in quality.check(caption, language=language, **kwargs).problems}


def test_the_caption_the_demo_once_recorded_is_flagged_for_every_problem_it_has():
    report = quality.check(DEMO_CAPTION, language="fr", brief="Le pain au levain de la semaine sort du four.")
    assert {"unknown", "language", "loop", "truncated"} <= {p.kind for p in report.problems}
    text = report.flag()
    assert text.startswith("LOW QUALITY: ") and "'levian'" in text and "'semana'" in text and "défil" in text


@pytest.mark.parametrize("language", ["fr", "en"])
def test_labelled_set_bad_captions_flagged_and_good_ones_left_alone(language):
    results = [(entry, report) for entry, report, _ in judged() if entry["lang"] == language]
    bad = [r for e, r in results if e["label"] == "bad"]
    good = [r for e, r in results if e["label"] == "good"]
    assert len(bad) >= 20 and len(good) >= 20
    assert sum(not r.passed for r in bad) / len(bad) >= 0.95
    assert sum(not r.passed for r in good) / len(good) <= 0.05


def test_misspelt_and_invented_words_are_named_with_a_suggestion_and_a_span():
    caption = "Notre croissant est délicieus, feuilleté avec soin. Une croûte bien cuitte ce matin."
    report = quality.check(caption, language="fr")
    unknown = next(p for p in report.problems if p.kind == "unknown")
    assert "'délicieus' (délicieux?)" in unknown.detail and "'cuitte'" in unknown.detail
    assert [caption[s:e] for s, e in unknown.spans] == ["délicieus", "cuitte"]
    assert "unknown" in kinds("Meet our baker, who feeds the starter every nigth. Come by!", "en")
    assert "unknown" in kinds(
        "Our spice loaf is a delicous way to warm up this winter.", "en"
    )  # on the web, not in a dictionary


def test_rare_words_names_tags_addresses_and_brand_words_are_known():
    assert kinds("Croûte épaisse, mie alvéolée, parfum de noisette : le pain est prêt.") == set()
    assert (
        kinds(
            "Rendez-vous chez Maison Levain, rue d'Austerlitz. Infos sur https://maison-levain.example. "
            "#painaulevain @maisonlevain"
        )
        == set()
    )
    assert kinds("Goûtez notre Levanou du vendredi, un pain unique.") == set()  # a capital mid-sentence: a name
    assert "unknown" in kinds("Goûtez notre levanou du vendredi, un pain unique.")
    assert kinds("Goûtez notre levanou du vendredi, un pain unique.", known=quality.vocabulary(["levanou"])) == set()


def test_a_sentence_or_words_in_another_language_are_named():
    report = quality.check(
        "Le pain au levain de la semaine sort du four. Come by this morning and taste the "
        "crust while it is still warm!",
        language="fr",
    )
    problem = next(p for p in report.problems if p.kind == "language")
    assert "a sentence in en" in problem.detail
    assert "'mañana' (es)" in str(
        quality.check("Cours de yoga doux le domingo por la mañana, tapis fournis.", language="fr").problems
    )
    whole = quality.check("Our bookshop welcomes a crime novelist on Thursday evening for a signing.", language="fr")
    assert "the caption is in en, not fr" in str(whole.problems)


def test_a_cut_ending_is_caught_mid_word_or_mid_sentence_and_a_finished_one_is_not():
    mid_word = quality.check("Prenez rendez-vous à l'atelier dès mainten", language="fr", hit_token_limit=True)
    truncated = next(p for p in mid_word.problems if p.kind == "truncated")
    assert "ends mid-word at the token limit" in truncated.detail
    assert "truncated" in kinds("Our new coffee is roasted right here in", "en")
    for finished in (
        "Une tasse ? ☕",
        "Venez nous voir !",
        "Plus d'infos sur https://cafe.example",
        "Merci à toute l'équipe. @atelierducycle",
        "Le feuilletage fond en bouche…",
    ):
        assert "truncated" not in kinds(finished), finished


def test_loops_lists_and_runs_on_one_prefix_are_caught():
    assert "loop" in kinds("Le pain au levain est bon. Le pain au levain est chaud. Le pain au levain est prêt.")
    assert "loop" in kinds("Flour, water, salt, yeast, butter, sugar, milk and eggs, every morning.", "en")
    assert "loop" in kinds("La détente, la découverte, la délicatesse, la délivrance, la démarche du dimanche.")
    assert "loop" not in kinds("Farine, eau, sel et levain : rien d'autre dans notre pain.")


def test_a_caption_off_its_brief_is_caught_and_one_on_it_is_not():
    brief = "Autumn bike service at the workshop, brakes and gears checked in under an hour."
    off = "Your car insurance is changing: compare our plans and get a personalised quote in minutes."
    on = "Wet roads are coming. Book an autumn service and our mechanics will check your brakes and gears."
    assert "off_topic" in kinds(off, "en", brief=brief, relevance=quality.relevance(off, brief))
    assert "off_topic" not in kinds(on, "en", brief=brief, relevance=quality.relevance(on, brief))


def _slot(bundle, post_id):
    post = next(p for p in bundle.calendar.posts if p.id == post_id)
    return Slot(slot_id=f"2026-W48/{post.id}", brand="demo", week="2026-W48", post=post)


def _draft(fake_llm, post_id="croissant-mercredi"):
    bundle = load_brand(DEMO_BRAND)
    model = OpenAICompatibleModel(fake_llm.base_url, "fake-chat", "sk-x", max_retries=0, timeout_s=5)
    return write_draft(model, bundle.brand, _slot(bundle, post_id), 0, guardrails_for(bundle.brand), "draft-t")


def test_a_variant_failing_the_gate_is_written_again_with_another_seed(fake_llm):
    fake_llm.rules.append(("croissant", "lowquality-once"))
    draft = _draft(fake_llm)
    assert draft.llm["attempts"] == 2 and draft.quality["passed"]
    first, second = draft.llm["calls"]
    assert first["quality"] and not second["quality"] and first["seed"] != second["seed"]
    assert not any(f.startswith("LOW QUALITY") for f in draft.flags)


def test_a_variant_that_never_passes_is_kept_flagged_with_its_reasons_and_spans(fake_llm):
    fake_llm.rules.append(("croissant", "lowquality"))
    draft = _draft(fake_llm)
    assert 2 <= draft.llm["attempts"] <= MAX_ATTEMPTS and not draft.quality["passed"]  # fewer when an answer repeats
    assert all(call["quality"] for call in draft.llm["calls"] if "problem" not in call)
    flag = next(f for f in draft.flags if f.startswith("LOW QUALITY"))
    assert "'levian'" in flag and "truncated ending" in flag and "loops or lists" in flag
    marked = {draft.text[s:e]: kind for s, e, kind in draft.quality["spans"]}
    assert marked["levian"] == "unknown" and marked["défil"] == "truncated"
    assert draft.quality["thresholds"] == quality.thresholds_version()
