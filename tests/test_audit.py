"""`estampille audit` as a provenance inspector: third-party Content Credentials read field by
field (generator, signer, actions, source type, ingredients, status codes), trust the user
chooses, read-only runs without a ledger, layers cross-checked, our own files in full, our XMP
read back by an independent reader (exiftool), and folder reports."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess

import pytest
from PIL import Image

from estampille.cli import main
from estampille.ledger import Ledger
from estampille.provenance.audit import Auditor
from estampille.provenance.credentials import _unreadable, read_credentials
from estampille.provenance.trust import TrustConfig, audit_trust
from estampille.provenance.xmp import XMP_KEY

from . import c2pa_fixtures as fx
from .conftest import DEMO_WEEK
from .png_chunks import chunks, rebuild

NO_TRUST = TrustConfig()


@pytest.fixture(scope="module")
def acme():
    return fx.make_ca("Acme Corp", "Acme Signer")


@pytest.fixture(scope="module")
def editor_ca():
    return fx.make_ca("Pixel Editors Inc.", "Pixel Editors C2PA")


def _audit_json(capsys, *args) -> tuple[int, list[dict]]:
    capsys.readouterr()
    status = main(["audit", *map(str, args), "--json"])
    return status, json.loads(capsys.readouterr().out)


# --- third-party files -------------------------------------------------------------------------


def test_an_ai_image_from_another_tool_reads_as_a_reference_reader_shows_it(acme):
    signed = fx.sign(fx.photo_jpeg(), "image/jpeg", fx.ai_generated(), acme)
    c = read_credentials(signed, "image/jpeg", NO_TRUST)
    assert (c.state, c.failures) == ("Valid", ["signingCredential.untrusted"])
    m = c.active
    assert m.generator == "AcmeGen Studio 3.2" and m.title == "acmegen-output.jpg"
    assert (m.signer.common_name, m.signer.issuer, m.signer.algorithm) == ("Acme Signer", "Acme Corp", "Es256")
    assert [(a.action, a.digital_source_type, a.software_agent) for a in m.actions] == [
        ("c2pa.created", fx.IPTC + "trainedAlgorithmicMedia", "AcmeGen Diffusion 7")
    ]
    assert m.assertions["cawg.training-mining"] == {
        "cawg.ai_generative_training": "notAllowed",
        "cawg.ai_training": "notAllowed",
        "cawg.ai_inference": "notAllowed",
        "cawg.data_mining": "notAllowed",
    }
    assert m.assertions["stds.schema-org.CreativeWork"] == {"author": ["Ines Moreau"]}
    assert {s.code for s in m.status if s.kind == "success"} >= {"claimSignature.validated", "assertion.dataHash.match"}
    assert c.verdict() == (
        "AI-generated (trainedAlgorithmicMedia), made with AcmeGen Studio 3.2, signed by Acme Signer "
        "(issued by Acme Corp); not in your trust list; signature intact."
    )


def test_trust_is_the_anchors_you_give_and_the_report_names_the_one(acme, tmp_path, capsys, monkeypatch):
    file = fx.write(tmp_path / "ai.jpg", fx.sign(fx.photo_jpeg(), "image/jpeg", fx.ai_generated(), acme))
    anchors = fx.write(tmp_path / "acme-root.pem", acme.root_pem)
    status, [untrusted] = _audit_json(capsys, file)
    assert untrusted["c2pa_state"] == "Valid" and "not in your trust list" in untrusted["verdict"]
    # No signing key is configured: trust for auditing is independent of signing.
    status, [trusted] = _audit_json(capsys, file, "--trust-anchors", anchors)
    assert trusted["c2pa_state"] == "Trusted" and trusted["c2pa_failures"] == []
    assert trusted["credentials"]["trusted_through"] == ["Acme Corp Root CA (acme-root.pem)"]
    assert "trusted through Acme Corp Root CA (acme-root.pem)" in trusted["verdict"]
    monkeypatch.setenv("ESTAMPILLE_TRUST_ANCHORS", str(anchors))
    assert _audit_json(capsys, file)[1][0]["c2pa_state"] == "Trusted"
    monkeypatch.delenv("ESTAMPILLE_TRUST_ANCHORS")
    # An end-entity certificate allowed as it is, without its CA.
    leaf = fx.write(
        tmp_path / "acme-signer.pem",
        acme.chain_pem.split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n",
    )
    status, [allowed] = _audit_json(capsys, file, "--allowed-certs", leaf)
    assert allowed["c2pa_state"] == "Trusted" and allowed["c2pa_failures"] == []
    assert allowed["credentials"]["trusted_through"] == ["allowed certificate Acme Signer (acme-signer.pem)"]
    # Another certificate with the same name is not the allowed one.
    impostor = fx.make_ca("Acme Corp", "Acme Signer")
    forged = fx.write(tmp_path / "forged.jpg", fx.sign(fx.photo_jpeg(), "image/jpeg", fx.ai_generated(), impostor))
    assert _audit_json(capsys, forged, "--allowed-certs", leaf)[1][0]["c2pa_state"] == "Valid"


def test_changed_pixels_are_named_as_a_data_hash_mismatch(acme):
    signed = bytearray(fx.sign(fx.photo_jpeg(), "image/jpeg", fx.ai_generated(), acme))
    signed[-200] ^= 0xFF  # inside the entropy-coded image data
    c = read_credentials(bytes(signed), "image/jpeg", NO_TRUST)
    assert c.state == "Invalid" and "assertion.dataHash.mismatch" in c.failures
    assert "CHANGED OR BROKEN: the image was changed after signing (assertion.dataHash.mismatch)" in c.verdict()


def test_a_changed_claim_is_named_as_a_claim_signature_mismatch(acme):
    signed = fx.sign(fx.photo_jpeg(), "image/jpeg", fx.ai_generated(title="claimtitle-original.jpg"), acme)
    assert signed.count(b"claimtitle-original.jpg") == 1
    tampered = signed.replace(b"claimtitle-original.jpg", b"claimtitle-0riginal.jpg")
    c = read_credentials(tampered, "image/jpeg", NO_TRUST)
    assert c.state == "Invalid" and "claimSignature.mismatch" in c.failures, c.failures
    assert "the claim was changed after it was signed" in c.verdict()


def test_a_remote_manifest_is_named_not_fetched(acme, tmp_path, capsys):
    url = "https://manifests.example.org/acme/1234.c2pa"
    file = fx.write(
        tmp_path / "cloud.jpg", fx.sign(fx.photo_jpeg(), "image/jpeg", fx.ai_generated(), acme, remote_url=url)
    )
    status, [report] = _audit_json(capsys, file)
    assert report["c2pa_state"] == "remote" and report["credentials"]["remote_url"] == url
    assert report["c2pa_failures"] == ["manifest.inaccessible"]
    assert (
        f"remote manifest at {url}, not fetched (offline)" in report["verdict"]
        and "--fetch-remote" in report["verdict"]
    )


def test_a_plain_photograph_has_no_credentials_and_is_not_called_stripped(tmp_path, capsys):
    file = fx.write(tmp_path / "photo.jpg", fx.photo_jpeg("astronaut"))
    status, [report] = _audit_json(capsys, file)
    assert report["c2pa_state"] == "absent" and report["verdict"].startswith("No Content Credentials")
    assert report["metadata_gone"] is False
    assert any("no provenance metadata" in note for note in report["notes"])
    main(["audit", str(file)])
    assert "metadata gone" not in capsys.readouterr().out


def test_a_photo_editor_composite_and_a_chain_of_three_manifests(acme, editor_ca):
    """Camera capture -> AI image composited in a photo editor -> cropped by the editor again:
    each manifest has its generator, signer and actions, and ingredients form the tree."""
    capture = fx.sign(fx.photo_jpeg("chelsea"), "image/jpeg", fx.captured(), acme)
    composite = fx.sign(
        capture,
        "image/jpeg",
        fx.photo_editor_composite("composite.jpg"),
        editor_ca,
        [({"title": "capture.jpg", "relationship": "parentOf", "label": "parent"}, "image/jpeg", capture)],
    )
    cropped_manifest = {
        "claim_generator_info": [{"name": "Adobe_Photoshop", "version": "26.9.0"}],
        "title": "final.jpg",
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [
                        {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}},
                        {"action": "c2pa.cropped"},
                    ]
                },
            }
        ],
    }
    final = fx.sign(
        composite,
        "image/jpeg",
        cropped_manifest,
        editor_ca,
        [({"title": "composite.jpg", "relationship": "parentOf", "label": "parent"}, "image/jpeg", composite)],
    )
    c = read_credentials(final, "image/jpeg", NO_TRUST)
    assert c.state == "Valid" and c.manifest_count == 3
    top = c.active
    assert (top.generator, top.signer.common_name, top.signer.issuer) == (
        "Adobe_Photoshop 26.9.0",
        "Pixel Editors C2PA",
        "Pixel Editors Inc.",
    )
    assert [a.action for a in top.actions] == ["c2pa.opened", "c2pa.cropped"]
    assert [(i.title, i.relationship, i.state) for i in top.ingredients] == [("composite.jpg", "parentOf", "intact")]
    middle = top.children[0]
    assert [(a.action, a.digital_source_type, a.software_agent) for a in middle.actions] == [
        ("c2pa.opened", None, None),
        ("c2pa.edited", fx.IPTC + "compositeWithTrainedAlgorithmicMedia", "Adobe Firefly"),
    ]
    bottom = middle.children[0]
    assert (bottom.generator, bottom.signer.issuer, bottom.source_types) == (
        "Lumen Camera 1.0",
        "Acme Corp",
        [fx.IPTC + "digitalCapture"],
    )
    # The newest declared source type is the composite's: the verdict says AI is in it.
    assert c.verdict().startswith("Composite including AI-generated content (compositeWithTrainedAlgorithmicMedia)")


def test_an_ingredient_whose_manifest_is_missing_is_named(acme):
    """A parent's manifest renamed in the store (as a tool that rewrites the store badly would):
    the child's ingredient points at a manifest that is no longer there."""
    parent = fx.sign(fx.photo_jpeg(), "image/jpeg", fx.ai_generated(), acme)
    child = fx.sign(
        parent,
        "image/jpeg",
        fx.photo_editor_composite("child.jpg"),
        acme,
        [({"title": "parent.jpg", "relationship": "parentOf", "label": "parent"}, "image/jpeg", parent)],
    )
    label = re.search(rb"urn:c2pa:[0-9a-f-]{36}", child).group(0)  # the parent's own label box comes first
    at = child.index(label)
    renamed = label[:-1] + (b"0" if label[-1:] != b"0" else b"1")
    c = read_credentials(child[:at] + renamed + child[at + len(label) :], "image/jpeg", NO_TRUST)
    assert c.state == "Invalid" and "ingredient.manifest.missing" in c.failures
    assert [(i.title, i.relationship, i.state) for i in c.active.ingredients] == [
        ("parent.jpg", "parentOf", "changed or broken: ingredient.manifest.missing")
    ]
    assert "the ingredient's manifest is missing from the store (ingredient.manifest.missing)" in c.verdict()


