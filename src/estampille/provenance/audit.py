"""Audit any file: its C2PA state, its XMP, and the ledger record it belongs to — by content
hash when the file is as signed or exported, by perceptual hash when a platform stripped the
metadata, re-encoded, resized or cropped it."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..ledger import Ledger
from ..lookalike.fingerprint import HASH_KINDS, fingerprints, hex_to_int
from ..images import IMAGE_SUFFIXES, open_checked
from .c2pa_manifest import read_manifest
from .xmp import read_xmp

MIMES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "TIFF": "image/tiff", "GIF": "image/gif"}
TRACE_BY_CONTENT = ("provenance.signed", "export.created", "edit.imported", "render.created")
# A stripped copy is traced to the closest render when both hashes stay this close (bits of 64).
MAX_DISTANCE = {"phash": 12, "dhash": 16}


@dataclass
class AuditReport:
    file: str
    error: str | None = None
    c2pa_state: str = "absent"
    c2pa_failures: list[str] = field(default_factory=list)
    xmp: dict[str, str] = field(default_factory=dict)
    record: dict | None = None       # how it was found, and the ledger record
    metadata_gone: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            files.append(path)
    return files


class Auditor:
    """Loads the ledger's content hashes and render fingerprints once, then audits files."""

    def __init__(self, ledger: Ledger, trust_anchor_pem: bytes | None):
        self.anchor = trust_anchor_pem
        self.by_sha: dict[str, object] = {}
        self.renders = []
        for event in ledger.events():
            if event.kind in TRACE_BY_CONTENT and "sha256" in event.payload:
                self.by_sha.setdefault(event.payload["sha256"], event)
            if event.kind == "render.created":
                self.renders.append(event)
        self.arrays = {kind: np.array([hex_to_int(e.payload["fingerprints"][kind]) for e in self.renders],
                                      dtype=np.uint64) for kind in HASH_KINDS}

    def audit(self, path: Path) -> AuditReport:
        report = AuditReport(str(path))
        try:
            data = path.read_bytes()
            image = open_checked(path)
        except (OSError, ValueError) as exc:
            report.error = str(exc)
            return report
        mime = MIMES.get(image.format or "", "application/octet-stream")
        manifest = read_manifest(data, mime, self.anchor) if mime != "application/octet-stream" else None
        if manifest:
            report.c2pa_state, report.c2pa_failures = manifest.state, manifest.failures
        report.xmp = {k: v for k, v in read_xmp(data).items() if not k.startswith("_")}
        report.metadata_gone = report.c2pa_state == "absent" and not report.xmp
        event = self.by_sha.get(hashlib.sha256(data).hexdigest())
        if event is not None:
            report.record = {"found_by": "content hash", **_describe(event)}
            return report
        report.record = self._nearest(image)
        return report

    def _nearest(self, image) -> dict | None:
        if not self.renders:
            return None
        query = fingerprints(image)
        distances = {k: np.bitwise_count(self.arrays[k] ^ np.uint64(hex_to_int(query[k]))).astype(int)
                     for k in HASH_KINDS}
        best = int(np.argmin(sum(distances.values())))
        found = {k: int(distances[k][best]) for k in HASH_KINDS}
        if any(found[k] > MAX_DISTANCE[k] for k in HASH_KINDS):
            return None
        return {"found_by": "perceptual hash", "distances": found, **_describe(self.renders[best])}


def _describe(event) -> dict:
    payload = event.payload
    return {"kind": event.kind, "ledger_row": event.seq, "brand": event.brand, "week": event.week,
            "slot": event.subject, "image_id": payload.get("image_id"),
            "model": payload.get("model", {}).get("id") if isinstance(payload.get("model"), dict) else None,
            "reviewer": payload.get("reviewer"), "editor": payload.get("editor")}


def audit_files(paths: list[Path], ledger: Ledger, trust_anchor_pem: bytes | None) -> list[AuditReport]:
    auditor = Auditor(ledger, trust_anchor_pem)
    return [auditor.audit(path) for path in expand(paths)]
