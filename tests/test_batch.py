"""The weekly batch end to end (no Prefect here; see test_flow.py): outputs, provenance,
ledger, idempotent reruns, per-slot failures and resumption."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from estampille.brand import load_brand, posts_in_week
from estampille.cli import main
from estampille.ledger import Ledger
from estampille.provenance.c2pa_manifest import read_manifest
from estampille.provenance.xmp import read_xmp
from estampille.settings import Settings
from estampille.stages import run_batch

from .conftest import DEMO_BRAND, DEMO_WEEK
from .fake_openai import FakeOpenAI


def _events(settings):
    ledger = Ledger(settings.ledger_url)
    try:
        return ledger.events()
    finally:
        ledger.close()


@pytest.fixture
def first_run(fake_llm, settings):
    fake_llm.caption_extra = " <script>alert('x')</script>"
    summary = run_batch(DEMO_BRAND, DEMO_WEEK, settings)
    return summary


def test_every_post_gets_two_variants_and_two_signed_labelled_images(first_run, settings):
    assert first_run["failures"] == []
    events = _events(settings)
    posts = posts_in_week(load_brand(DEMO_BRAND), DEMO_WEEK)
    by_kind = Counter(e.kind for e in events)
    assert by_kind["draft.created"] == by_kind["render.created"] == by_kind["provenance.signed"] == 2 * len(posts)
    per_slot = Counter(e.subject for e in events if e.kind == "provenance.signed")
    assert set(per_slot) == {f"{DEMO_WEEK}/{p.id}" for p in posts} and set(per_slot.values()) == {2}
    anchor = (settings.keys_dir / "dev-ca.pem").read_bytes()
    run_dir = settings.out / "demo" / DEMO_WEEK
    for event in (e for e in events if e.kind == "provenance.signed"):
        data = (run_dir / event.payload["file"]).read_bytes()
        assert read_xmp(data)["Iptc4xmpExt:DigitalSourceType"] == event.payload["digital_source_type"]
        assert event.payload["digital_source_type"].endswith("AlgorithmicMedia")
        assert read_manifest(data, "image/png", anchor).state == "Trusted"
        assert read_manifest(data, "image/png", None).state == "Valid"
        sidecar = json.loads((run_dir / event.payload["sidecar"]).read_text())
        assert sidecar["render"]["model"]["weights_sha256"] and sidecar["render"]["seed"] >= 0


def test_image_to_image_slot_records_its_reference_and_is_labelled_composite(fake_llm, settings, brand_copy):
    from estampille.provenance.xmp import COMPOSITE_TRAINED

    calendar = brand_copy / "calendar.yaml"
    calendar.write_text(calendar.read_text().replace("    # reference_image:", "    reference_image:")
                        .replace("    # strength:", "    strength:"))
    run_batch(brand_copy, DEMO_WEEK, settings)
    run_dir = settings.out / "brand" / DEMO_WEEK
    events = _events(settings)
    renders = [e.payload for e in events if e.kind == "render.created" and e.subject.endswith("atelier-samedi")]
    assert len(renders) == 2 and all(r["mode"] == "image-to-image" for r in renders)
    assert renders[0]["reference"]["path"].endswith("references/atelier-table.jpg")
    assert renders[0]["reference"]["strength"] == 0.75
    signed = next(e.payload for e in events if e.kind == "provenance.signed" and e.payload["image_id"] == renders[0]["image_id"])
    data = (run_dir / signed["file"]).read_bytes()
    assert read_xmp(data)["Iptc4xmpExt:DigitalSourceType"] == COMPOSITE_TRAINED
    report = read_manifest(data, "image/png", (settings.keys_dir / "dev-ca.pem").read_bytes())
    assert report.state == "Trusted"
    assert [i["title"] for i in report.active["ingredients"]] == ["atelier-table.jpg"]
    others = [e.payload for e in events if e.kind == "render.created"
              and not e.subject.endswith(("atelier-samedi", "tradition-vendredi"))]
    assert all(r["mode"] == "text-to-image" and r["reference"] is None for r in others)

    # The demo's "inspiration" slot starts from a competitor's picture: every render of it is
    # flagged through its reference, with the competitor's image as evidence; the brand's own
    # reference photo flags nothing.
    checks = {e.payload["image_id"]: e.payload for e in events if e.kind == "lookalike.checked"}
    copied = [e.payload for e in events if e.kind == "render.created" and e.subject.endswith("tradition-vendredi")]
    assert len(copied) == 2
    for render_record in copied:
        check = checks[render_record["image_id"]]
        assert check["verdict"] == "lookalike"
        match = next(m for m in check["matches"] if m["via"] == "image-to-image reference")
        assert match["source"] == "Boulangerie Dorée" and match["reference"].endswith("boulangerie-doree-04.jpg")
        assert match["distances"]["phash"] == 0
        assert (run_dir / "evidence" / f"{render_record['image_id']}-0.png").is_file()
    assert all(checks[r["image_id"]]["verdict"] == "clear" for r in renders)


def test_ledger_verifies_and_records_calls_without_the_api_key(first_run, settings):
    ledger = Ledger(settings.ledger_url)
    assert ledger.verify().ok
    ledger.close()
    dump = json.dumps([e.payload for e in _events(settings)])
    assert "SECRET" not in dump
    draft = next(e for e in _events(settings) if e.kind == "draft.created")
    assert draft.payload["llm"]["host"].startswith("127.0.0.1") and draft.payload["llm"]["calls"][0]["prompt_tokens"] == 42


def test_drafts_carry_the_disclosure_line_in_their_language(first_run, settings):
    lines = load_brand(DEMO_BRAND).brand.disclosure.lines
    for event in (e for e in _events(settings) if e.kind == "draft.created"):
        assert event.payload["text"].endswith(lines[event.payload["language"]])


def test_invented_facts_and_low_quality_text_are_marked_on_the_review_page(fake_llm, settings):
    fake_llm.rules += [("croissant", "invent"), ("Atelier pain", "lowquality")]
    summary = run_batch(DEMO_BRAND, DEMO_WEEK, settings)
    html = open(summary["review_page"], encoding="utf-8").read()
    assert '<mark title="unsupported percentage: not in the brief or brand file">-30%</mark>' in html
    assert '<mark title="unsupported day: not in the brief or brand file">dimanche</mark>' in html
    assert '<mark title="misspelt or unknown word">levian</mark>' in html
    assert '<mark title="misspelt or unknown word; truncated ending">défil</mark>' in html and "LOW QUALITY: misspelt" in html
    assert "2 of 14 text variants failed the language-quality gate" in " ".join(summary["notes"])


def test_review_page_lists_every_post_and_escapes_model_text(first_run, settings):
    html = open(first_run["review_page"], encoding="utf-8").read()
    for event in _events(settings):
        if event.kind in ("draft.created", "render.created"):
            assert event.key in html     # the ids a reviewer passes to `estampille review approve`
    for post in posts_in_week(load_brand(DEMO_BRAND), DEMO_WEEK):
        assert f'id="{post.id}"' in html
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "tiny TEST model" in html and "C2PA Trusted" in html


def test_second_run_renders_nothing_and_adds_no_rows(first_run, settings):
    run_dir = settings.out / "demo" / DEMO_WEEK
    rows = len(_events(settings))
    mtimes = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*.png")}
    again = run_batch(DEMO_BRAND, DEMO_WEEK, Settings.from_env())
    assert len(_events(settings)) == rows
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*.png")} == mtimes
    assert all(c["new"] == 0 and c["reused"] > 0 for c in again["counts"].values())


def test_deleted_render_is_recreated_pixel_identical_without_a_new_row(first_run, settings):
    run_dir = settings.out / "demo" / DEMO_WEEK
    victim = next((run_dir / "renders").glob("*.png"))
    before = victim.read_bytes()
    rows = len(_events(settings))
    victim.unlink()
    run_batch(DEMO_BRAND, DEMO_WEEK, Settings.from_env())
    assert victim.read_bytes() == before and len(_events(settings)) == rows


N_POSTS = len(posts_in_week(load_brand(DEMO_BRAND), DEMO_WEEK))


def test_a_failing_slot_costs_only_that_slot_and_the_rerun_completes_it(fake_llm, settings):
    fake_llm.rules.append(("Camille", "http500"))      # the LinkedIn post's brief
    summary = run_batch(DEMO_BRAND, DEMO_WEEK, settings)
    assert len(summary["failures"]) == 2 and all("HTTP 500" in f for f in summary["failures"])
    events = _events(settings)
    assert sum(e.kind == "draft.failed" for e in events) == 2
    failed = next(e for e in events if e.kind == "draft.failed").payload
    assert "HTTP 500" in failed["error"] and failed["calls"][0]["host"].startswith("127.0.0.1")
    assert sum(e.kind == "provenance.signed" for e in events) == 2 * N_POSTS - 2
    assert not any(e.kind == "run.completed" for e in events)
    calls_before = len(fake_llm.requests)

    fake_llm.rules.clear()
    summary = run_batch(DEMO_BRAND, DEMO_WEEK, settings)
    assert summary["failures"] == []
    assert summary["counts"]["draft"] == {"reused": 2 * N_POSTS - 2, "new": 2, "failed": 0}
    new_requests = fake_llm.requests[calls_before:]
    assert new_requests and all("Camille" in r["messages"][-1]["content"] for r in new_requests)
    events = _events(settings)
    assert sum(e.kind == "provenance.signed" for e in events) == 2 * N_POSTS
    assert any(e.kind == "run.completed" for e in events)


def test_killed_endpoint_mid_batch_keeps_finished_slots_and_the_rerun_completes(fake_llm, settings):
    fake_llm.kill_after = 5                 # dies while drafting the third post
    summary = run_batch(DEMO_BRAND, DEMO_WEEK, settings)
    assert summary["failures"] and all("cannot reach" in f for f in summary["failures"])
    done = {e.key for e in _events(settings) if e.kind == "draft.created"}
    assert 1 <= len(done) < 2 * N_POSTS and Ledger(settings.ledger_url).verify().ok

    revived = FakeOpenAI(port=fake_llm.port).start()      # the endpoint comes back on the same address
    try:
        summary = run_batch(DEMO_BRAND, DEMO_WEEK, Settings.from_env())
        assert summary["failures"] == [] and summary["counts"]["draft"]["reused"] == len(done)
        events = _events(settings)
        assert sum(e.kind == "draft.created" for e in events) == 2 * N_POSTS
        assert sum(e.kind == "provenance.signed" for e in events) == 2 * N_POSTS
        assert Ledger(settings.ledger_url).verify().ok
    finally:
        revived.stop()


@pytest.mark.skipif(not os.environ.get("ESTAMPILLE_TEST_POSTGRES_URL"),
                    reason="set ESTAMPILLE_TEST_POSTGRES_URL (see .ci/postgres.sh) to run a batch on PostgreSQL")
def test_whole_batch_on_a_postgres_ledger(fake_llm, monkeypatch):
    from sqlalchemy import create_engine

    from estampille.ledger.schema import metadata

    url = os.environ["ESTAMPILLE_TEST_POSTGRES_URL"]
    engine = create_engine(url)
    metadata.drop_all(engine)
    engine.dispose()
    monkeypatch.setenv("ESTAMPILLE_LEDGER_URL", url)
    summary = run_batch(DEMO_BRAND, DEMO_WEEK, Settings.from_env())
    assert summary["failures"] == [] and summary["ledger"].startswith("postgresql")
    again = run_batch(DEMO_BRAND, DEMO_WEEK, Settings.from_env())
    assert all(c["new"] == 0 for c in again["counts"].values())
    ledger = Ledger(url)
    assert ledger.verify().ok and sum(e.kind == "provenance.signed" for e in ledger.events()) == 2 * N_POSTS
    ledger.close()


def test_cli_run_prints_where_the_output_is(fake_llm, isolated, capsys):
    assert main(["run", "--brand", str(DEMO_BRAND), "--week", DEMO_WEEK, "--engine", "plain"]) == 0
    out = capsys.readouterr().out
    assert f"Review page: {isolated / 'out' / 'demo' / DEMO_WEEK / 'review.html'}" in out
    assert "tiny TEST model" in out and f"{2 * N_POSTS} new" in out
    assert main(["run", "--brand", str(DEMO_BRAND), "--week", DEMO_WEEK, "--engine", "plain"]) == 0
    assert f"0 new, {2 * N_POSTS} already done" in capsys.readouterr().out


def test_missing_model_folder_exits_2_with_the_fix(fake_llm, brand_copy, isolated, capsys):
    brand_file = brand_copy / "brand.yaml"
    brand_file.write_text(brand_file.read_text().replace("model: builtin:tiny-sd", "model: ./models/my-sdxl"))
    assert main(["run", "--brand", str(brand_copy), "--week", DEMO_WEEK, "--engine", "plain"]) == 2
    err = capsys.readouterr().err
    assert "my-sdxl does not exist" in err and "save_pretrained" in err
    assert not (isolated / "out").exists()