@pytest.mark.parametrize(
    "message, state, code",
    [
        ("Other: unknown algorithm", "unsupported", "algorithm.unsupported"),
        ("Other: prerelease content detected", "unsupported", "com.adobe.prerelease"),
        ("Remote: must fetch remote manifests from url https://x.example/m", "remote", "manifest.inaccessible"),
        ("ManifestNotFound: no JUMBF data found", "absent", None),
    ],
)
def test_what_the_library_cannot_validate_gets_a_c2pa_status_code(message, state, code):
    """The messages c2pa-python raises for the c2pa-rs fixtures no_alg.jpg, prerelease.jpg and
    cloud.jpg (tried by hand; those files are not ours to commit)."""
    c = _unreadable(message)
    assert c.state == state and c.failures == ([code] if code else [])


# --- read-only, no ledger, one JSON document ---------------------------------------------------


def test_audit_writes_nothing_and_works_without_a_ledger(acme, isolated, capsys):
    file = fx.write(isolated / "ai.jpg", fx.sign(fx.photo_jpeg(), "image/jpeg", fx.ai_generated(), acme))
    bad = fx.write(isolated / "broken.png", b"\x89PNG\r\n\x1a\nnot really")
    before = sorted(p.relative_to(isolated) for p in isolated.rglob("*"))
    status, reports = _audit_json(capsys, file, bad)
    assert status == 1  # nothing could be traced
    assert sorted(p.relative_to(isolated) for p in isolated.rglob("*")) == before  # no keys, no folders
    assert [r["file"].rsplit("/", 1)[1] for r in reports] == ["ai.jpg", "broken.png"]
    assert reports[0]["c2pa_state"] == "Valid" and any("nothing could be traced" in n for n in reports[0]["notes"])
    assert reports[1]["error"] and reports[1]["record"] is None


