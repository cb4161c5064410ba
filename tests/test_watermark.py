"""Durable Content Credentials: every render carries an invisible watermark (embedded before the
XMP and the signature), its manifest a `c2pa.watermarked.bound` action and `c2pa.soft-binding`
assertions, and the audit reads the mark back from a copy a platform stripped and re-encoded."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from estampille.cli import main
from estampille.ledger import Ledger
from estampille.provenance import soft_binding, watermark
from estampille.provenance.c2pa_manifest import read_manifest
from estampille.provenance.identity import from_settings as signer_identity
from estampille.stages import run_batch

from .conftest import DEMO_WEEK, keep_posts

C2PA_TS = Path(__file__).resolve().parents[1] / "tools" / "c2pa-ts"


def platform_repost(source: Path, target: Path, side: int = 1080, quality: int = 80) -> Path:
    """What Instagram does to an upload: metadata gone, resized to 1080 px, JPEG with 4:2:0 chroma."""
    image = Image.open(source).convert("RGB")
    image.resize((side, round(side * image.height / image.width)), Image.Resampling.LANCZOS).save(
        target, "JPEG", quality=quality, subsampling=2
    )
    return target


@pytest.fixture
def signed(batch_copy):
    """The session's finished demo batch (copied): its signing records and files."""
    ledger = Ledger(batch_copy["settings"].ledger_url)
    records = [e.payload for e in ledger.events(kind="provenance.signed")]
    ledger.close()
    return {**batch_copy, "records": records}


# --------------------------------------------------------------- the mark itself
def test_payload_round_trip_and_a_wrong_id_is_never_decoded():
    bits = watermark.encode_payload("img-0123456789abcdef0123")
    assert watermark.decode_payload(bits) == "img-0123456789ab"
    damaged = bits.copy()
    damaged[::18] ^= 1  # 8 errors: corrected
    assert watermark.decode_payload(damaged) == "img-0123456789ab"
    rng = np.random.default_rng(7)
    assert all(watermark.decode_payload(rng.integers(0, 2, watermark.CODE_BITS)) is None for _ in range(20000))
    assert watermark.false_decode_bound() < 1e-9
    with pytest.raises(watermark.WatermarkError, match="not an Estampille image id"):
        watermark.short_id("photo-123")


def test_the_key_schedule_and_the_code_never_change():
    """Files marked today must read in ten years: the chip layout, signs, scrambling and the
    payload's coding are pinned (SHA-256 derived, not a library's random stream)."""
    assert watermark._perm[:8].tolist() == [98, 788, 142, 756, 43, 739, 212, 754]
    assert watermark._signs[:8].astype(int).tolist() == [1, 1, -1, 1, -1, 1, 1, -1]
    assert watermark._scramble[:16].tolist() == [0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0]
    coded = np.packbits(watermark.encode_payload("img-0123456789abcdef0123")).tobytes().hex()
    assert coded == "5a076f06043b32656509c2b74a257ea8329c"


