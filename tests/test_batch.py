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

from .conftest import DEMO_BRAND, DEMO_WEEK, keep_posts
from .fake_openai import FakeOpenAI


def _events(settings):
    ledger = Ledger(settings.ledger_url)
    try:
        return ledger.events()
    finally:
        ledger.close()


@pytest.fixture
def first_run(batch_copy):
    """The demo week run once per session (conftest.finished_batch: captions carrying markup, an
    API key set), copied for this test; only tests that change the batch's inputs run their own."""
    return batch_copy


def test_every_post_gets_two_variants_and_two_signed_labelled_images(first_run, settings):
    assert first_run["summary"]["failures"] == []
    events = _events(settings)
    posts = posts_in_week(load_brand(DEMO_BRAND), DEMO_WEEK)
    by_kind = Counter(e.kind for e in events)
    assert by_kind["draft.created"] == by_kind["render.created"] == by_kind["provenance.signed"] == 2 * len(posts)
    per_slot = Counter(e.subject for e in events if e.kind == "provenance.signed")
    assert set(per_slot) == {f"{DEMO_WEEK}/{p.id}" for p in posts} and set(per_slot.values()) == {2}
    anchor = (settings.keys_dir / "dev-ca.pem").read_bytes()
    run_dir = first_run["run_dir"]
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
    calendar.write_text(
        calendar.read_text()
        .replace("    # reference_image:", "    reference_image:")
        .replace("    # strength:", "    strength:")
    )
    run_batch(brand_copy, DEMO_WEEK, settings)
    run_dir = settings.out / "brand" / DEMO_WEEK
    events = _events(settings)
    renders = [e.payload for e in events if e.kind == "render.created" and e.subject.endswith("atelier-samedi")]
    assert len(renders) == 2 and all(r["mode"] == "image-to-image" for r in renders)
    assert renders[0]["reference"]["path"].endswith("references/atelier-table.jpg")
    assert renders[0]["reference"]["strength"] == 0.75
    signed = next(
        e.payload for e in events if e.kind == "provenance.signed" and e.payload["image_id"] == renders[0]["image_id"]
    )
    data = (run_dir / signed["file"]).read_bytes()
    assert read_xmp(data)["Iptc4xmpExt:DigitalSourceType"] == COMPOSITE_TRAINED
    report = read_manifest(data, "image/png", (settings.keys_dir / "dev-ca.pem").read_bytes())
    assert report.state == "Trusted"
    assert [i["title"] for i in report.active["ingredients"]] == ["atelier-table.jpg"]
    others = [
        e.payload
        for e in events
        if e.kind == "render.created" and not e.subject.endswith(("atelier-samedi", "tradition-vendredi"))
    ]
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
    assert (
        draft.payload["llm"]["host"].startswith("127.0.0.1") and draft.payload["llm"]["calls"][0]["prompt_tokens"] == 42
    )


def test_drafts_carry_the_disclosure_line_in_their_language(first_run, settings):
    lines = load_brand(DEMO_BRAND).brand.disclosure.lines
    for event in (e for e in _events(settings) if e.kind == "draft.created"):
        assert event.payload["text"].endswith(lines[event.payload["language"]])


def test_invented_facts_and_low_quality_text_are_marked_on_the_review_page(fake_llm, settings, brand_copy):
    fake_llm.rules += [("croissant", "invent"), ("Atelier pain", "lowquality")]
    keep_posts(brand_copy, ["croissant-mercredi", "atelier-samedi", "levain-lundi"])
    summary = run_batch(brand_copy, DEMO_WEEK, settings)
    html = open(summary["review_page"], encoding="utf-8").read()
    assert '<mark title="unsupported percentage: not in the brief or brand file">-30%</mark>' in html
    assert '<mark title="unsupported day: not in the brief or brand file">dimanche</mark>' in html
    assert '<mark title="misspelt or unknown word">levian</mark>' in html
    assert (
        '<mark title="misspelt or unknown word; truncated ending">défil</mark>' in html
        and "LOW QUALITY: misspelt" in html
    )
    assert "2 of 6 text variants failed the language-quality gate" in " ".join(summary["notes"])


