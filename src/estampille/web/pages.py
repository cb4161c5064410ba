"""The pages and files the review server shows: nothing here changes state (GET only).

Files are served only from inside a run folder or the brands folder, never from a path a
request or a ledger row names elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from ..paths import OutsideFolder, inside
from ..provenance.c2pa_manifest import read_manifest
from ..provenance.xmp import read_xmp
from .site import SiteDep
from .thumbnails import thumbnail

HISTORY_ROWS = 50  # decisions shown on a run page (every one is on its item's page)

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def runs_page(request: Request, site: SiteDep):
    return site.page(request, "runs.html", runs=site.runs())


@router.get("/runs/{brand}/{week}", response_class=HTMLResponse)
def run_page(request: Request, site: SiteDep, brand: str, week: str, message: str = ""):
    run = site.run_or_404(brand, week)
    if message:
        return site.page(request, "run.html", run=run, message=message, history_rows=HISTORY_ROWS)
    return site.shared_page(
        request, ("run page", brand, week), "run.html", run=run, message="", history_rows=HISTORY_ROWS
    )


@router.get("/runs/{brand}/{week}/images/{image_id}", response_class=HTMLResponse)
def image_page(request: Request, site: SiteDep, brand: str, week: str, image_id: str):
    run = site.run_or_404(brand, week)
    item = site.image_or_404(run, image_id)
    folder = site.run_dir(brand, week)
    validation, xmp = {"state": "not signed", "failures": []}, {}
    try:
        data = inside(folder, item.file).read_bytes()
        report = read_manifest(data, "image/png", site.config.identity.trust_anchor_pem)
        validation = {"state": report.state, "failures": report.failures}
        xmp = {k: v for k, v in read_xmp(data).items() if not k.startswith("_")}
    except (OutsideFolder, OSError, ValueError):
        validation = {
            "state": "file unavailable",
            "failures": [f"{item.file} is missing or unreadable in the run folder"],
        }
    draft = next((d for s in run.slots for d in s.drafts if d.draft_id == item.render.draft_id), None)
    return site.page(request, "image.html", run=run, item=item, draft=draft, validation=validation, xmp=xmp)


@router.get("/audit", response_class=HTMLResponse)
def audit_form(request: Request, site: SiteDep):
    return site.page(request, "audit.html", report=None, anonymous_audits=site.anonymous_audits)


@router.get("/runs/{brand}/{week}/files/{relative:path}")
def run_file(site: SiteDep, brand: str, week: str, relative: str):
    site.run_or_404(brand, week)  # only folders of runs the ledger knows
    return FileResponse(site.file_in(site.run_dir(brand, week), relative))


@router.get("/runs/{brand}/{week}/thumbs/{image_id}.webp")
def thumb(site: SiteDep, brand: str, week: str, image_id: str, v: str = ""):
    """Cached for a year only at the address carrying the file's hash (?v=): a retouch gets a new address."""
    run = site.run_or_404(brand, week)
    item = site.image_or_404(run, image_id)
    folder = site.run_dir(brand, week)
    try:
        path = thumbnail(folder, image_id, site.file_in(folder, item.file), item.sha256)
    except ValueError as exc:
        raise HTTPException(422, f"cannot make a thumbnail: {exc}") from None
    fresh = v == thumb_version(item.sha256)
    return FileResponse(
        path,
        media_type="image/webp",
        headers={"Cache-Control": "private, max-age=31536000, immutable" if fresh else "private, no-cache"},
    )


@router.get("/runs/{brand}/{week}/images/{image_id}/matches/{number}")
def matched_reference(site: SiteDep, brand: str, week: str, image_id: str, number: int):
    """The competitor's image of one match, only from inside the brands folder."""
    item = site.image_or_404(site.run_or_404(brand, week), image_id)
    matches = item.check.matches if item.check else []
    brands_dir = site.config.brands_dir
    if not 0 <= number < len(matches) or brands_dir is None:
        raise HTTPException(404, "not found")
    reference = Path(matches[number].reference)
    if not reference.is_absolute():
        reference = Path.cwd() / reference
    try:
        relative = reference.resolve().relative_to(brands_dir.resolve())
    except ValueError:
        raise HTTPException(404, "the matched image is not inside the brands folder") from None
    return FileResponse(site.file_in(brands_dir, str(relative)))


@router.get("/healthz")
def health():
    return Response("ok", media_type="text/plain")


def thumb_version(sha256: str) -> str:
    return sha256[:16]
