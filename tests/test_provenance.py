"""XMP written first, then a C2PA manifest signed with the dev CA; tampering never reads as valid."""

from __future__ import annotations

import io
import stat
import zlib

import pytest
from PIL import Image

from estampille.errors import ConfigError
from estampille.provenance.c2pa_manifest import ManifestSigner, generation_manifest, read_manifest
from estampille.provenance.identity import configured_identity, dev_identity
from estampille.provenance.xmp import TRAINED, XmpFields, png_with_xmp, read_xmp, xmp_packet

from .png_chunks import chunks, rebuild

FIELDS = XmpFields(
    digital_source_type=TRAINED,
    ai_system="builtin:tiny-sd",
    ai_system_version="sha256:abc",
    ai_prompt='loaf "on" <table> & linen',
    creator="Maison Levain",
    credit_line="Maison Levain (AI)",
    copyright_notice="© 2026 Maison Levain SAS",
    web_statement="https://example.test/rights",
    licensor_name="Maison Levain SAS",
    licensor_url="https://example.test/contact",
    data_mining="prohibited",
)


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    return dev_identity(tmp_path_factory.mktemp("keys") / "signer")


@pytest.fixture(scope="module")
def signed(identity):
    image = Image.effect_mandelbrot((128, 128), (-2, -1.5, 1, 1.5), 40).convert("RGB")
    unsigned = png_with_xmp(image, xmp_packet(FIELDS))
    signer = ManifestSigner(identity)
    manifest = generation_manifest(
        "test.png",
        TRAINED,
        {"name": "diffusers", "version": "0"},
        {"model": "builtin:tiny-sd", "seed": 7},
        "prohibited",
    )
    data = signer.sign(unsigned, "image/png", manifest)
    signer.close()
    return data


def test_dev_ca_keys_are_private_files_in_a_private_folder(identity):
    folder = identity.key_path.parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for key in folder.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "Estampille Dev Signer" in identity.subject


def test_dev_ca_is_reused_not_recreated(identity):
    again = dev_identity(identity.key_path.parent)
    assert again.chain_pem == identity.chain_pem


def test_signed_png_is_trusted_with_dev_ca_and_valid_without(signed, identity):
    trusted = read_manifest(signed, "image/png", identity.trust_anchor_pem)
    assert trusted.state == "Trusted" and trusted.failures == []
    assert read_manifest(signed, "image/png", None).state == "Valid"
    labels = [a["label"] for a in trusted.active["assertions"]]
    assert "org.estampille.generation" in labels and "cawg.training-mining" in labels
    actions = next(a for a in trusted.active["assertions"] if a["label"].startswith("c2pa.actions"))
    assert actions["data"]["actions"][0]["digitalSourceType"] == TRAINED


def test_xmp_survives_signing_with_every_field(signed):
    xmp = read_xmp(signed)
    assert xmp["Iptc4xmpExt:DigitalSourceType"] == TRAINED
    assert xmp["Iptc4xmpExt:AIPromptInformation"] == 'loaf "on" <table> & linen'
    assert xmp["dc:creator"] == "Maison Levain" and xmp["dc:rights"] == "© 2026 Maison Levain SAS"
    # DMI-PROHIBITED: the manifest forbids training, inference and mining, so the XMP does too.
    assert xmp["plus:DataMining"].endswith("/DMI-PROHIBITED")
    assert "Maison Levain SAS" in xmp["plus:Licensor"]


def test_no_key_material_in_the_signed_file(signed, identity):
    assert b"PRIVATE KEY" not in signed
    key_body = b"".join(identity.key_path.read_bytes().splitlines()[1:-1])
    assert key_body[:40] not in signed


def test_one_changed_pixel_is_invalid(signed, identity):
    parts = chunks(signed)
    raw = bytearray(zlib.decompress(b"".join(b for k, b in parts if k == b"IDAT")))
    raw[1] ^= 1
    idat_done, rebuilt = False, []
    for kind, body in parts:
        if kind == b"IDAT":
            if idat_done:
                continue
            body, idat_done = zlib.compress(bytes(raw)), True
        rebuilt.append((kind, body))
    report = read_manifest(rebuild(rebuilt), "image/png", identity.trust_anchor_pem)
    assert report.state == "Invalid" and report.failures


def test_edited_xmp_after_signing_is_invalid(signed, identity):
    edited = [
        (k, b.replace(b"Maison Levain SAS", b"Someone Else SAS")) if k == b"iTXt" else (k, b) for k, b in chunks(signed)
    ]
    report = read_manifest(rebuild(edited), "image/png", identity.trust_anchor_pem)
    assert report.state == "Invalid"


def test_stripped_file_reports_absent_manifest(signed, identity):
    buffer = io.BytesIO()
    Image.open(io.BytesIO(signed)).save(buffer, "PNG")
    assert read_manifest(buffer.getvalue(), "image/png", identity.trust_anchor_pem).state == "absent"


def test_truncated_file_is_never_valid(signed, identity):
    report = read_manifest(signed[: len(signed) // 2], "image/png", identity.trust_anchor_pem)
    assert report.state in ("Invalid", "absent")


def test_configured_key_readable_by_others_is_refused(identity, tmp_path):
    key = tmp_path / "brand.key"
    key.write_bytes(identity.key_path.read_bytes())
    key.chmod(0o644)
    cert = tmp_path / "chain.pem"
    cert.write_bytes(identity.chain_pem)
    with pytest.raises(ConfigError, match="chmod 600"):
        configured_identity(cert, key)
    key.chmod(0o600)
    assert configured_identity(cert, key).subject == identity.subject
