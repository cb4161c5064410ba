"""Ledger payloads read back into the `records` models: a week recorded by the first version
(drafts without locale, audience, fact spans or similarity; renders without mode, options or
worker; signatures without watermark or soft bindings) still builds the review model, the static
review page, the runs list and the week-ready message."""

from __future__ import annotations

import hashlib

from PIL import Image

from estampille.ledger import Ledger
from estampille.notify import week_message
from estampille.provenance.audit import Auditor
from estampille.provenance.trust import TrustConfig
from estampille.records import Draft, Kind, ReviewDecision
from estampille.review.static_page import write_review_page
from estampille.review.week import WeekState
from estampille.review.week_view import load_run
from estampille.web.runs import list_runs

WEEK = "2026-W48"
SLOT = f"{WEEK}/croissant-lundi"

# Payloads as the first version of the batch wrote them (records.py at its first commit).
OLD_DRAFT = {
    "draft_id": "draft-old-1",
    "slot_id": SLOT,
    "variant": 1,
    "language": "fr",
    "platform": "instagram",
    "caption": "Le croissant du lundi",
    "hashtags": ["#levain"],
    "call_to_action": "Passez nous voir",
    "alt_text": "Un croissant doré sur une planche",
    "text": "Le croissant du lundi\nPassez nous voir #levain",
    "flags": [],
    "llm": {"model": "test"},
}
OLD_RENDER = {
    "image_id": "img-old-1",
    "prompt_id": "prompt-old-1",
    "draft_id": "draft-old-1",
    "slot_id": SLOT,
    "file": "images/img-old-1.raw.png",
    "sha256": "0" * 64,
    "seed": 7,
    "prompt": "a croissant",
    "negative_prompt": "text",
    "steps": 4,
    "guidance": 7.5,
    "width": 64,
    "height": 64,
    "batch_size": 1,
    "model": {
        "id": "builtin:tiny-sd",
        "revision": "1",
        "weights_sha256": "2" * 64,
        "pipeline_class": "StableDiffusionPipeline",
        "licence": "MIT",
        "commercial_use": "yes",
    },
    "scheduler": {"class": "PNDMScheduler", "config": {}},
    "versions": {},
    "device": "cpu",
    "duration_s": 0.1,
    "fingerprints": {"phash": "0" * 16, "dhash": "0" * 16},
}
OLD_SIGNED = {
    "image_id": "img-old-1",
    "file": "images/img-old-1.png",
    "sidecar": "images/img-old-1.json",
    "sha256": "1" * 64,
    "digital_source_type": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
    "c2pa_state": "Valid",
    "signer": "CN=Maison Levain",
}


def _old_week(tmp_path, signed: dict | None = None) -> Ledger:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    common = {"brand": "demo", "week": WEEK, "subject": SLOT}
    ledger.append(Kind.RUN_STARTED, f"run-{WEEK}", {"brand": "Maison Levain", "posts": ["croissant-lundi"]}, **common)
    ledger.append(Kind.DRAFT_CREATED, OLD_DRAFT["draft_id"], OLD_DRAFT, **common)
    ledger.append(Kind.RENDER_CREATED, OLD_RENDER["image_id"], OLD_RENDER, **common)
    ledger.append(
        Kind.LOOKALIKE_CHECKED,
        "check-img-old-1",
        {
            "image_id": "img-old-1",
            "verdict": "lookalike",
            "matches": [
                {"source": "rival", "reference": "rival/a.png", "distances": {"phash": 3}, "verdict": "lookalike"}
            ],
            "thresholds": {"phash": 10},
            "index_size": 1,
        },
        **common,
    )
    ledger.append(Kind.PROVENANCE_SIGNED, "sign-img-old-1", signed or OLD_SIGNED, **common)
    # A decision recorded before decisions carried an item kind, with the reviewer's edit
    ledger.append(
        Kind.REVIEW_APPROVED,
        "review-draft-old-1-1",
        {
            "item_id": "draft-old-1",
            "decision": "approved",
            "reviewer": "Camille",
            "comment": "",
            "decided_at": "2026-11-23T08:00:00+00:00",
            "edit": {"before": OLD_DRAFT["text"], "after": "Le croissant du lundi, revu"},
        },
        **common,
    )
    return ledger