def _xmp_png(packet: str) -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt(XMP_KEY, packet)
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (120, 80, 40)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def test_xmp_without_a_source_type_is_shown_with_its_own_namespace_prefixes(tmp_path, capsys):
    packet = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
        'xmlns:acme="http://ns.acme.example/studio/1.0/" xmp:CreatorTool="Lumen 2" acme:Project="Spring"/>'
        "</rdf:RDF></x:xmpmeta>"
    )
    file = fx.write(tmp_path / "edited.png", _xmp_png(packet))
    status, [report] = _audit_json(capsys, file)
    assert report["xmp"] == {"xmp:CreatorTool": "Lumen 2", "acme:Project": "Spring"}
    main(["audit", str(file)])
    text = capsys.readouterr().out
    assert "XMP: present, no DigitalSourceType" in text and "XMP: none" not in text


# --- our own files ----------------------------------------------------------------------------


def _events(batch):
    ledger = Ledger(batch["settings"].ledger_url)
    try:
        return ledger.events()
    finally:
        ledger.close()


def test_our_signed_file_names_the_dev_ca_the_model_and_its_licence(batch_copy, capsys):
    signed = next(e.payload for e in _events(batch_copy) if e.kind == "provenance.signed")
    status, [report] = _audit_json(capsys, batch_copy["run_dir"] / signed["file"])
    assert report["record"]["found_by"] == "content hash" and report["record"]["model"] == "builtin:tiny-sd"
    assert report["credentials"]["development_ca"] is True and report["c2pa_state"] == "Trusted"
    assert "development CA, not a public trust list" in report["verdict"]
    assert report["verdict"].startswith(f"Estampille image {signed['image_id']} (brand {DEMO_WEEK})")
    ours = report["ours"]
    assert (ours["model_name"], ours["licence"], ours["commercial_use"], ours["test_model"]) == (
        "Estampille tiny test model (random weights)",
        "Apache-2.0",
        "yes",
        True,
    )
    pending = {"decision": "pending", "reviewer": None, "decided_at": None, "lookalike_override": None}
    assert ours["review"] == pending and report["conflicts"] == []
    assert "render_record" not in ours and "signed_record" not in ours  # the JSON says what the audit found
    # The XMP names the model as people do and agrees with the manifest on ids and data mining.
    xmp, active = report["xmp"], report["credentials"]["active"]
    assert xmp["Iptc4xmpExt:AISystemUsed"] == "Estampille tiny test model (random weights)"
    assert xmp["Iptc4xmpExt:AISystemVersionUsed"] == f"weights sha256:{ours['weights_sha256']}"
    assert xmp["xmpMM:InstanceID"] == active["instance_id"] and xmp["xmpMM:DocumentID"].startswith("xmp.did:")
    assert xmp["plus:DataMining"].endswith("/DMI-PROHIBITED")