def test_review_page_lists_every_post_and_escapes_model_text(first_run, settings):
    html = open(first_run["summary"]["review_page"], encoding="utf-8").read()
    for event in _events(settings):
        if event.kind in ("draft.created", "render.created"):
            assert event.key in html  # the ids a reviewer passes to `estampille review approve`
    for post in posts_in_week(load_brand(DEMO_BRAND), DEMO_WEEK):
        assert f'id="{post.id}"' in html
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "tiny TEST model" in html and "C2PA Trusted" in html


@pytest.fixture
def small_run(fake_llm, settings, two_post_brand):
    """A run of its own, where it is rerun: the session's batch, copied, lives under another path,
    and the lookalike index knows competitors' images by path (so a moved brand is re-checked)."""
    run_batch(two_post_brand, DEMO_WEEK, settings)
    return {"brand": two_post_brand, "run_dir": settings.out / "brand" / DEMO_WEEK}


def test_second_run_renders_nothing_and_adds_no_rows(small_run, settings):
    run_dir = small_run["run_dir"]
    rows = len(_events(settings))
    mtimes = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*.png")}
    again = run_batch(small_run["brand"], DEMO_WEEK, Settings.from_env())
    assert len(_events(settings)) == rows
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*.png")} == mtimes
    assert all(c["new"] == 0 and c["reused"] > 0 for c in again["counts"].values())


def test_deleted_render_is_recreated_pixel_identical_without_a_new_row(small_run, settings):
    run_dir = small_run["run_dir"]
    victim = next((run_dir / "renders").glob("*.png"))
    before = victim.read_bytes()
    rows = len(_events(settings))
    victim.unlink()
    run_batch(small_run["brand"], DEMO_WEEK, Settings.from_env())
    assert victim.read_bytes() == before and len(_events(settings)) == rows


N_POSTS = len(posts_in_week(load_brand(DEMO_BRAND), DEMO_WEEK))
N_SMALL = 2  # posts of conftest.two_post_brand


def test_a_failing_slot_costs_only_that_slot_and_the_rerun_completes_it(fake_llm, settings, two_post_brand):
    fake_llm.rules.append(("Camille", "http500"))  # the LinkedIn post's brief
    summary = run_batch(two_post_brand, DEMO_WEEK, settings)
    assert len(summary["failures"]) == 2 and all("HTTP 500" in f for f in summary["failures"])
    events = _events(settings)
    assert sum(e.kind == "draft.failed" for e in events) == 2
    failed = next(e for e in events if e.kind == "draft.failed").payload
    assert "HTTP 500" in failed["error"] and failed["calls"][0]["host"].startswith("127.0.0.1")
    assert sum(e.kind == "provenance.signed" for e in events) == 2 * N_SMALL - 2
    assert not any(e.kind == "run.completed" for e in events)
    calls_before = len(fake_llm.requests)

    fake_llm.rules.clear()
    summary = run_batch(two_post_brand, DEMO_WEEK, settings)
    assert summary["failures"] == []
    assert summary["counts"]["draft"] == {"reused": 2 * N_SMALL - 2, "new": 2, "failed": 0}
    new_requests = fake_llm.requests[calls_before:]
    assert new_requests and all("Camille" in r["messages"][-1]["content"] for r in new_requests)
    events = _events(settings)
    assert sum(e.kind == "provenance.signed" for e in events) == 2 * N_SMALL
    assert any(e.kind == "run.completed" for e in events)


def test_killed_endpoint_mid_batch_keeps_finished_slots_and_the_rerun_completes(fake_llm, settings, two_post_brand):
    fake_llm.kill_after = 2  # dies while drafting the second post
    summary = run_batch(two_post_brand, DEMO_WEEK, settings)
    assert summary["failures"] and all("cannot reach" in f for f in summary["failures"])
    done = {e.key for e in _events(settings) if e.kind == "draft.created"}
    assert 1 <= len(done) < 2 * N_SMALL and Ledger(settings.ledger_url).verify().ok

    revived = FakeOpenAI(port=fake_llm.port).start()  # the endpoint comes back on the same address
    try:
        summary = run_batch(two_post_brand, DEMO_WEEK, Settings.from_env())
        assert summary["failures"] == [] and summary["counts"]["draft"]["reused"] == len(done)
        events = _events(settings)
        assert sum(e.kind == "draft.created" for e in events) == 2 * N_SMALL
        assert sum(e.kind == "provenance.signed" for e in events) == 2 * N_SMALL
        assert Ledger(settings.ledger_url).verify().ok
    finally:
        revived.stop()


