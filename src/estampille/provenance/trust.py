"""Which signers an audit trusts: anchors the user chooses (the C2PA trust list, an agency's CA),
end-entity certificates allowed as they are, and this machine's development CA, flagged as such
so that a dev-CA "Trusted" never passes for a public one. Reading trust never writes anything:
the dev CA is used only if it already exists.

c2pa reports *that* a chain reached an anchor, not which: the report names the anchors whose
subject organisation (or common name) is the signing certificate's issuer, which is what the
signature info exposes. Allowed end-entity certificates are matched by issuer and serial number
(what identifies an X.509 certificate): c2pa-python 0.38.1 validated such signatures but did not
apply its own `trust.allowed_list` in our tests, so the audit applies the list itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from ..errors import ConfigError
from ..settings import Settings
from .identity import DEV_CA_CERT


@dataclass(frozen=True)
class Anchor:
    common_name: str
    organization: str
    source: str  # the file it came from
    development: bool  # this machine's Estampille dev CA
    pem: bytes
    issuer_organization: str = ""
    serial: int = 0

    @property
    def label(self) -> str:
        name = self.common_name or self.organization
        return f"{name} (development CA of this machine)" if self.development else f"{name} ({self.source})"


@dataclass(frozen=True)
class TrustConfig:
    anchors: tuple[Anchor, ...] = ()
    allowed: tuple[Anchor, ...] = ()  # end-entity certificates trusted as they are

    def c2pa_trust(self) -> dict[str, str]:
        return {"user_anchors": b"".join(a.pem for a in self.anchors).decode()} if self.anchors else {}

    def anchors_for(self, issuer: str | None) -> list[Anchor]:
        """The anchors that can have made a signature by a certificate of `issuer` Trusted."""
        return [a for a in self.anchors if issuer and issuer in (a.organization, a.common_name)]

    def allowed_certificate(self, issuer: str | None, serial: str | None) -> Anchor | None:
        """The allowed end-entity certificate with this issuer and serial number, if any."""
        for cert in self.allowed:
            if serial and str(cert.serial) == str(serial) and issuer in (cert.issuer_organization, ""):
                return cert
        return None


def _names(cert: x509.Certificate) -> tuple[str, str]:
    def first(oid) -> str:
        values = cert.subject.get_attributes_for_oid(oid)
        return str(values[0].value) if values else ""

    return first(NameOID.COMMON_NAME), first(NameOID.ORGANIZATION_NAME)


def load_bundle(path: Path, development: bool = False) -> list[Anchor]:
    """Every certificate of a PEM bundle; a missing or unreadable file is the user's to fix."""
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path}: trust file not found") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM bundle of certificates ({exc})") from None
    anchors = []
    for cert in certs:
        common_name, organization = _names(cert)
        issuer = cert.issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        anchors.append(
            Anchor(
                common_name,
                organization,
                path.name,
                development,
                cert.public_bytes(serialization.Encoding.PEM),
                str(issuer[0].value) if issuer else "",
                cert.serial_number,
            )
        )
    return anchors


def audit_trust(settings: Settings, anchors: Sequence[Path] = (), allowed: Sequence[Path] = ()) -> TrustConfig:
    """Anchors: --trust-anchors and ESTAMPILLE_TRUST_ANCHORS (PEM bundles, `:`-separated), the
    brand's own signer anchor (ESTAMPILLE_SIGNER_ANCHOR), and the dev CA if this machine has one.
    Allowed end-entity certificates: --allowed-certs and ESTAMPILLE_ALLOWED_CERTS."""
    found: list[Anchor] = []
    for path in [*anchors, *settings.trust_anchors]:
        found += load_bundle(path)
    if settings.signer_anchor:
        found += load_bundle(settings.signer_anchor)
    dev_ca = settings.keys_dir / DEV_CA_CERT
    if dev_ca.is_file():
        found += load_bundle(dev_ca, development=True)
    permitted: list[Anchor] = []
    for path in [*allowed, *settings.allowed_certs]:
        permitted += load_bundle(path)
    return TrustConfig(tuple(found), tuple(permitted))