def test_an_image_to_image_render_shows_the_picture_it_started_from_and_its_lookalike_verdict(batch_copy, capsys):
    events = _events(batch_copy)
    render = next(e.payload for e in events if e.kind == "render.created" and e.subject.endswith("tradition-vendredi"))
    signed = next(
        e.payload for e in events if e.kind == "provenance.signed" and e.payload["image_id"] == render["image_id"]
    )
    status, [report] = _audit_json(capsys, batch_copy["run_dir"] / signed["file"])
    [ingredient] = report["ours"]["ingredients"]
    assert ingredient["title"] == "boulangerie-doree-04.jpg" and ingredient["relationship"] == "inputTo"
    assert ingredient["lookalike"] == "lookalike" and ingredient["matches"][0]["source"] == "Boulangerie Dorée"
    assert [(i["title"], i["relationship"]) for i in report["credentials"]["active"]["ingredients"]] == [
        ("boulangerie-doree-04.jpg", "inputTo")
    ]
    assert report["credentials"]["source_type"].endswith("compositeWithTrainedAlgorithmicMedia")


def test_edited_xmp_on_our_file_is_a_conflict_and_a_change_since_signing(batch_copy, capsys, tmp_path):
    signed = next(e.payload for e in _events(batch_copy) if e.kind == "provenance.signed")
    parts = chunks((batch_copy["run_dir"] / signed["file"]).read_bytes())
    edited = []
    for kind, body in parts:
        if kind == b"iTXt" and body.startswith(XMP_KEY.encode()):
            text = body.decode("utf-8")
            text = text.replace("trainedAlgorithmicMedia", "digitalCapture")
            text = re.sub(r"<dc:creator><rdf:Seq><rdf:li>[^<]*", "<dc:creator><rdf:Seq><rdf:li>Someone Else", text)
            body = text.encode("utf-8")
        edited.append((kind, body))
    file = fx.write(tmp_path / "relabelled.png", rebuild(edited))
    status, [report] = _audit_json(capsys, file)
    assert report["record"]["image_id"] == signed["image_id"]
    assert report["record"]["found_by"] == "our C2PA manifest (file changed since)"
    assert report["ours"]["changed_since_signing"] and "CHANGED since signing" in report["verdict"]
    conflicts = {c["field"]: c["layers"] for c in report["conflicts"]}
    assert conflicts["source type"] == {
        "XMP": "digitalCapture",
        "C2PA": "trainedAlgorithmicMedia",
        "ledger": "trainedAlgorithmicMedia",
    }
    assert conflicts["creator"]["XMP"] == "Someone Else" and conflicts["creator"]["ledger"] == "Maison Levain"
    assert "Layers disagree on: source type, creator" in report["verdict"]