@pytest.mark.skipif(
    not os.environ.get("ESTAMPILLE_TEST_POSTGRES_URL"),
    reason="set ESTAMPILLE_TEST_POSTGRES_URL (see .ci/postgres.sh) to run a batch on PostgreSQL",
)
def test_whole_batch_on_a_postgres_ledger(fake_llm, monkeypatch, two_post_brand):
    from sqlalchemy import create_engine

    from estampille.ledger.schema import metadata

    url = os.environ["ESTAMPILLE_TEST_POSTGRES_URL"]
    engine = create_engine(url)
    metadata.drop_all(engine)
    engine.dispose()
    monkeypatch.setenv("ESTAMPILLE_LEDGER_URL", url)
    summary = run_batch(two_post_brand, DEMO_WEEK, Settings.from_env())
    assert summary["failures"] == [] and summary["ledger"].startswith("postgresql")
    again = run_batch(two_post_brand, DEMO_WEEK, Settings.from_env())
    assert all(c["new"] == 0 for c in again["counts"].values())
    ledger = Ledger(url)
    assert ledger.verify().ok and sum(e.kind == "provenance.signed" for e in ledger.events()) == 2 * N_SMALL
    ledger.close()


def test_cli_run_prints_where_the_output_is(fake_llm, isolated, two_post_brand, capsys):
    assert main(["run", "--brand", str(two_post_brand), "--week", DEMO_WEEK, "--engine", "plain"]) == 0
    out = capsys.readouterr().out
    assert f"Review page: {isolated / 'out' / 'brand' / DEMO_WEEK / 'review.html'}" in out
    assert "tiny TEST model" in out and "4 new" in out
    assert main(["run", "--brand", str(two_post_brand), "--week", DEMO_WEEK, "--engine", "plain"]) == 0
    assert "0 new, 4 already done" in capsys.readouterr().out


def test_missing_model_folder_exits_2_with_the_fix(fake_llm, brand_copy, isolated, capsys):
    brand_file = brand_copy / "brand.yaml"
    brand_file.write_text(brand_file.read_text().replace("model: builtin:tiny-sd", "model: ./models/my-sdxl"))
    assert main(["run", "--brand", str(brand_copy), "--week", DEMO_WEEK, "--engine", "plain"]) == 2
    err = capsys.readouterr().err
    assert "my-sdxl does not exist" in err and "save_pretrained" in err
    assert not (isolated / "out").exists()


def test_a_render_shard_renders_only_the_prompts_it_is_given_and_drafts_nothing(fake_llm, settings, two_post_brand):
    from estampille import stages
    from estampille.batch import open_batch
    from estampille.errors import EstampilleError

    fake_llm.rules.append(("Camille", "http500"))  # one post's drafts fail: no shard may retry them
    batch = open_batch(two_post_brand, DEMO_WEEK, settings)
    slots = stages.plan_slots(batch)
    prompts = stages.write_image_prompts(batch, slots, stages.draft_texts(batch, slots))
    batch.ledger.close()
    assert len(prompts) == 2 and batch.count("draft").failed == 2
    given = [prompts[1].prompt_id]
    requests, rows = len(fake_llm.requests), len(_events(settings))

    share = stages.render_shard(two_post_brand, DEMO_WEEK, Settings.from_env(), given, 0, 1)
    assert share["new"] == 1 and share["failures"] == []
    assert len(fake_llm.requests) == requests  # neither drafted nor prompted again
    added = _events(settings)[rows:]
    assert [e.kind for e in added].count("render.created") == 1
    assert {e.kind for e in added} <= {"run.started", "render.created"}
    assert {e.payload["prompt_id"] for e in added if e.kind == "render.created"} == set(given)

    with pytest.raises(EstampilleError, match="prompt-nope is not recorded"):
        stages.render_shard(two_post_brand, DEMO_WEEK, Settings.from_env(), ["prompt-nope"], 0, 1)


