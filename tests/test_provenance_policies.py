"""Provenance policies and attacks: prompt disclosure, KMS callback signing, expired certificates,
transplanted manifests, paths outside the output folder, imported retouches."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from PIL import Image

from estampille.cli import main
from estampille.errors import ConfigError
from estampille.ledger import Ledger
from estampille.provenance.c2pa_manifest import read_manifest
from estampille.provenance.identity import from_settings as signer_identity
from estampille.provenance.xmp import COMPOSITE_TRAINED, read_xmp
from estampille.settings import Settings
from estampille.stages import run_batch

from .conftest import DEMO_WEEK, keep_posts, renders_of
from .kms import fake_kms
from .png_chunks import chunks, rebuild


def _set_rights(brand_copy, line):
    brand = brand_copy / "brand.yaml"
    brand.write_text(brand.read_text().replace("  data_mining: prohibited\n", f"  data_mining: prohibited\n{line}\n"))


def _signed(settings, brand="brand"):
    ledger = Ledger(settings.ledger_url)
    events = [e.payload for e in ledger.events(kind="provenance.signed")]
    ledger.close()
    run_dir = settings.out / brand / DEMO_WEEK
    return [(p, (run_dir / p["file"]).read_bytes()) for p in events]


@pytest.mark.parametrize("policy", ["hashed", "none"])
def test_prompt_disclosure_policy_governs_xmp_and_manifest(fake_llm, settings, two_post_brand, policy):
    import hashlib

    brand_copy = two_post_brand
    _set_rights(brand_copy, f"  prompt_disclosure: {policy}")
    run_batch(brand_copy, DEMO_WEEK, settings)
    record, data = _signed(settings)[0]
    assert "Iptc4xmpExt:AIPromptInformation" not in read_xmp(data)
    generation = next(
        a["data"]
        for a in read_manifest(data, "image/png", None).active["assertions"]
        if a["label"] == "org.estampille.generation"
    )
    assert "prompt" not in generation and "negative_prompt" not in generation
    sidecar = json.loads((settings.out / "brand" / DEMO_WEEK / record["sidecar"]).read_text())
    prompt = sidecar["render"]["prompt"]
    if policy == "hashed":
        assert generation["prompt_sha256"] == hashlib.sha256((record["prompt_salt"] + prompt).encode()).hexdigest()
    else:
        assert "prompt_sha256" not in generation and record["prompt_salt"] is None


def test_full_disclosure_puts_the_prompt_in_both_but_never_a_local_path(fake_llm, settings, brand_copy):
    calendar = brand_copy / "calendar.yaml"
    calendar.write_text(
        calendar.read_text()
        .replace("    # reference_image:", "    reference_image:")
        .replace("    # strength:", "    strength:")
    )
    keep_posts(brand_copy, ["levain-lundi", "atelier-samedi"])  # one text-to-image, one from a local photo
    run_batch(brand_copy, DEMO_WEEK, settings)
    signed = _signed(settings)
    assert {r["digital_source_type"].rsplit("/", 1)[1] for r, _ in signed} == {
        "trainedAlgorithmicMedia",
        "compositeWithTrainedAlgorithmicMedia",
    }
    for _record, data in signed:
        generation = next(
            a["data"]
            for a in read_manifest(data, "image/png", None).active["assertions"]
            if a["label"] == "org.estampille.generation"
        )
        assert generation["prompt"] and read_xmp(data)["Iptc4xmpExt:AIPromptInformation"] == generation["prompt"]
        assert str(brand_copy) not in json.dumps(generation) and b"/tmp/" not in data


def test_kms_callback_signs_without_the_key_in_estampille(fake_llm, settings, two_post_brand, monkeypatch):
    brand_copy = two_post_brand
    keys = signer_identity(settings)  # the dev CA's chain stands in for the brand's chain
    monkeypatch.setenv("ESTAMPILLE_SIGNER_CERT", str(settings.keys_dir / "signer-chain.pem"))
    monkeypatch.setenv("ESTAMPILLE_SIGNER_CALLBACK", "tests.kms.fake_kms:sign")
    monkeypatch.setenv("ESTAMPILLE_SIGNER_ANCHOR", str(settings.keys_dir / "dev-ca.pem"))
    monkeypatch.setenv("FAKE_KMS_KEY", str(keys.key_path))
    fake_kms.calls.clear()
    identity = signer_identity(Settings.from_env())
    assert identity.key_path is None and identity.sign is fake_kms.sign
    run_batch(brand_copy, DEMO_WEEK, Settings.from_env())
    signed = _signed(Settings.from_env())
    assert len(fake_kms.calls) == len(signed)
    assert all(read_manifest(d, "image/png", keys.trust_anchor_pem).state == "Trusted" for _, d in signed)


def test_expired_brand_certificate_is_refused_before_signing(settings, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Old Brand Signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now - dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "chain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(b"unused")
    (tmp_path / "key.pem").chmod(0o600)
    from estampille.provenance.identity import configured_identity

    with pytest.raises(ConfigError, match="not now: renew it"):
        configured_identity(tmp_path / "chain.pem", tmp_path / "key.pem")


def test_manifest_copied_onto_another_image_is_invalid(batch_copy, settings):
    _, data = _signed(settings)[0]
    manifest = [c for c in chunks(data) if c[0] == b"caBX"]
    other = io.BytesIO()
    Image.new("RGB", (256, 256), "blue").save(other, "PNG")
    parts = chunks(other.getvalue())
    forged = rebuild([parts[0], *manifest, *parts[1:]])
    report = read_manifest(forged, "image/png", (settings.keys_dir / "dev-ca.pem").read_bytes())
    assert report.state == "Invalid" and "assertion.dataHash.mismatch" in report.failures


def test_record_pointing_outside_the_output_folder_is_refused(batch_copy, settings, capsys):
    brand_copy = batch_copy["brand"]
    ledger = Ledger(settings.ledger_url)
    draft = next(e for e in ledger.events(kind="draft.created") if e.subject.endswith("croissant-mercredi"))
    image = ledger.get(renders_of(ledger.events(), "croissant-mercredi")[0])
    forged = next(e for e in ledger.events(kind="provenance.signed") if e.payload["image_id"] == image.key).payload
    ledger.append(
        "provenance.signed",
        "forged",
        {**forged, "file": "../../../../etc/passwd"},
        brand="brand",
        week=DEMO_WEEK,
        subject=image.subject,
    )
    ledger.close()
    main(["review", "approve", draft.key, image.key, "--reviewer", "Camille"])
    capsys.readouterr()
    main(["publish", "--brand", str(brand_copy), "--week", DEMO_WEEK])
    assert f"refused {image.key}: its record points outside the output folder" in capsys.readouterr().out


def test_imported_retouch_becomes_the_exported_version(batch_copy, settings, tmp_path, capsys):
    brand_copy = batch_copy["brand"]
    ledger = Ledger(settings.ledger_url)
    draft = next(e for e in ledger.events(kind="draft.created") if e.subject.endswith("croissant-mercredi"))
    image = ledger.get(renders_of(ledger.events(), "croissant-mercredi")[0])
    ledger.close()
    run_dir = settings.out / "brand" / DEMO_WEEK
    retouched = tmp_path / "retouche.jpg"
    Image.open(run_dir / "renders" / f"{image.key}.png").convert("L").convert("RGB").save(retouched, "JPEG")
    assert main(["import-edit", image.key, str(retouched), "--editor", "Léa"]) == 0
    main(["review", "approve", draft.key, image.key, "--reviewer", "Camille"])
    main(["publish", "--brand", str(brand_copy), "--week", DEMO_WEEK])
    exported = (run_dir / "export" / "instagram" / "croissant-mercredi-1.png").read_bytes()
    assert read_xmp(exported)["Iptc4xmpExt:DigitalSourceType"] == COMPOSITE_TRAINED
    report = read_manifest(exported, "image/png", (settings.keys_dir / "dev-ca.pem").read_bytes())
    assert report.state == "Trusted"
    parent = report.active["ingredients"][0]["title"]
    assert parent.startswith(f"{image.key}.edit-")  # the retouch, itself made from the render
    assert (
        Image.open(io.BytesIO(exported)).convert("RGB").getpixel((10, 10))[0]
        == Image.open(io.BytesIO(exported)).convert("RGB").getpixel((10, 10))[1]
    )  # the grey retouch, not the render
    capsys.readouterr()
    assert main(["audit", str(next((run_dir / "images").glob(f"{image.key}.edit-*.png"))), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)[0]["record"]
    assert record["kind"] == "edit.imported" and record["editor"] == "Léa"


def test_manifest_whose_certificate_expired_after_signing_is_invalid(settings, tmp_path):
    """Why the README asks for a timestamp authority: without one, expiry invalidates the file."""
    import time

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from estampille.provenance.c2pa_manifest import ManifestSigner, generation_manifest
    from estampille.provenance.identity import SignerIdentity, dev_identity, write_private
    from estampille.provenance.xmp import TRAINED

    dev = dev_identity(settings.keys_dir)
    ca_key = serialization.load_pem_private_key((settings.keys_dir / "dev-ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate(dev.trust_anchor_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usage = dict(
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
        key_cert_sign=False,
        crl_sign=False,
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Short")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(seconds=3))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, **usage), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    write_private(
        tmp_path / "short.key", key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    short = SignerIdentity(
        leaf.public_bytes(pem) + dev.trust_anchor_pem, tmp_path / "short.key", dev.trust_anchor_pem, "CN=Short"
    )
    image = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(image, "PNG")
    signer = ManifestSigner(short)
    signed = signer.sign(
        image.getvalue(),
        "image/png",
        generation_manifest("x.png", TRAINED, {"name": "t", "version": "1"}, {}, "prohibited"),
    )
    signer.close()
    assert read_manifest(signed, "image/png", dev.trust_anchor_pem).state == "Trusted"
    time.sleep(4)
    report = read_manifest(signed, "image/png", dev.trust_anchor_pem)
    assert report.state == "Invalid" and "signingCredential.expired" in report.failures
