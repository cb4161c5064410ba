"""Human decisions, the export gate with the approval manifest, and the audit of stripped files."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from PIL import Image

from estampille.cli import main
from estampille.ledger import Ledger
from estampille.provenance.c2pa_manifest import read_manifest
from estampille.provenance.xmp import TRAINED, read_xmp
from estampille.settings import Settings
from estampille.stages import run_batch

from .conftest import DEMO_WEEK, renders_of


@pytest.fixture
def batch_run(batch_copy):
    """The session's finished demo batch (conftest.finished_batch), copied for this test."""
    settings = batch_copy["settings"]
    ledger = Ledger(settings.ledger_url)
    events = ledger.events()
    ledger.close()
    slot = f"{DEMO_WEEK}/croissant-mercredi"
    return {
        "brand": batch_copy["brand"],
        "run_dir": batch_copy["run_dir"],
        "settings": settings,
        "drafts": [e.key for e in events if e.kind == "draft.created" and e.subject == slot],
        "images": renders_of(events, slot),
        "signed": {e.payload["image_id"]: e.payload for e in events if e.kind == "provenance.signed"},
    }


def _publish(run):
    return main(["publish", "--brand", str(run["brand"]), "--week", DEMO_WEEK])


def test_only_approved_verified_images_are_exported_with_the_decision_in_the_file(batch_run, capsys):
    run = batch_run
    edited = "Notre croissant, 27 couches de beurre AOP Charentes-Poitou.\n\nVisuel créé avec l'aide de l'IA, validé par notre équipe."
    assert main(["review", "approve", run["drafts"][0], "--reviewer", "Camille", "--text", edited]) == 0
    assert main(["review", "approve", run["images"][0], "--reviewer", "Camille", "--comment", "belle lumière"]) == 0
    assert main(["review", "reject", run["images"][1], "--reviewer", "Léa", "--comment", "trop sombre"]) == 0
    capsys.readouterr()
    assert _publish(run) == 0
    out = capsys.readouterr().out
    assert f"refused {run['images'][1]}: rejected by Léa: trop sombre" in out
    assert "no approved text variant" in out  # every other slot is still pending

    export = run["run_dir"] / "export" / "instagram"
    assert sorted(p.name for p in export.glob("*.png")) == ["croissant-mercredi-1.png"]
    data = (export / "croissant-mercredi-1.png").read_bytes()
    report = read_manifest(data, "image/png", (run["settings"].keys_dir / "dev-ca.pem").read_bytes())
    assert report.state == "Trusted"
    review = next(a["data"] for a in report.active["assertions"] if a["label"] == "org.estampille.review")
    assert review["reviewer"] == "Camille" and review["decision"] == "approved"
    assert [(i["title"], i["relationship"]) for i in report.active["ingredients"]] == [
        (f"{run['images'][0]}.png", "parentOf")
    ]
    assert read_xmp(data)["Iptc4xmpExt:DigitalSourceType"] == TRAINED
    assert (export / "croissant-mercredi.txt").read_text().strip() == edited
    assert (export / "croissant-mercredi.alt.txt").read_text().strip()
    rows = list(csv.reader((export / "hootsuite-instagram.csv").open(encoding="utf-8")))
    assert rows == [["25/11/2026 09:00", edited, ""]]

    ledger = Ledger(run["settings"].ledger_url)
    rows_before = ledger.count()
    assert _publish(run) == 0  # same decisions: nothing new
    assert ledger.count() == rows_before and ledger.verify().ok
    ledger.close()


def test_an_approved_image_whose_file_changed_is_refused(batch_run, capsys):
    run = batch_run
    main(["review", "approve", run["drafts"][0], run["images"][0], "--reviewer", "Camille"])
    signed = run["run_dir"] / run["signed"][run["images"][0]]["file"]
    signed.write_bytes(signed.read_bytes() + b"tampered")
    capsys.readouterr()
    _publish(run)
    assert f"refused {run['images'][0]}: signed file changed since it was signed" in capsys.readouterr().out


def test_lookalike_blocks_approval_until_overridden_with_a_reason(batch_run, capsys):
    run = batch_run
    flagged = run["images"][0]
    competitor = run["brand"] / "competitors" / "boulangerie-doree" / "copied.png"
    shutil.copy(run["run_dir"] / "renders" / f"{flagged}.png", competitor)
    run_batch(run["brand"], DEMO_WEEK, Settings.from_env())  # the index changed: checks run again
    capsys.readouterr()
    assert main(["review", "approve", flagged, "--reviewer", "Camille"]) == 2
    assert "needs --override-lookalike" in capsys.readouterr().err
    assert (
        main(
            [
                "review",
                "approve",
                flagged,
                "--reviewer",
                "Camille",
                "--override-lookalike",
                "our own photo, bought by the competitor",
            ]
        )
        == 0
    )
    main(["review", "approve", run["drafts"][0], "--reviewer", "Camille"])
    capsys.readouterr()
    _publish(run)
    data = (run["run_dir"] / "export" / "instagram" / "croissant-mercredi-1.png").read_bytes()
    report = read_manifest(data, "image/png", None)
    actions = next(a for a in report.active["assertions"] if a["label"].startswith("c2pa.actions"))["data"]["actions"]
    assert actions[1]["parameters"]["lookalike_override"] == "our own photo, bought by the competitor"


def test_audit_traces_an_exported_file_and_its_stripped_resized_jpeg(batch_run, tmp_path, capsys):
    run = batch_run
    main(["review", "approve", run["drafts"][0], run["images"][0], "--reviewer", "Camille"])
    _publish(run)
    exported = run["run_dir"] / "export" / "instagram" / "croissant-mercredi-1.png"
    image = Image.open(exported).convert("RGB")
    reposted = tmp_path / "reposted.jpg"
    image.resize((image.width // 2, image.height // 2)).save(reposted, "JPEG", quality=70)
    (tmp_path / "not-an-image.png").write_bytes(b"<html>hello</html>")
    Image.new("1", (12000, 12000)).save(tmp_path / "bomb.png", optimize=True)
    capsys.readouterr()
    status = main(
        [
            "audit",
            str(exported),
            str(reposted),
            str(tmp_path / "not-an-image.png"),
            str(tmp_path / "bomb.png"),
            "--json",
        ]
    )
    reports = {r["file"].rsplit("/", 1)[1]: r for r in json.loads(capsys.readouterr().out)}
    assert status == 1  # one file could not be traced
    signed = reports["croissant-mercredi-1.png"]
    assert signed["c2pa_state"] == "Trusted" and signed["record"]["found_by"] == "content hash"
    assert signed["record"]["kind"] == "export.created" and signed["record"]["reviewer"] == "Camille"
    stripped = reports["reposted.jpg"]
    assert stripped["metadata_gone"] and stripped["c2pa_state"] == "absent" and stripped["xmp"] == {}
    # The watermark traces it when it survives the halving of a 256 px render; the perceptual hash otherwise.
    assert stripped["record"]["found_by"] in ("invisible watermark", "perceptual hash")
    assert stripped["record"]["image_id"] == run["images"][0]
    assert "not a readable image" in reports["not-an-image.png"]["error"]
    assert "decompression bomb" in reports["bomb.png"]["error"] and reports["bomb.png"]["record"] is None

    assert main(["audit", str(reposted)]) == 0
    text = capsys.readouterr().out
    assert "metadata gone" in text and run["images"][0] in text and stripped["record"]["found_by"] in text