def test_an_export_carries_the_review_the_alt_text_and_an_instance_id_its_manifest_shares(batch_copy, capsys):
    events = _events(batch_copy)
    slot = f"{DEMO_WEEK}/croissant-mercredi"
    draft = next(e for e in events if e.kind == "draft.created" and e.subject == slot)
    flagged = {
        e.payload["image_id"] for e in events if e.kind == "lookalike.checked" and e.payload["verdict"] == "lookalike"
    }
    image = next(e.key for e in events if e.kind == "render.created" and e.subject == slot and e.key not in flagged)
    assert main(["review", "approve", draft.key, image, "--reviewer", "Camille"]) == 0
    assert main(["publish", "--brand", str(batch_copy["brand"]), "--week", DEMO_WEEK]) == 0
    exported = batch_copy["run_dir"] / "export" / "instagram" / "croissant-mercredi-1.png"
    status, [report] = _audit_json(capsys, exported)
    assert report["record"]["kind"] == "export.created" and report["ours"]["review"]["reviewer"] == "Camille"
    assert report["ours"]["exports"][0]["file"].endswith("croissant-mercredi-1.png")
    xmp = report["xmp"]
    assert xmp["Iptc4xmpCore:AltTextAccessibility"] == draft.payload["alt_text"].strip()
    assert xmp["xmpMM:InstanceID"] == report["credentials"]["active"]["instance_id"]
    signed = next(e.payload for e in events if e.kind == "provenance.signed" and e.payload["image_id"] == image)
    assert xmp["xmpMM:DocumentID"] == signed["xmp"]["document_id"]  # the same document, a new instance
    assert report["conflicts"] == []


def test_an_imported_retouch_is_reported(batch_copy, capsys, tmp_path):
    events = _events(batch_copy)
    render = next(e.payload for e in events if e.kind == "render.created")
    retouch = tmp_path / "retouch.png"
    Image.open(batch_copy["run_dir"] / render["file"]).rotate(2).save(retouch)
    assert main(["import-edit", render["image_id"], str(retouch), "--editor", "Léa"]) == 0
    edited = next((batch_copy["run_dir"] / "images").glob(f"{render['image_id']}.edit-*.png"))
    status, [report] = _audit_json(capsys, edited)
    assert report["record"]["kind"] == "edit.imported" and report["ours"]["edits"][0]["editor"] == "Léa"
    assert report["credentials"]["source_type"].endswith("compositeWithTrainedAlgorithmicMedia")


