"""The C2PA Soft Binding Resolution API, served by `estampille serve` under /c2pa: anyone holding
a stripped repost of a *published* image reads its watermark (or fingerprints it) and gets its
Content Credentials back from the brand.

- GET  /c2pa/services/supportedAlgorithms          the watermark and fingerprint algorithms served
- GET  /c2pa/matches/byBinding?alg=&value=         manifest ids for a binding (value base64, as the
  POST /c2pa/matches/byBinding {"alg", "value"}    API says; an ISCC code may also be given as is)
- POST /c2pa/matches/byContent  (image body)       the same from the picture itself: the server reads
                                                   the mark and computes the ISCC code
- GET  /c2pa/manifests/{manifestId}                the manifest store (application/c2pa) of the
                                                   published file whose active manifest that is

Only published images are resolved: an image with an export and whose latest decision is an
approval. A pending or rejected image, or one approved then rejected, is a 404, as if unknown
(the API must not reveal work in progress). Read-only; rate-limited per client address (behind
a trusted proxy, the address the proxy names: the same Gate as every page).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import c2pa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..images import UnreadableImage, open_image
from ..paths import OutsideFolder, inside, run_folder
from ..provenance import soft_binding, watermark
from ..records import Export, Kind, Provenance, ReviewDecision
from .site import SiteDep

router = APIRouter(prefix="/c2pa")
REQUESTS_PER_MINUTE = 60
MAX_CONTENT = 20 * 1024 * 1024


class RateLimit:
    """A sliding one-minute window per client address: enough for a person or a platform's
    trust team checking posts, not for walking the whole id space."""

    def __init__(self, per_minute: int = REQUESTS_PER_MINUTE, clock=time.monotonic):
        self.per_minute, self.clock = per_minute, clock
        self._seen: dict[str, deque] = {}
        self._lock = threading.Lock()

    def wait(self, client: str) -> float:
        """Seconds to wait before this client may ask again (0: go ahead, counted)."""
        now = self.clock()
        with self._lock:
            window = self._seen.setdefault(client, deque())
            while window and now - window[0] >= 60:
                window.popleft()
            if len(window) >= self.per_minute:
                return 60 - (now - window[0])
            window.append(now)
            if len(self._seen) > 10_000:  # forget idle clients
                for key in [k for k, v in self._seen.items() if not v]:
                    del self._seen[key]
            return 0.0


@dataclass
class Published:
    image_id: str
    manifest_id: str
    file: Path
    bindings: list[dict[str, str]] = field(default_factory=list)


def _manifest_store(path: Path) -> bytes | None:
    """The C2PA manifest store (JUMBF) embedded in a PNG: the `caBX` chunk's data."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    at = 8
    while at + 8 <= len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        kind = data[at + 4 : at + 8]
        if kind == b"caBX":
            return data[at + 8 : at + 8 + length]
        at += 12 + length
    return None


def _active_label(path: Path) -> str | None:
    try:
        with c2pa.Reader("image/png", io.BytesIO(path.read_bytes())) as reader:
            return json.loads(reader.json()).get("active_manifest")
    except (c2pa.C2paError, OSError):
        return None


def published_index(ledger, out_dir: Path) -> dict[str, Published]:
    """manifest id -> the published file carrying it, for every image whose latest decision is
    an approval and that was exported, with the soft bindings recorded when it was signed."""
    bindings: dict[str, list[dict[str, str]]] = {}
    decision: dict[str, str] = {}
    exports: dict[str, list[tuple[str, str, Export]]] = {}
    for event in ledger.events():
        if not (event.brand and event.week):
            continue  # every image's events belong to a run
        if event.kind == Kind.PROVENANCE_SIGNED:
            signed = Provenance.of(event)
            bindings[signed.image_id] = signed.soft_bindings
        elif event.kind in (Kind.REVIEW_APPROVED, Kind.REVIEW_REJECTED):
            decision[ReviewDecision.of(event).item_id] = event.kind
        elif event.kind == Kind.EXPORT_CREATED:
            export = Export.of(event)
            exports.setdefault(export.image_id, []).append((event.brand, event.week, export))
    index = {}
    for image_id, done in exports.items():
        if decision.get(image_id) != Kind.REVIEW_APPROVED or not bindings.get(image_id):
            continue
        for brand, week, export in done:
            try:
                path = inside(run_folder(out_dir, brand, week), export.file)
            except OutsideFolder:
                continue
            label = _active_label(path) if path.is_file() else None
            if label:
                index[label] = Published(image_id, label, path, bindings[image_id])
    return index


def _published(site) -> dict[str, Published]:
    return site.while_unchanged(("c2pa-published",), lambda: published_index(site.ledger, site.settings.out))