def test_embed_is_deterministic_invisible_and_survives_a_platform_and_a_crop():
    from skimage import data

    photo = Image.fromarray(data.chelsea()).resize((1024, 768))
    first, again = (
        watermark.embed(photo, "img-00ff00ff00ff00ff00ff"),
        watermark.embed(photo, "img-00ff00ff00ff00ff00ff"),
    )
    assert first.image.tobytes() == again.image.tobytes()
    assert first.psnr >= 40
    buffer = io.BytesIO()
    first.image.resize((1080, 810), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=75, subsampling=2)
    assert watermark.detect(Image.open(buffer)).image_id == "img-00ff00ff00ff"
    crop = first.image.crop((120, 90, 120 + 768, 90 + 576)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    found = watermark.detect(crop)
    assert found.image_id == "img-00ff00ff00ff" and found.mirrored
    assert watermark.detect(photo).image_id is None


# --------------------------------------------------------------- signing
def test_every_signed_render_is_watermarked_with_its_bindings_in_a_valid_manifest(signed):
    assert signed["records"]
    read = [r["watermark"]["read_back"] for r in signed["records"]]
    assert all(r["as signed"] for r in read)
    assert sum(r["platform copy (1080 px JPEG q80 4:2:0)"] for r in read) >= len(read) - 1, read
    for record in signed["records"]:
        mark = record["watermark"]
        assert mark["method"] == watermark.METHOD and mark["version"] == watermark.VERSION
        assert mark["strength"] in (1.0, 1.25, 1.5) and mark["psnr_db"] >= 37
        assert mark["payload"] == watermark.short_id(record["image_id"])
        assert {b["alg"] for b in record["soft_bindings"]} == {watermark.ALG, soft_binding.ISCC_ALG}
    # The run's summary and its review page say so.
    assert any(
        f"{len(read)} of {len(read)} images carry the invisible watermark" in n for n in signed["summary"]["notes"]
    )
    review = (signed["run_dir"] / "review.html").read_text(encoding="utf-8")
    assert review.count("watermarked (estampille-tiled-ss v1, image ID img-") == len(read)
    record = signed["records"][0]
    data = (signed["run_dir"] / record["file"]).read_bytes()
    report = read_manifest(data, "image/png", signer_identity(signed["settings"]).trust_anchor_pem)
    assert report.state == "Trusted" and report.failures == []
    labels = [a["label"] for a in report.active["assertions"]]
    assert labels.count("c2pa.soft-binding") + labels.count("c2pa.soft-binding__1") == 2, labels
    bindings = [a["data"] for a in report.active["assertions"] if a["label"].startswith("c2pa.soft-binding")]
    assert {
        "alg": watermark.ALG,
        "blocks": [{"scope": {}, "value": soft_binding.watermark_value(record["image_id"])}],
    } in bindings
    actions = next(a for a in report.active["assertions"] if a["label"].startswith("c2pa.actions"))["data"]["actions"]
    assert [a["action"] for a in actions] == ["c2pa.created", "c2pa.watermarked.bound"]
    # The pixels that were signed carry the mark; the raw render does not.
    assert watermark.detect(Image.open(io.BytesIO(data))).image_id == mark_of(record)
    raw = signed["run_dir"] / "renders" / f"{record['image_id']}.png"
    assert watermark.detect(Image.open(raw)).image_id is None


def mark_of(record: dict) -> str:
    return watermark.short_id(record["image_id"])


@pytest.mark.skipif(
    not (C2PA_TS / "node_modules" / "@trustnxt" / "c2pa-ts").is_dir() or not shutil.which("node"),
    reason="the independent validator is installed by `make install` (npm ci in tools/c2pa-ts)",
)
def test_an_independent_implementation_validates_the_manifest_with_its_soft_bindings(signed):
    record = signed["records"][0]
    out = subprocess.run(
        ["node", str(C2PA_TS / "validate.mjs"), str(signed["run_dir"] / record["file"])],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["isValid"], result["statusEntries"]
    codes = {e["code"] for e in result["statusEntries"]}
    assert "assertion.dataHash.match" in codes and "claimSignature.validated" in codes
    hashed = {e["url"].rsplit("/", 1)[-1] for e in result["statusEntries"] if e["code"] == "assertion.hashedURI.match"}
    assert {"c2pa.soft-binding", "c2pa.soft-binding__1"} <= hashed
    labels = [a["label"] for a in result["assertions"]]
    assert "c2pa.soft-binding" in labels


# --------------------------------------------------------------- audit
def test_a_platform_repost_audited_without_the_ledger_says_ai_by_estampille_and_its_id(signed, tmp_path, capsys):
    record = signed["records"][0]
    repost = platform_repost(signed["run_dir"] / record["file"], tmp_path / "repost.jpg")
    capsys.readouterr()
    status = main(["audit", str(repost), "--json", "--ledger", f"sqlite:///{tmp_path / 'no-ledger.sqlite'}"])
    report = json.loads(capsys.readouterr().out)[0]
    assert status == 1  # nothing traced: no ledger here
    assert report["c2pa_state"] == "absent" and report["xmp"] == {}
    assert report["watermark"]["image_id"] == mark_of(record)
    assert report["verdict"].startswith(f"AI-generated by Estampille (invisible watermark), image ID {mark_of(record)}")
    main(["audit", str(repost), "--ledger", f"sqlite:///{tmp_path / 'no-ledger.sqlite'}"])
    text = capsys.readouterr().out
    assert f"watermark: Estampille, AI-generated, image ID {mark_of(record)}" in text


def test_with_the_ledger_the_watermark_traces_the_repost_before_the_perceptual_hash(signed, tmp_path, capsys):
    record = signed["records"][0]
    repost = platform_repost(signed["run_dir"] / record["file"], tmp_path / "repost.jpg")
    capsys.readouterr()
    assert main(["audit", str(repost), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)[0]
    assert report["record"]["found_by"] == "invisible watermark"
    assert report["record"]["image_id"] == record["image_id"] and report["metadata_gone"]
    assert "found by invisible watermark" in report["verdict"]
    html = tmp_path / "audit.html"
    main(["audit", str(repost), "--report", str(html)])
    assert f"Estampille, AI-generated, image ID {mark_of(record)}" in html.read_text()


def test_an_unmarked_photo_reports_no_watermark_and_sdxl_default_mark_is_named(tmp_path, capsys):
    from imwatermark import WatermarkEncoder
    from skimage import data

    photo = tmp_path / "photo.jpg"
    Image.fromarray(data.coffee()).save(photo, "JPEG", quality=90)
    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", watermark.SDXL_BITS)  # what diffusers' SDXL pipelines add
    bgr = encoder.encode(np.ascontiguousarray(data.astronaut()[..., ::-1]), "dwtDct")
    sdxl = tmp_path / "sdxl.png"
    Image.fromarray(np.ascontiguousarray(bgr[..., ::-1])).save(sdxl)
    capsys.readouterr()
    main(["audit", str(photo), str(sdxl), "--json"])
    reports = {Path(r["file"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert reports["photo.jpg"]["watermark"] is None and reports["photo.jpg"]["foreign_watermark"] is None
    assert "Estampille" not in reports["photo.jpg"]["verdict"]
    assert reports["sdxl.png"]["watermark"] is None
    assert "diffusers' SDXL default watermark" in reports["sdxl.png"]["verdict"]


# --------------------------------------------------------------- rerender and the brand setting
def test_a_rerendered_image_watermarked_again_is_the_signed_files_pixels(signed, capsys):
    record = signed["records"][0]
    capsys.readouterr()
    assert main(["rerender", record["image_id"], "--out", str(signed["out"] / "again.png")]) == 0
    text = capsys.readouterr().out
    assert "pixel-identical to the recorded render" in text
    assert f"pixel-identical to the signed file {record['file']}" in text


def test_the_brand_can_turn_the_watermark_off(fake_llm, settings, brand_copy):
    keep_posts(brand_copy, ["levain-lundi"])
    brand_file = brand_copy / "brand.yaml"
    brand_file.write_text(brand_file.read_text(encoding="utf-8") + "\nwatermark:\n  enabled: false\n", encoding="utf-8")
    summary = run_batch(brand_copy, DEMO_WEEK, settings)
    assert summary["failures"] == []
    ledger = Ledger(settings.ledger_url)
    records = [e.payload for e in ledger.events(kind="provenance.signed")]
    ledger.close()
    assert records and all(r["watermark"] is None for r in records)
    assert any("WITHOUT the invisible watermark" in n for n in summary["notes"])
    assert all([b["alg"] for b in r["soft_bindings"]] == [soft_binding.ISCC_ALG] for r in records)
    run_dir = settings.out / "brand" / DEMO_WEEK
    data = (run_dir / records[0]["file"]).read_bytes()
    actions = next(
        a for a in read_manifest(data, "image/png", None).active["assertions"] if a["label"].startswith("c2pa.actions")
    )["data"]["actions"]
    assert [a["action"] for a in actions] == ["c2pa.created"]
    assert watermark.detect(Image.open(io.BytesIO(data))).image_id is None


# --------------------------------------------------------------- the resolver
def test_the_resolver_returns_a_published_images_manifest_by_its_binding_and_404_otherwise(signed, tmp_path):
    import base64

    import c2pa
    from starlette.testclient import TestClient

    from estampille.web.resolver import RateLimit

    from .conftest import renders_of
    from .web_harness import LOCAL, make_app

    ledger = Ledger(signed["settings"].ledger_url)
    events = ledger.events()
    ledger.close()
    slot = f"{DEMO_WEEK}/croissant-mercredi"
    drafts = [e.key for e in events if e.kind == "draft.created" and e.subject == slot]
    published, rejected = renders_of(events, slot)[:2]
    pending = next(e.key for e in events if e.kind == "render.created" and e.subject != slot)
    assert (
        main(
            [
                "review",
                "approve",
                drafts[0],
                published,
                rejected,
                "--reviewer",
                "Camille",
                "--override-lookalike",
                "noise from the tiny test model",
            ]
        )
        == 0
    )
    assert main(["publish", "--brand", str(signed["brand"]), "--week", DEMO_WEEK]) == 0
    assert main(["review", "reject", rejected, "--reviewer", "Léa", "--comment", "withdrawn"]) == 0
    by_id = {r["image_id"]: r for r in signed["records"]}

    app = make_app(signed["settings"], signed["brand"].parent)
    client = TestClient(app, base_url="http://127.0.0.1", client=LOCAL)
    page = client.get(f"/runs/brand/{DEMO_WEEK}/images/{published}").text
    assert f"says AI-generated by Estampille, image ID {watermark.short_id(published)}" in page
    assert "signed · watermarked" in client.get(f"/runs/brand/{DEMO_WEEK}").text
    algorithms = client.get("/c2pa/services/supportedAlgorithms").json()
    assert algorithms == {"watermarks": [{"alg": watermark.ALG}], "fingerprints": [{"alg": soft_binding.ISCC_ALG}]}

    # A stripped repost: its watermark read with the open-source decoder, then resolved by binding.
    repost = platform_repost(signed["run_dir"] / by_id[published]["file"], tmp_path / "repost.jpg")
    found = watermark.detect(Image.open(repost))
    assert found.image_id == watermark.short_id(published)
    value = soft_binding.watermark_value(published)
    answer = client.get("/c2pa/matches/byBinding", params={"alg": watermark.ALG, "value": value})
    assert answer.status_code == 200
    matches = answer.json()["matches"]
    assert len(matches) >= 1 and matches[0]["similarityScore"] == 100
    store = client.get(f"/c2pa/manifests/{matches[0]['manifestId']}")
    assert store.status_code == 200 and store.headers["content-type"] == "application/c2pa"
    with c2pa.Reader("application/c2pa", io.BytesIO(store.content)) as reader:
        manifests = json.loads(reader.json())
    assert manifests["active_manifest"] == matches[0]["manifestId"]
    active = manifests["manifests"][manifests["active_manifest"]]
    assert any(
        a["action"] == "org.estampille.approved"
        for x in active["assertions"]
        if x["label"].startswith("c2pa.actions")
        for a in x["data"]["actions"]
    )
    # The same from the picture itself, and by its ISCC fingerprint (POST, as JSON).
    by_content = client.post(
        "/c2pa/matches/byContent", content=repost.read_bytes(), headers={"content-type": "image/jpeg"}
    ).json()["matches"]
    assert by_content[0]["manifestId"] == matches[0]["manifestId"]
    iscc = soft_binding.iscc_code(Image.open(repost))
    by_iscc = client.post(
        "/c2pa/matches/byBinding",
        json={"alg": soft_binding.ISCC_ALG, "value": base64.b64encode(iscc.encode()).decode()},
    )
    assert matches[0]["manifestId"] in [m["manifestId"] for m in by_iscc.json()["matches"]]

    # Pending and rejected (even once approved) images are never resolved.
    for image_id in (pending, rejected):
        value = soft_binding.watermark_value(image_id)
        assert client.get("/c2pa/matches/byBinding", params={"alg": watermark.ALG, "value": value}).json() == {
            "matches": []
        }
    ledger = Ledger(signed["settings"].ledger_url)
    exported = [e.payload for e in ledger.events(kind="export.created") if e.payload["image_id"] == rejected]
    ledger.close()
    assert exported  # it was published before it was withdrawn
    label = c2pa.Reader("image/png", io.BytesIO((signed["run_dir"] / exported[0]["file"]).read_bytes()))
    withdrawn = json.loads(label.json())["active_manifest"]
    assert client.get(f"/c2pa/manifests/{withdrawn}").status_code == 404
    assert client.get("/c2pa/manifests/urn:c2pa:unknown").status_code == 404
    assert client.get("/c2pa/matches/byBinding", params={"alg": "com.example.nope", "value": "AA=="}).status_code == 400
    # Read-only and rate-limited.
    assert client.delete(f"/c2pa/manifests/{matches[0]['manifestId']}").status_code == 405
    app.state.c2pa_rate = RateLimit(per_minute=3)
    codes = [client.get("/c2pa/services/supportedAlgorithms").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


def test_the_resolver_answers_over_http_behind_the_same_proxy_rules(signed):
    import urllib.error
    import urllib.request

    from starlette.testclient import TestClient

    from .web_harness import LiveServer, make_app

    app = make_app(signed["settings"], signed["brand"].parent)
    with LiveServer(app) as base:  # a real socket on loopback
        with urllib.request.urlopen(f"{base}/c2pa/services/supportedAlgorithms", timeout=10) as answer:
            assert json.loads(answer.read())["watermarks"] == [{"alg": watermark.ALG}]
        query = f"{base}/c2pa/matches/byBinding?alg={watermark.ALG}&value=" + soft_binding.watermark_value(
            signed["records"][0]["image_id"]
        ).replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
        with urllib.request.urlopen(query, timeout=10) as answer:  # signed, never published
            assert json.loads(answer.read()) == {"matches": []}
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/c2pa/manifests/urn:c2pa:nothing", timeout=10)
        assert refused.value.code == 404
    remote = TestClient(app, base_url="http://127.0.0.1", client=("203.0.113.9", 40000))
    assert remote.get("/c2pa/services/supportedAlgorithms").status_code == 403  # bound to localhost
