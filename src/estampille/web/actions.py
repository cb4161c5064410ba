"""What changes state on the review server: sign-in and sign-out, decisions, publishing, and
the audit upload (which changes nothing but costs a worker). Every one is a POST with a CSRF
token; decisions and publishing also need a signed-in reviewer. They go through the same
library calls as the command line (`review.decisions.decide`, `review.export.publish`,
`provenance.audit.Auditor`), so the web page and the CLI cannot disagree.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from ..errors import EstampilleError
from ..provenance.audit_report import html_fragment
from ..review.decisions import ReviewError, StaleDecision, decide
from ..review.export import publish
from .audit_pool import Busy
from .security import BodyTooLarge
from .site import Site, SiteDep

log = logging.getLogger("estampille.web")
UPLOAD_MAX_PIXELS = 24_000_000  # an upload larger than this is audited from the command line
MAX_COMMENT = 2000  # characters

router = APIRouter()


@router.post("/login")
def login(
    request: Request,
    site: SiteDep,
    name: str = Form(...),
    token: str = Form(...),
    csrf: str = Form(""),
    back: str = Form("/"),
):
    site.check_csrf(request, csrf)
    policy = site.policy
    client = request.client.host if request.client else ""
    wait = policy.throttle.wait(client, name)
    if wait > 0:
        raise HTTPException(
            429, f"too many wrong tokens: try again in {wait:.0f} s", headers={"Retry-After": str(max(1, round(wait)))}
        )
    if not policy.check_login(name, token):
        delay = policy.throttle.failed(client, name)
        log.warning(
            "sign-in refused for %r from %s%s",
            name[:80],
            client,
            f" (next try allowed in {delay:.0f} s)" if delay else "",
        )
        raise HTTPException(403, "unknown reviewer or wrong token")
    policy.throttle.succeeded(client, name)
    policy.sessions.end(request.session.get("sid"))
    request.session.clear()  # a new session id and a new CSRF token at sign-in
    request.session["sid"] = policy.sessions.start(name, token)
    log.info("%s signed in from %s", name, client)
    return RedirectResponse(_local_path(back), status_code=303)


@router.post("/logout")
def logout(request: Request, site: SiteDep, csrf: str = Form("")):
    site.check_csrf(request, csrf)
    site.policy.sessions.end(request.session.get("sid"))  # a copied cookie stops working too
    request.session.clear()
    return RedirectResponse("/", status_code=303)


@router.post("/runs/{brand}/{week}/items/{item_id}/decision")
def decision(
    request: Request,
    site: SiteDep,
    brand: str,
    week: str,
    item_id: str,
    decision: str = Form(...),
    comment: str = Form(""),
    text: str | None = Form(None),
    override: str = Form(""),
    version: str = Form(""),
    csrf: str = Form(""),
    back: str = Form(""),
):
    reviewer = site.require_post(request, csrf)
    run = site.run_or_404(brand, week)
    if decision not in ("approved", "rejected"):
        raise HTTPException(400, "decision must be approved or rejected")
    if len(comment) > MAX_COMMENT or len(override) > MAX_COMMENT:
        raise HTTPException(400, f"a comment is at most {MAX_COMMENT} characters")
    if not version.isdigit():
        raise HTTPException(400, "the form has no item version: reload the page and decide again")
    draft = next((d for s in run.slots for d in s.drafts if d.draft_id == item_id), None)
    if draft is None and item_id not in run.images:
        raise HTTPException(404, f"no draft or image {item_id} in this run")
    edited = None
    if draft is not None and text is not None:
        text = text.replace("\r\n", "\n").strip()
        edited = text if text and text != draft.draft.text else None
    target = f"/runs/{brand}/{week}/images/{item_id}" if back == "image" else f"/runs/{brand}/{week}#{item_id}"
    try:
        decide(
            site.ledger,
            item_id,
            "approved" if decision == "approved" else "rejected",  # checked above
            reviewer,
            comment.strip(),
            override.strip() or None,
            edited,
            version=int(version),
        )
    except StaleDecision as exc:
        return site.page(request, "stale.html", status_code=409, run=run, item_id=item_id, stale=exc, back=target)
    except ReviewError as exc:
        raise HTTPException(409, str(exc)) from None
    return RedirectResponse(target, status_code=303)


@router.post("/runs/{brand}/{week}/publish", response_class=HTMLResponse)
def publish_run(request: Request, site: SiteDep, brand: str, week: str, csrf: str = Form("")):
    site.require_post(request, csrf)
    run = site.run_or_404(brand, week)
    if run.bundle is None:
        raise HTTPException(
            409,
            f"brand folder '{brand}' not found under the brands folder: "
            "start the server with --brands pointing at it to publish from here",
        )
    try:
        report = publish(site.ledger, run.bundle, week, site.run_dir(brand, week), site.config.identity)
    except EstampilleError as exc:
        raise HTTPException(409, str(exc)) from None
    return site.page(
        request,
        "published.html",
        run=run,
        report=report,
        folder=_relative_to(Path(report.folder), site.settings.out, "the output folder"),
    )


@router.post("/audit", response_class=HTMLResponse)
async def audit_upload(request: Request, site: SiteDep):
    """Sign-in and the CSRF token (in the form's address) are checked before the body is read;
    the Gate bounds the body; the audit runs in a worker process, a few at a time."""
    token = request.query_params.get("csrf") or request.headers.get("x-csrf-token")
    if site.anonymous_audits:
        site.check_csrf(request, token)
    else:
        site.require_post(request, token)
    try:
        form = await request.form(max_files=1, max_fields=4)
    except BodyTooLarge:
        raise
    except Exception as exc:
        # Raised while reading, the Gate's limit can reach here inside the middleware's task group.
        if isinstance(exc, BaseExceptionGroup) and exc.subgroup(BodyTooLarge):
            raise BodyTooLarge(site.config.edge.max_body) from None
        raise HTTPException(400, "could not read the upload: send one file as multipart/form-data") from None
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(400, "no file in the form")
        name = _display_name(upload.filename)
        with tempfile.TemporaryDirectory(prefix="estampille-audit-") as tmp:
            path = Path(tmp) / ("upload" + _safe_suffix(name))
            with path.open("wb") as out:
                while chunk := await upload.read(2**20):
                    out.write(chunk)
            report = await run_in_threadpool(_audit_bounded, site, path)
    finally:
        await form.close()
    report.file = name
    return site.page(
        request,
        "audit.html",
        report=report,
        report_html=Markup(html_fragment([report])),
        anonymous_audits=site.anonymous_audits,
    )


def _audit_bounded(site: Site, path: Path):
    """One audit in a worker process, once one is free; pictures over the upload cap refused."""
    try:
        size = image_size(path)
    except OSError:
        size = None
    if size and size[0] * size[1] > UPLOAD_MAX_PIXELS:
        raise HTTPException(
            413,
            f"an image of {size[0]}x{size[1]} pixels: uploads are audited up to "
            f"{UPLOAD_MAX_PIXELS // 10**6} megapixels; audit it with `estampille audit FILE`",
        )
    try:
        return site.audits.audit(path, site.ledger.head())
    except Busy:
        raise HTTPException(
            503, "other files are being audited: try again in a minute", headers={"Retry-After": "30"}
        ) from None


def image_size(path: Path) -> tuple[int, int] | None:
    """Width and height from the header, without decoding (None if Pillow cannot tell)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, ValueError):
        return None


def _local_path(back: str) -> str:
    """Only a path on this server: a login must not redirect elsewhere."""
    return back if back.startswith("/") and not back.startswith("//") and "\\" not in back else "/"


def _display_name(filename: str | None) -> str:
    """The upload's name as shown in the report: its last part, printable, at most 120 characters."""
    name = Path((filename or "upload").replace("\\", "/")).name
    name = "".join(c for c in name if c.isprintable()) or "upload"
    return name if len(name) <= 120 else name[:100] + "…" + name[-19:]


def _safe_suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ".bin"


def _relative_to(path: Path, root: Path, label: str) -> str:
    try:
        return f"{label}/{path.resolve().relative_to(root.resolve())}"
    except ValueError:
        return path.name
