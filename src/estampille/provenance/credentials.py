"""Read a file's Content Credentials the way a provenance inspector does: every manifest of the
store (the active one first, its ingredients' manifests beneath it), who made and who signed
each, what was done (actions with their digital source type), from what (ingredients), the
training-and-mining and identity assertions, and every validation status code with its meaning,
then one line a designer can act on.

c2pa-python (the reference implementation, c2pa-rs) validates; this module only reads its report.
Offline by default: a remote manifest is named, not fetched.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import c2pa

from .trust import Anchor, TrustConfig

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
SOURCE_TYPES = {  # IPTC digital source types, as a designer would say them
    "trainedAlgorithmicMedia": "AI-generated",
    "compositeWithTrainedAlgorithmicMedia": "composite including AI-generated content",
    "algorithmicallyEnhanced": "AI-enhanced",
    "algorithmicMedia": "computer-generated (not trained AI)",
    "compositeSynthetic": "composite including synthetic content",
    "composite": "composite",
    "digitalCapture": "camera capture",
    "negativeFilm": "scanned film negative",
    "positiveFilm": "scanned film",
    "print": "scanned print",
    "minorHumanEdits": "capture with minor human edits",
    "humanEdits": "human-edited",
    "digitalCreation": "made by a person with digital tools",
    "dataDrivenMedia": "made from data",
    "virtualRecording": "recording of a virtual scene",
    "screenCapture": "screen capture",
}


def is_trust_code(code: str) -> bool:
    """Codes that say whom you trust, not whether the file is intact."""
    return code.endswith(".untrusted") or code.endswith("untrusted_issuer")


# What the C2PA validation status codes mean (C2PA 2.1, section 15; c2pa-rs validation_results.rs).
MEANINGS = {
    "claimSignature.validated": "the claim's signature is intact",
    "claimSignature.insideValidity": "signed while the certificate was valid",
    "claimSignature.outsideValidity": "signed outside the certificate's validity period",
    "claimSignature.mismatch": "the claim was changed after it was signed",
    "claimSignature.missing": "the claim has no signature",
    "signingCredential.trusted": "the signer's certificate chains to a trust anchor you chose",
    "signingCredential.untrusted": "the signer's certificate is not in your trust list",
    "signingCredential.invalid": "the signer's certificate is not valid for C2PA signing",
    "signingCredential.expired": "the signer's certificate had expired",
    "signingCredential.ocsp.revoked": "the signer's certificate was revoked",
    "signingCredential.ocsp.skipped": "revocation not checked (offline)",
    "signingCredential.ocsp.notRevoked": "the signer's certificate was not revoked",
    "signingCredential.ocsp.inaccessible": "revocation could not be checked",
    "timeStamp.validated": "a timestamp authority vouches for the signing time",
    "timeStamp.trusted": "the timestamp authority is in your trust list",
    "timeStamp.untrusted": "the timestamp authority is not in your trust list",
    "timeStamp.mismatch": "the timestamp does not match the signature",
    "timeStamp.outsideValidity": "the timestamp falls outside its certificate's validity",
    "timeOfSigning.insideValidity": "the signing time is inside the certificate's validity",
    "assertion.hashedURI.match": "an assertion is intact",
    "assertion.hashedURI.mismatch": "an assertion was changed after signing",
    "assertion.dataHash.match": "the image is unchanged since signing",
    "assertion.dataHash.mismatch": "the image was changed after signing",
    "assertion.boxesHash.match": "the image is unchanged since signing",
    "assertion.boxesHash.mismatch": "the image was changed after signing",
    "assertion.bmffHash.mismatch": "the media was changed after signing",
    "assertion.missing": "an assertion the claim lists is missing",
    "assertion.action.ingredientMismatch": "an action names an ingredient that is not there",
    "ingredient.manifest.validated": "the ingredient's own credentials validate",
    "ingredient.manifest.missing": "the ingredient's manifest is missing from the store",
    "ingredient.manifest.mismatch": "the ingredient's manifest does not match its record",
    "ingredient.hashedURI.mismatch": "the ingredient's record was changed",
    "ingredient.claimSignature.validated": "the ingredient's claim signature is intact",
    "ingredient.claimSignature.mismatch": "the ingredient's claim was changed after signing",
    "ingredient.unknownProvenance": "the ingredient has no Content Credentials of its own",
    "manifest.inaccessible": "the manifest could not be read or fetched",
    "manifest.unknownProvenance": "the manifest's origin is unknown",
    "claim.malformed": "the claim is malformed",
    "claim.missing": "the claim is missing",
    "algorithm.unsupported": "signed with an algorithm C2PA does not support",
    "algorithm.deprecated": "signed with a deprecated algorithm",
    "general.error": "the manifest could not be validated",
    "com.adobe.prerelease": "made with a pre-release version of C2PA (not validated)",
    "cawg.identity.well-formed": "the CAWG identity assertion is well formed",
    "cawg.x509.signature.validated": "the CAWG identity signature is intact",
    "cawg.x509.credential.untrusted": "the CAWG identity credential is not in your trust list",
    "cawg.ica.untrusted_issuer": "the CAWG identity issuer is not trusted",
}


@dataclass
class Status:
    code: str
    kind: str  # success, informational or failure
    meaning: str
    explanation: str = ""


@dataclass
class Signer:
    common_name: str | None
    issuer: str | None
    algorithm: str | None
    time: str | None
    time_source: str  # "trusted timestamp", "timestamp (authority not trusted)", "none"
    certificate_serial: str | None = None


@dataclass
class Action:
    action: str
    digital_source_type: str | None = None
    software_agent: str | None = None
    when: str | None = None
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class Ingredient:
    title: str | None
    format: str | None
    relationship: str | None
    instance_id: str | None
    manifest: str | None  # label of its own manifest in the store, if it has one
    status: list[Status] = field(default_factory=list)
    assertion: str | None = None  # its assertion's label in the parent manifest (c2pa.ingredient.v3)

    @property
    def state(self) -> str:
        codes = {s.code for s in self.status if s.kind == "failure" and not is_trust_code(s.code)}
        if codes:
            return "changed or broken: " + ", ".join(sorted(codes))
        if any(s.code == "ingredient.unknownProvenance" for s in self.status) or not self.manifest:
            return "no Content Credentials of its own"
        return "intact"


@dataclass
class Manifest:
    label: str
    generator: str | None  # "name version"
    title: str | None
    format: str | None
    instance_id: str | None
    signer: Signer
    actions: list[Action]
    ingredients: list[Ingredient]
    assertions: dict[str, Any]  # label -> a short summary of what it says
    status: list[Status]
    children: list[Manifest] = field(default_factory=list)

    @property
    def source_types(self) -> list[str]:
        return [a.digital_source_type for a in self.actions if a.digital_source_type]


@dataclass
class Credentials:
    state: str  # absent, Valid, Trusted, Invalid, remote, unsupported
    active: Manifest | None = None
    failures: list[str] = field(default_factory=list)  # failure codes of the active manifest
    remote_url: str | None = None
    trusted_through: list[str] = field(default_factory=list)
    development_ca: bool = False
    error: str | None = None  # what the library said, when it could not validate
    manifest_count: int = 0

    @property
    def source_type(self) -> str | None:
        """The digital source type the credentials declare, from the newest manifest that has one."""
        node = self.active
        while node is not None:
            if node.source_types:
                return node.source_types[-1]
            node = node.children[0] if node.children else None
        return None

    def verdict(self) -> str:
        return verdict_line(self)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["source_type"] = self.source_type
        data["verdict"] = self.verdict()
        return data


def short_source_type(uri: str | None) -> str | None:
    return uri.strip().removeprefix(IPTC) if uri else None


def describe_source_type(uri: str | None) -> str:
    name = short_source_type(uri)
    return f"{SOURCE_TYPES.get(name, name)} ({name})" if name else "no digital source type"


def _status(items: list[dict] | None, kind: str) -> list[Status]:
    return [
        Status(i.get("code", "?"), kind, MEANINGS.get(i.get("code", ""), ""), i.get("explanation", ""))
        for i in items or []
    ]


def _statuses(results: dict | None, legacy: list[dict] | None = None) -> list[Status]:
    if results:
        return (
            _status(results.get("success"), "success")
            + _status(results.get("informational"), "informational")
            + _status(results.get("failure"), "failure")
        )
    return _status(legacy, "failure")


def _generator(manifest: dict) -> str | None:
    info = manifest.get("claim_generator_info") or []
    if info:
        first = info[0]
        return " ".join(str(v) for v in (first.get("name"), first.get("version")) if v)
    legacy = manifest.get("claim_generator")  # "Adobe_Photoshop/23.3.1 adobe_c2pa/0.12.2"
    return legacy.split(" ")[0].replace("/", " ") if legacy else None


def _agent(value: Any) -> str | None:
    if isinstance(value, dict):
        return " ".join(str(v) for v in (value.get("name"), value.get("version")) if v) or None
    return str(value) if value else None


def _summary(label: str, data: Any) -> Any:
    """What an assertion says, short enough to read in a report."""
    if not isinstance(data, dict):
        return "present"
    if label.endswith("training-mining"):
        return {k: v.get("use") for k, v in (data.get("entries") or {}).items() if isinstance(v, dict)}
    if label.startswith("stds.schema-org.CreativeWork"):
        authors = [a.get("name") for a in data.get("author", []) if isinstance(a, dict)]
        return {"author": authors} if authors else "present"
    if label == "cawg.identity":
        payload = data.get("signer_payload") or {}
        return {"signature type": payload.get("sig_type"), "covers": len(payload.get("referenced_assertions") or [])}
    if label.startswith("c2pa.thumbnail"):
        return "thumbnail"
    if label.startswith("org.estampille.generation"):
        keep = ("image_id", "model", "revision", "pipeline", "licence", "commercial_use", "seed", "mode")
        return {k: data.get(k) for k in keep if k in data}
    return "present"


def _manifest(label: str, store: dict, results: list[Status], seen: set[str]) -> Manifest:
    raw = store["manifests"][label]
    seen.add(label)
    info = raw.get("signature_info") or {}
    codes = {s.code for s in results}
    time_source = (
        "trusted timestamp"
        if "timeStamp.trusted" in codes
        else "timestamp (authority not in your trust list)"
        if "timeStamp.validated" in codes
        else "timestamp"
        if info.get("time")
        else "none"
    )
    actions, assertions = [], {}
    for assertion in raw.get("assertions", []):
        name, data = assertion.get("label", "?"), assertion.get("data")
        if name.startswith("c2pa.actions") and isinstance(data, dict):
            for a in data.get("actions", []):
                source = (a.get("digitalSourceType") or "").strip() or None
                actions.append(
                    Action(
                        a.get("action", "?"),
                        source,
                        _agent(a.get("softwareAgent")),
                        a.get("when"),
                        a.get("description"),
                        a.get("parameters") if isinstance(a.get("parameters"), dict) else {},
                    )
                )
        else:
            assertions[name] = _summary(name, data)
    ingredients, children = [], []
    for ingredient in raw.get("ingredients", []):
        own = ingredient.get("active_manifest")
        status = _statuses(
            ingredient.get("validation_results", {}).get("activeManifest"), ingredient.get("validation_status")
        )
        ingredients.append(
            Ingredient(
                ingredient.get("title"),
                ingredient.get("format"),
                ingredient.get("relationship"),
                ingredient.get("instance_id"),
                own,
                status,
                ingredient.get("label"),
            )
        )
        if own and own in store["manifests"] and own not in seen:
            children.append(_manifest(own, store, status, seen))
    return Manifest(
        label,
        _generator(raw),
        raw.get("title"),
        raw.get("format"),
        raw.get("instance_id"),
        Signer(
            info.get("common_name"),
            info.get("issuer"),
            info.get("alg"),
            info.get("time"),
            time_source,
            info.get("cert_serial_number"),
        ),
        actions,
        ingredients,
        assertions,
        results,
        children,
    )


def _unreadable(message: str) -> Credentials:
    """c2pa could not build a report: name the C2PA status code the failure stands for."""
    text = message.splitlines()[0] if message else ""
    if "ManifestNotFound" in text or "JumbfNotFound" in text or "no JUMBF data" in text:
        return Credentials("absent")
    remote = re.search(r"remote manifests? from url (\S+)", text, re.IGNORECASE)
    if remote:
        return Credentials(
            "remote",
            remote_url=remote.group(1),
            failures=["manifest.inaccessible"],
            error="remote manifest, not fetched (offline)",
        )
    for needle, code in (
        ("unknown algorithm", "algorithm.unsupported"),
        ("prerelease", "com.adobe.prerelease"),
        ("RemoteManifestFetch", "manifest.inaccessible"),
        ("fetch", "manifest.inaccessible"),
    ):
        if needle.lower() in text.lower():
            return Credentials(
                "unsupported" if code != "manifest.inaccessible" else "remote",
                failures=[code],
                error=f"{MEANINGS[code]} ({text[:160]})",
            )
    return Credentials("Invalid", failures=["general.error"], error=text[:200])


def read_credentials(data: bytes, mime: str, trust: TrustConfig, fetch_remote: bool = False) -> Credentials:
    """The whole manifest store of `data`, validated against `trust`."""
    context = c2pa.Context.from_dict(
        {
            "verify": {"remote_manifest_fetch": fetch_remote, "ocsp_fetch": False},
            **({"trust": trust.c2pa_trust()} if trust.c2pa_trust() else {}),
        }
    )
    try:
        with c2pa.Reader(mime, io.BytesIO(data), context=context) as reader:
            store = json.loads(reader.json())
            remote_url = None if reader.is_embedded() else reader.get_remote_url()
    except c2pa.C2paError as exc:
        return _unreadable(str(exc))
    label = store.get("active_manifest")
    if not label or label not in store.get("manifests", {}):
        return Credentials("Invalid", failures=["claim.missing"], error="no active manifest in the store")
    results = store.get("validation_results", {}).get("activeManifest")
    status = _statuses(results, store.get("validation_status"))
    active = _manifest(label, store, status, set())
    # An ingredient's failures reach the store's state through the deltas: show them on the ingredient.
    for delta in store.get("validation_results", {}).get("ingredientDeltas", []):
        uri = delta.get("ingredientAssertionURI", "")
        for ingredient in active.ingredients:
            if ingredient.assertion and uri.endswith("/" + ingredient.assertion):
                extra = _statuses(delta.get("validationDeltas"))
                ingredient.status += [s for s in extra if s not in ingredient.status]
    credentials = Credentials(
        store.get("validation_state", "Invalid"),
        active,
        [s.code for s in status if s.kind == "failure"],
        remote_url,
        manifest_count=len(store.get("manifests", {})),
    )
    allowed = trust.allowed_certificate(active.signer.issuer, active.signer.certificate_serial)
    if allowed and credentials.state == "Valid" and credentials.failures == ["signingCredential.untrusted"]:
        # The signature is intact and made by a certificate you allowed as it is.
        credentials.state, credentials.failures = "Trusted", []
        credentials.trusted_through = [f"allowed certificate {allowed.label}"]
    elif credentials.state == "Trusted":
        anchors: list[Anchor] = trust.anchors_for(active.signer.issuer)
        credentials.trusted_through = [a.label for a in anchors]
        credentials.development_ca = bool(anchors) and all(a.development for a in anchors)
    return credentials


def verdict_line(c: Credentials) -> str:
    """One line on top of the report: what the file is, who says so, and whether to believe it."""
    if c.state == "absent":
        return "No Content Credentials."
    if c.state == "remote":
        return (
            f"Content Credentials in a remote manifest at {c.remote_url or 'an unknown address'}, not fetched "
            "(offline): audit again with --fetch-remote where the network allows."
        )
    if c.active is None:
        return f"Content Credentials present but not validated: {c.error or ', '.join(c.failures)}."
    what = describe_source_type(c.source_type)
    what = what[0].upper() + what[1:]
    made_by = c.active.generator or "an unnamed tool"
    signer = c.active.signer.common_name or "an unnamed signer"
    if c.active.signer.issuer and c.active.signer.issuer != signer:
        signer += f" (issued by {c.active.signer.issuer})"
    if c.state == "Trusted":
        trust = (
            "trusted only through this machine's development CA, not a public trust list"
            if c.development_ca
            else f"trusted through {', '.join(c.trusted_through) or 'one of your anchors'}"
        )
    elif "signingCredential.untrusted" in c.failures:
        trust = "not in your trust list"
    else:
        trust = "signer not trusted"
    broken = [code for code in c.failures if not is_trust_code(code)]
    integrity = (
        "signature intact"
        if not broken
        else "CHANGED OR BROKEN: " + "; ".join(f"{MEANINGS.get(code, code)} ({code})" for code in broken)
    )
    return f"{what}, made with {made_by}, signed by {signer}; {trust}; {integrity}."
