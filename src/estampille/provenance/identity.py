"""Who signs: a project dev CA made on first use, or the brand's own certificate chain and key.

Private keys are files with mode 0600 in a 0700 folder; only their path is ever passed
around, and only certificate subjects reach logs, the ledger or metadata.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import ConfigError

DEV_CA_CERT = "dev-ca.pem"
DEV_CA_KEY = "dev-ca.key"
SIGNER_CHAIN = "signer-chain.pem"
SIGNER_KEY = "signer.key"


@dataclass(frozen=True)
class SignerIdentity:
    chain_pem: bytes  # leaf first, then its issuers
    key_path: Path | None  # a private key file, or None when `sign` holds the key elsewhere
    trust_anchor_pem: bytes | None  # the dev CA, to validate as Trusted; None for a public chain
    subject: str
    timestamp_url: str | None = None  # an RFC 3161 timestamp authority (TSA)
    sign: Callable[[bytes], bytes] | None = None  # KMS/HSM: ES256 signature of the given bytes


def write_private(path: Path, data: bytes) -> None:
    """Create a file only its owner can read, atomically; never widen an existing one."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Estampille development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def dev_identity(keys_dir: Path, timestamp_url: str | None = None) -> SignerIdentity:
    """The project's dev CA and its signer certificate, created on first use."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    chain_file, key_file, ca_file = keys_dir / SIGNER_CHAIN, keys_dir / SIGNER_KEY, keys_dir / DEV_CA_CERT
    if not (chain_file.is_file() and key_file.is_file() and ca_file.is_file()):
        _create_dev_ca(keys_dir)
    chain = chain_file.read_bytes()
    leaf = x509.load_pem_x509_certificates(chain)[0]
    if leaf.not_valid_after_utc < dt.datetime.now(dt.UTC) + dt.timedelta(days=1):
        _create_dev_ca(keys_dir)  # expired dev certificate: make a fresh dev CA
        chain = chain_file.read_bytes()
        leaf = x509.load_pem_x509_certificates(chain)[0]
    return SignerIdentity(chain, key_file, ca_file.read_bytes(), leaf.subject.rfc4514_string(), timestamp_url)


def _create_dev_ca(keys_dir: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    no_usage = dict(
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Estampille Dev Root CA"))
        .issuer_name(_name("Estampille Dev Root CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **no_usage), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # The C2PA certificate profile wants a leaf (not the CA) with digitalSignature, an EKU and an AKI.
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Estampille Dev Signer"))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **no_usage), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pkcs8 = (pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_private(keys_dir / DEV_CA_KEY, ca_key.private_bytes(*pkcs8))
    write_private(keys_dir / SIGNER_KEY, leaf_key.private_bytes(*pkcs8))
    (keys_dir / DEV_CA_CERT).write_bytes(ca_cert.public_bytes(pem))
    (keys_dir / SIGNER_CHAIN).write_bytes(leaf_cert.public_bytes(pem) + ca_cert.public_bytes(pem))


def _leaf(cert: Path) -> tuple[bytes, x509.Certificate]:
    if not cert.is_file():
        raise ConfigError(f"signer certificate {cert} does not exist (ESTAMPILLE_SIGNER_CERT)")
    chain = cert.read_bytes()
    try:
        leaf = x509.load_pem_x509_certificates(chain)[0]
    except ValueError:
        raise ConfigError(f"{cert}: not a PEM certificate chain") from None
    now = dt.datetime.now(dt.UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise ConfigError(
            f"signer certificate {cert} is valid from {leaf.not_valid_before_utc:%Y-%m-%d} to "
            f"{leaf.not_valid_after_utc:%Y-%m-%d}, not now: renew it (manifests signed with it "
            "would not validate)"
        )
    return chain, leaf


def configured_identity(
    cert: Path, key: Path, anchor: Path | None = None, timestamp_url: str | None = None
) -> SignerIdentity:
    """The brand's own chain (leaf first) and key; the key file must not be readable by others."""
    chain, leaf = _leaf(cert)
    if not key.is_file():
        raise ConfigError(f"signer key {key} does not exist (ESTAMPILLE_SIGNER_KEY)")
    if key.stat().st_mode & 0o077:
        raise ConfigError(f"signer key {key} is readable by group or others: run `chmod 600 {key}`")
    return SignerIdentity(
        chain, key, anchor.read_bytes() if anchor else None, leaf.subject.rfc4514_string(), timestamp_url
    )


def callback_identity(
    cert: Path, callback: str, anchor: Path | None = None, timestamp_url: str | None = None
) -> SignerIdentity:
    """The brand's chain, with the key in a KMS or HSM reached by `module:function`, a callable
    that returns the ES256 (ECDSA P-256, SHA-256, DER) signature of the bytes it is given."""
    chain, leaf = _leaf(cert)
    module_name, _, function = callback.partition(":")
    try:
        sign = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"ESTAMPILLE_SIGNER_CALLBACK={callback!r}: cannot load it ({exc})") from None
    return SignerIdentity(
        chain, None, anchor.read_bytes() if anchor else None, leaf.subject.rfc4514_string(), timestamp_url, sign
    )


def from_settings(settings) -> SignerIdentity:
    """The signer a batch, an export or a retouch uses: a KMS/HSM callback, or the brand's key
    file, or the project dev CA (created on first use), in that order."""
    if settings.signer_cert and settings.signer_callback:
        return callback_identity(
            settings.signer_cert, settings.signer_callback, settings.signer_anchor, settings.timestamp_url
        )
    if settings.signer_cert and settings.signer_key:
        return configured_identity(
            settings.signer_cert, settings.signer_key, settings.signer_anchor, settings.timestamp_url
        )
    return dev_identity(settings.keys_dir, settings.timestamp_url)