def test_a_week_recorded_by_the_first_version_reads_into_the_models(tmp_path):
    ledger = _old_week(tmp_path)
    state = WeekState.load(ledger, "demo", WEEK)
    draft = state.drafts["draft-old-1"]
    assert isinstance(draft, Draft) and (draft.locale, draft.audience, draft.fact_spans) == ("", None, [])
    render = state.renders["img-old-1"]
    assert (render.mode, render.batch_index, render.options, render.worker) == ("text-to-image", 0, {}, "")
    signed = state.current["img-old-1"]
    assert (signed.watermark, signed.soft_bindings, signed.prompt_disclosure) == (None, [], "full")
    decision = state.decision("draft-old-1")
    assert isinstance(decision, ReviewDecision) and decision.item_kind == ""
    assert state.text_of("draft-old-1") == "Le croissant du lundi, revu"
    assert state.verdict("img-old-1") == "lookalike" and state.state_of("img-old-1") == "pending"

    run = load_run(ledger, "demo", WEEK)
    [slot] = run.slots
    [item] = slot.drafts
    assert item.state == "approved" and item.segments == [("Le croissant du lundi, revu", None)]
    [image] = item.images
    assert (image.file, image.sha256, image.lookalike) == (OLD_SIGNED["file"], OLD_SIGNED["sha256"], True)
    page = write_review_page(tmp_path / "out", "Maison Levain", WEEK, run, []).read_text(encoding="utf-8")
    assert "Le croissant du lundi, revu" in page and "img-old-1" in page and "no watermark" in page
    assert "lookalike (render, hash): rival — rival/a.png" in page  # an ungraded match, worded by describe

    # every per-image record reaches the templates through one mapping, a new stage's kind included
    assert set(image.records) == {Kind.RENDER_CREATED, Kind.LOOKALIKE_CHECKED, Kind.PROVENANCE_SIGNED}
    assert image.records[Kind.PROVENANCE_SIGNED] == signed and image.records[Kind.RENDER_CREATED] == render

    [summary] = list_runs(ledger)
    assert summary.counts["images"] == 1 and summary.counts["lookalikes"] == 1 and summary.counts["approved"] == 1
    message = week_message("Maison Levain", "demo", WEEK, {}, ledger.events(brand="demo"), "https://review.test")
    assert (message["images"], message["lookalike_flags"], message["awaiting_review"]) == (1, 1, 1)
    ledger.close()


def test_the_audit_reads_an_image_of_the_first_version_through_the_models(tmp_path):
    """A signed file of an old week is traced by its bytes, and what the ledger knows of it (model,
    review, lookalike verdict) is read from rows without the fields added since."""
    signed_file = tmp_path / "img-old-1.png"
    Image.new("RGB", (32, 32), (200, 150, 90)).save(signed_file)
    digest = hashlib.sha256(signed_file.read_bytes()).hexdigest()
    ledger = _old_week(tmp_path, {**OLD_SIGNED, "sha256": digest})
    report = Auditor(ledger, TrustConfig()).audit(signed_file)
    ledger.close()
    assert report.record is not None and report.record.found_by == "content hash"
    assert report.record.kind == Kind.PROVENANCE_SIGNED and report.record.model == "builtin:tiny-sd"
    ours = report.ours
    assert ours is not None and (ours.mode, ours.seed, ours.signer) == ("text-to-image", 7, "CN=Maison Levain")
    assert ours.lookalike is not None and (ours.lookalike.verdict, ours.lookalike.matches) == ("lookalike", 1)
    assert ours.review.decision == "pending" and not ours.changed_since_signing
    assert ours.signed_record is not None and ours.signed_record.watermark is None  # added since: its default
    assert set(ours.records) == {Kind.RENDER_CREATED, Kind.LOOKALIKE_CHECKED, Kind.PROVENANCE_SIGNED}
    document = report.as_dict()
    assert {"records", "render_record", "signed_record"}.isdisjoint(document["ours"])
    assert document["ours"]["lookalike"] == {"verdict": "lookalike", "matches": 1}
    assert document["record"]["found_by"] == "content hash" and document["record"]["distances"] is None