def _limited(request: Request) -> JSONResponse | None:
    limiter = getattr(request.app.state, "c2pa_rate", None)
    if limiter is None:
        limiter = request.app.state.c2pa_rate = RateLimit()
    wait = limiter.wait((request.client or ("?", 0))[0])
    if wait:
        return JSONResponse(
            {"error": "too many requests"}, status_code=429, headers={"Retry-After": str(int(wait) + 1)}
        )
    return None


def _matches(site, alg: str, value: str, limit: int) -> JSONResponse:
    published = list(_published(site).values())
    if alg == watermark.ALG:
        short = soft_binding.short_id_of_value(value)
        if short is None:
            return JSONResponse({"error": f"value is not a base64 {watermark.ALG} payload"}, status_code=400)
        found = [(100, p) for p in published if watermark.short_id(p.image_id) == short]
    elif alg == soft_binding.ISCC_ALG:
        code = value if value.startswith("ISCC:") else _b64_text(value)
        if not code or not code.startswith("ISCC:"):
            return JSONResponse({"error": "value is not an ISCC code (ISCC:..., or its base64)"}, status_code=400)
        found = []
        for p in published:
            ours = next((b["value"] for b in p.bindings if b["alg"] == soft_binding.ISCC_ALG), None)
            distance = soft_binding.iscc_distance(code, ours) if ours else None
            if distance is not None and distance <= soft_binding.ISCC_MAX_DISTANCE:
                found.append((round(100 * (1 - distance / 64)), p))
    else:
        return JSONResponse(
            {"error": f"unsupported algorithm {alg!r}: see /c2pa/services/supportedAlgorithms"}, status_code=400
        )
    found.sort(key=lambda f: -f[0])
    return JSONResponse(
        {"matches": [{"manifestId": p.manifest_id, "similarityScore": score} for score, p in found[:limit]]}
    )


def _b64_text(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).decode("ascii")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


@router.get("/services/supportedAlgorithms")
def supported(request: Request) -> JSONResponse:
    return _limited(request) or JSONResponse(
        {"watermarks": [{"alg": watermark.ALG}], "fingerprints": [{"alg": soft_binding.ISCC_ALG}]}
    )


@router.get("/matches/byBinding")
def by_binding(request: Request, site: SiteDep, alg: str, value: str, maxResults: int = 10) -> JSONResponse:
    return _limited(request) or _matches(site, alg, value, max(1, min(maxResults, 100)))


@router.post("/matches/byBinding")
async def by_large_binding(request: Request, site: SiteDep, maxResults: int = 10) -> JSONResponse:
    refused = _limited(request)
    if refused:
        return refused
    try:
        query = json.loads(await request.body())
        alg, value = str(query["alg"]), str(query["value"])
    except (ValueError, KeyError, TypeError):
        return JSONResponse({"error": 'send {"alg": ..., "value": ...} as JSON'}, status_code=400)
    return _matches(site, alg, value, max(1, min(maxResults, 100)))


@router.post("/matches/byContent")
async def by_content(request: Request, site: SiteDep, maxResults: int = 10) -> JSONResponse:
    """The picture itself: its watermark is read, else its ISCC code is compared."""
    refused = _limited(request)
    if refused:
        return refused
    body = await request.body()
    if len(body) > MAX_CONTENT:
        return JSONResponse({"error": f"image larger than {MAX_CONTENT // 2**20} MB"}, status_code=413)
    try:
        image = open_image(body)
    except (UnreadableImage, OSError):
        return JSONResponse({"error": "not a readable image"}, status_code=415)
    found = watermark.detect(image)
    limit = max(1, min(maxResults, 100))
    if found.found and found.image_id:
        answer = _matches(site, watermark.ALG, soft_binding.watermark_value(found.image_id), limit)
        if json.loads(bytes(answer.body))["matches"]:
            return answer
    return _matches(site, soft_binding.ISCC_ALG, soft_binding.iscc_code(image), limit)


@router.get("/manifests/{manifest_id:path}")
def manifest(request: Request, site: SiteDep, manifest_id: str, returnActiveManifest: bool = False) -> Response:
    """The whole manifest store of the published file (`returnActiveManifest` is accepted; the
    store is returned either way, its active manifest being the one asked for)."""
    refused = _limited(request)
    if refused:
        return refused
    found = _published(site).get(manifest_id)
    store = _manifest_store(found.file) if found and found.file.is_file() else None
    if store is None or found is None:
        return JSONResponse({"error": "no published manifest with this id"}, status_code=404)
    return Response(
        store,
        media_type="application/c2pa",
        headers={"Content-Disposition": f'attachment; filename="{found.image_id}.c2pa"'},
    )
