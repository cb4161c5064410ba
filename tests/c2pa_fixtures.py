"""Content Credentials made the way other tools make them, for the audit tests: other claim
generators (an AI image service, a photo editor), their own CAs, real photographs (scikit-image's
samples) as JPEG, remote manifests, tampered files and chains of manifests. Signed with
c2pa-python, the reference implementation, so what the audit reads is what any C2PA reader reads."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"


@dataclass
class TestCA:
    root_pem: bytes
    chain_pem: bytes
    key_pem: bytes

    def signer(self) -> c2pa.Signer:
        return c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, self.chain_pem, self.key_pem, None))


def _name(org: str, cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(org: str, signer_cn: str) -> TestCA:
    """A root CA of `org` and a C2PA signing certificate it issued to `signer_cn`."""
    now = dt.datetime.now(dt.UTC)
    root_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    usage = dict(
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )
    root = (
        x509.CertificateBuilder()
        .subject_name(_name(org, f"{org} Root CA"))
        .issuer_name(_name(org, f"{org} Root CA"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **usage), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(org, signer_cn))
        .issuer_name(root.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return TestCA(root.public_bytes(pem), leaf.public_bytes(pem) + root.public_bytes(pem), key)


def photo_jpeg(name: str = "coffee", size: int = 320) -> bytes:
    """A real photograph (scikit-image's sample photos) as a JPEG."""
    from skimage import data

    image = Image.fromarray(getattr(data, name)()).convert("RGB")
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def sign(
    data: bytes,
    mime: str,
    manifest: dict,
    ca: TestCA,
    ingredients: list[tuple[dict, str, bytes]] = (),
    remote_url: str | None = None,
) -> bytes:
    context = c2pa.Context.from_dict(
        {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}, "builder": {"thumbnail": {"enabled": False}}}
    )
    signer = ca.signer()
    try:
        with c2pa.Builder(manifest, context) as builder:
            for ingredient, ingredient_mime, ingredient_bytes in ingredients:
                builder.add_ingredient(ingredient, ingredient_mime, io.BytesIO(ingredient_bytes))
            if remote_url:
                builder.set_no_embed()
                builder.set_remote_url(remote_url)
            out = io.BytesIO()
            builder.sign(signer, mime, io.BytesIO(data), out)
            return out.getvalue()
    finally:
        signer.close()


def ai_generated(generator: str = "AcmeGen Studio", version: str = "3.2", title: str = "acmegen-output.jpg") -> dict:
    """What an AI image service writes: created by a trained model, no training or mining."""
    return {
        "claim_generator_info": [{"name": generator, "version": version}],
        "title": title,
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": IPTC + "trainedAlgorithmicMedia",
                            "softwareAgent": {"name": "AcmeGen Diffusion", "version": "7"},
                        }
                    ]
                },
            },
            {
                "label": "cawg.training-mining",
                "data": {
                    "entries": {
                        "cawg.ai_generative_training": {"use": "notAllowed"},
                        "cawg.ai_training": {"use": "notAllowed"},
                        "cawg.ai_inference": {"use": "notAllowed"},
                        "cawg.data_mining": {"use": "notAllowed"},
                    }
                },
            },
            {
                "label": "stds.schema-org.CreativeWork",
                "data": {
                    "@context": "https://schema.org",
                    "@type": "CreativeWork",
                    "author": [{"@type": "Person", "name": "Ines Moreau"}],
                },
            },
        ],
    }


def photo_editor_composite(title: str = "retouched.jpg") -> dict:
    """What a photo editor writes when a person composites AI content into an opened file."""
    return {
        "claim_generator_info": [{"name": "Adobe_Photoshop", "version": "26.9.0"}],
        "title": title,
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [
                        {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}},
                        {
                            "action": "c2pa.edited",
                            "digitalSourceType": IPTC + "compositeWithTrainedAlgorithmicMedia",
                            "softwareAgent": {"name": "Adobe Firefly"},
                        },
                    ]
                },
            }
        ],
    }


def captured(generator: str = "Lumen Camera", title: str = "capture.jpg") -> dict:
    return {
        "claim_generator_info": [{"name": generator, "version": "1.0"}],
        "title": title,
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": IPTC + "digitalCapture"}]},
            }
        ],
    }


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