@pytest.mark.skipif(
    not shutil.which("exiftool") and not os.environ.get("ESTAMPILLE_REQUIRE_EXIFTOOL"),
    reason="exiftool (Debian's libimage-exiftool-perl) is not installed; .ci/run installs it",
)
def test_exiftool_reads_our_xmp_as_we_wrote_it(batch_copy):
    signed = next(e.payload for e in _events(batch_copy) if e.kind == "provenance.signed")
    out = subprocess.run(
        ["exiftool", "-j", "-XMP:all", "-G1", str(batch_copy["run_dir"] / signed["file"])],
        capture_output=True,
        text=True,
        check=True,
    )
    tags = json.loads(out.stdout)[0]
    assert tags["XMP-iptcExt:DigitalSourceType"].endswith("trainedAlgorithmicMedia")
    assert tags["XMP-iptcExt:AISystemUsed"] == "Estampille tiny test model (random weights)"
    assert tags["XMP-plus:DataMining"].endswith("DMI-PROHIBITED") or tags["XMP-plus:DataMining"] == "Prohibited"
    assert tags["XMP-xmpMM:InstanceID"] == signed["instance_id"]
    assert tags["XMP-xmpMM:DocumentID"] == signed["xmp"]["document_id"]
    assert tags["XMP-photoshop:Credit"] and tags["XMP-dc:Creator"] == "Maison Levain"


# --- folders and reports ----------------------------------------------------------------------


def test_a_folder_gives_one_row_per_file_in_html_csv_and_json(batch_copy, acme, capsys, tmp_path):
    folder = batch_copy["run_dir"] / "images"
    fx.write(folder / "third-party.jpg", fx.sign(fx.photo_jpeg(), "image/jpeg", fx.ai_generated(), acme))
    files = sorted(p for p in folder.iterdir() if p.suffix in (".png", ".jpg"))
    for name in ("audit.html", "audit.csv", "audit.json"):
        main(["audit", str(folder), "--report", str(tmp_path / name)])
    capsys.readouterr()
    rows = list(csv.DictReader((tmp_path / "audit.csv").open(encoding="utf-8")))
    assert [r["file"] for r in rows] == [str(p) for p in files]
    third = next(r for r in rows if r["file"].endswith("third-party.jpg"))
    assert (third["generator"], third["signer"], third["source_type"]) == (
        "AcmeGen Studio 3.2",
        "Acme Signer",
        "trainedAlgorithmicMedia",
    )
    assert len(json.loads((tmp_path / "audit.json").read_text())) == len(files)
    html = (tmp_path / "audit.html").read_text(encoding="utf-8")
    assert html.count('<section class="audit-file"') == len(files)
    assert html.count("data:image/webp;base64,") == len(files)  # thumbnails travel with the file
    assert "made with AcmeGen Studio 3.2" in html and "development CA" in html


def test_the_web_audit_page_shows_the_same_report(batch_copy):
    from fastapi.testclient import TestClient

    from estampille.provenance.audit_report import html_fragment
    from estampille.provenance.identity import from_settings
    from estampille.web.app import WebConfig, create_app
    from estampille.web.security import ReviewerPolicy

    settings = batch_copy["settings"]
    signed = next(e.payload for e in _events(batch_copy) if e.kind == "provenance.signed")
    path = batch_copy["run_dir"] / signed["file"]
    app = create_app(
        WebConfig(settings, from_settings(settings), ReviewerPolicy(), batch_copy["brand"].parent, "127.0.0.1")
    )
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50123)) as client:
        # A read-only server on loopback (no reviewers): anyone local may audit, with the page's CSRF token.
        csrf = re.search(r'/audit\?csrf=([^"]+)"', client.get("/audit").text).group(1)
        page = client.post(f"/audit?csrf={csrf}", files={"file": (path.name, path.read_bytes(), "image/png")}).text
    ledger = Ledger(settings.ledger_url)
    report = Auditor(ledger, audit_trust(settings)).audit(path)
    ledger.close()
    report.file = path.name
    assert html_fragment([report]).split('<p class="verdict audit-verdict">')[1].split("</p>")[0] in page
    assert "development CA" in page and signed["image_id"] in page