def test_the_render_stage_takes_any_renderer_handed_to_the_batch(fake_llm, settings, two_post_brand):
    renderer = FlatColours()
    summary = run_batch(two_post_brand, DEMO_WEEK, settings, renderer=renderer)
    assert summary["failures"] == [] and renderer.loads == [0]
    renders = [e.payload for e in _events(settings) if e.kind == "render.created"]
    assert len(renders) == 4 and all(r["model"]["pipeline_class"] == "FlatColours" for r in renders)
    assert all(r["versions"] == {"flat": "1"} for r in renders)
    signed = [e.payload for e in _events(settings) if e.kind == "provenance.signed"]
    assert len(signed) == 4 and all(s["c2pa_state"] == "Trusted" for s in signed)
    again = run_batch(two_post_brand, DEMO_WEEK, Settings.from_env(), renderer=renderer)
    assert again["counts"]["render"]["reused"] == 4 and renderer.loads == [0]  # nothing to load


def test_on_a_gpu_the_bookkeeping_overlaps_rendering_and_records_keep_render_order(fake_llm, settings, two_post_brand):
    """A renderer on a GPU (its device stood in for) gets its PNGs saved on a background thread:
    every image is recorded, in the order it was rendered, with a file matching its SHA-256."""
    from estampille.paths import file_sha256

    renderer = FlatColours(device="cuda:0")
    summary = run_batch(two_post_brand, DEMO_WEEK, settings, renderer=renderer)
    assert summary["failures"] == []
    renders = [e.payload for e in _events(settings) if e.kind == "render.created"]
    assert [r["image_id"] for r in renders] == renderer.rendered and len(renders) == 4
    run_dir = settings.out / "brand" / DEMO_WEEK
    assert all(file_sha256(run_dir / r["file"]) == r["sha256"] and r["device"] == "cuda:0" for r in renders)


class FlatColours:
    """A renderer without a model: one flat colour per seed."""

    def __init__(self, device: str = "cpu"):
        self.device, self.loads, self.rendered = device, [], []

    def weights_id(self):
        return "flat-colours-v1"

    def load(self, gpu=0):
        self.loads.append(gpu)
        return self

    def environment(self):
        return {"scheduler": {"class": "none", "config": {}}, "versions": {"flat": "1"}}

    def describe(self):
        return {
            "id": "flat",
            "name": "flat colours",
            "revision": None,
            "weights_sha256": "0" * 64,
            "pipeline_class": "FlatColours",
            "licence": "CC0-1.0",
            "commercial_use": "yes",
            "licence_source": "test",
            "test_model": True,
        }

    def render(self, jobs, batch_size, *, pad=False):
        from PIL import Image

        from estampille.render.renderer import Rendered

        for job in jobs:
            colour = tuple(job.seed.to_bytes(4, "big")[:3])
            self.rendered.append(job.key)
            yield Rendered(job, Image.new("RGB", (job.width, job.height), colour), 0.0, batch_size)


def test_the_static_page_and_the_web_page_show_one_view_of_the_week(fake_llm, settings, two_post_brand):
    """Both pages render `review.week_view`: the static page lists what the web page lists, failed
    text variants included, read back from the ledger."""
    from estampille.review.week_view import load_run

    fake_llm.rules.append(("Camille", "http500"))  # the English post's drafts fail
    summary = run_batch(two_post_brand, DEMO_WEEK, settings)
    html = open(summary["review_page"], encoding="utf-8").read()
    ledger = Ledger(settings.ledger_url)
    try:
        run = load_run(ledger, "brand", DEMO_WEEK)
    finally:
        ledger.close()
    shown = [d.draft_id for slot in run.slots for d in slot.drafts] + list(run.images)
    assert len(shown) == 4 and all(item_id in html for item_id in shown)  # 2 drafts, 2 images
    assert [len(slot.failures) for slot in run.slots] == [0, 2]
    # read back as records.ItemFailure: why, and what the endpoint said, shown on the page
    assert all(f.error and f.error_type and f"A text variant failed: {f.error}" in html for f in run.slots[1].failures)
    assert html.count("A text variant failed") == 2 and 'id="sourdough-linkedin"' in html
