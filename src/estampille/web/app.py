"""`estampille serve`: the review and audit pages for designers.

Pages read the ledger; decisions go through the same library calls as the command line
(`review.decisions.decide`, `review.export.publish`, `provenance.audit.Auditor`), so the web
page and the CLI cannot disagree. Files are served only from inside a run folder or a brand's
competitor folders, never from a path a request or a ledger row names elsewhere.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from ..errors import EstampilleError
from ..ledger import Ledger
from ..images import IMAGE_SUFFIXES
from ..paths import OutsideFolder, inside
from ..provenance.audit import Auditor
from ..provenance.audit_report import html_fragment
from ..provenance.trust import audit_trust
from ..provenance.c2pa_manifest import read_manifest
from ..provenance.identity import SignerIdentity
from ..provenance.xmp import read_xmp
from ..review.decisions import ReviewError, decide
from ..review.export import publish
from ..settings import Settings
from .runs import ImageItem, RunNotFound, list_runs, load_run
from .security import LocalOnly, ReviewerPolicy, csrf_ok, csrf_token, is_loopback, session_secret
from .thumbnails import thumbnail

TEMPLATES = Path(__file__).with_name("templates")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")      # brand slugs, item ids
WEEK = re.compile(r"^\d{4}-W\d{2}$")
SERVED_SUFFIXES = IMAGE_SUFFIXES | {".json"}
MAX_UPLOAD = 64 * 1024 * 1024
SECURITY_HEADERS = {
    # No script at all: the pages are plain forms. Images only from this server.
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@dataclass
class WebConfig:
    settings: Settings
    identity: SignerIdentity
    policy: ReviewerPolicy
    brands_dir: Path | None = None       # where brand folders live (calendar text, competitor images, publish)
    bind_host: str = "127.0.0.1"


def create_app(config: WebConfig) -> FastAPI:
    settings, policy = config.settings, config.policy
    ledger = Ledger(settings.ledger_url)
    templates = Jinja2Templates(directory=str(TEMPLATES))   # autoescapes .html: captions come from an LLM
    app = FastAPI(title="Estampille review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SessionMiddleware, secret_key=session_secret(settings.home), session_cookie="estampille",
                       same_site="strict", https_only=False, max_age=12 * 3600)
    if is_loopback(config.bind_host):
        app.add_middleware(LocalOnly)

    @app.middleware("http")
    async def headers_and_timing(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    def page(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {
            "reviewer": policy.reviewer(request), "policy": policy, "csrf": csrf_token(request), **context},
            status_code=status_code)

    def run_dir(brand: str, week: str) -> Path:
        if not NAME.match(brand) or not WEEK.match(week):
            raise HTTPException(404, "no such run")
        return inside(settings.out, f"{brand}/{week}")

    views: dict[tuple[str, ...], tuple[int, object]] = {}
    views_lock = threading.Lock()

    def while_unchanged(key: tuple[str, ...], build):
        """A view built from the ledger, rebuilt only when the ledger has grown since (a thumbnail
        request must not re-read the whole week: a run page asks for hundreds of them)."""
        head = ledger.head()
        with views_lock:
            seen = views.get(key)
        if seen and seen[0] == head:
            return seen[1]
        value = build()
        with views_lock:
            views[key] = (head, value)
        return value

    def run_or_404(brand: str, week: str):
        run_dir(brand, week)
        try:
            return while_unchanged(("run", brand, week), lambda: load_run(ledger, brand, week, config.brands_dir))
        except RunNotFound as exc:
            raise HTTPException(404, str(exc)) from None

    def image_or_404(run, image_id: str) -> ImageItem:
        item = run.images.get(image_id)
        if item is None:
            raise HTTPException(404, f"no image {image_id} in this run")
        return item

    def file_in(folder: Path, relative: str) -> Path:
        try:
            path = inside(folder, relative)
        except OutsideFolder:
            raise HTTPException(404, "not found") from None
        if path.suffix.lower() not in SERVED_SUFFIXES or not path.is_file():
            raise HTTPException(404, "not found")
        return path

    def check_csrf(request: Request, csrf: str | None) -> None:
        if not csrf_ok(request, csrf):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")

    def require_post(request: Request, csrf: str | None) -> str:
        """The reviewer behind a state-changing request, after its CSRF token checks out."""
        check_csrf(request, csrf)
        reviewer = policy.reviewer(request)
        if reviewer is None:
            raise HTTPException(403, "sign in as a reviewer first")
        return reviewer

    def local_path(back: str) -> str:
        """Only a path on this server: a login must not redirect elsewhere."""
        return back if back.startswith("/") and not back.startswith("//") and "\\" not in back else "/"

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return page(request, "error.html", status_code=exc.status_code, message=exc.detail, status=exc.status_code)

    # ------------------------------------------------------------------ pages
    @app.get("/", response_class=HTMLResponse)
    def runs_page(request: Request):
        return page(request, "runs.html", runs=while_unchanged(("runs",), lambda: list_runs(ledger)))

    @app.get("/runs/{brand}/{week}", response_class=HTMLResponse)
    def run_page(request: Request, brand: str, week: str, message: str = ""):
        return page(request, "run.html", run=run_or_404(brand, week), message=message)

    @app.get("/runs/{brand}/{week}/images/{image_id}", response_class=HTMLResponse)
    def image_page(request: Request, brand: str, week: str, image_id: str):
        run = run_or_404(brand, week)
        item = image_or_404(run, image_id)
        folder = run_dir(brand, week)
        validation, xmp = {"state": "not signed", "failures": []}, {}
        try:
            data = inside(folder, item.file).read_bytes()
            report = read_manifest(data, "image/png", config.identity.trust_anchor_pem)
            validation = {"state": report.state, "failures": report.failures}
            xmp = {k: v for k, v in read_xmp(data).items() if not k.startswith("_")}
        except (OutsideFolder, OSError) as exc:
            validation = {"state": "file unavailable", "failures": [str(exc)]}
        draft = next((d for s in run.slots for d in s.drafts if d.draft_id == item.render["draft_id"]), None)
        return page(request, "image.html", run=run, item=item, draft=draft, validation=validation, xmp=xmp)

    @app.get("/audit", response_class=HTMLResponse)
    def audit_form(request: Request):
        return page(request, "audit.html", report=None)

    # ------------------------------------------------------------------ files
    @app.get("/runs/{brand}/{week}/files/{relative:path}")
    def run_file(brand: str, week: str, relative: str):
        return FileResponse(file_in(run_dir(brand, week), relative))

    @app.get("/runs/{brand}/{week}/thumbs/{image_id}.webp")
    def thumb(brand: str, week: str, image_id: str):
        run = run_or_404(brand, week)
        item = image_or_404(run, image_id)
        folder = run_dir(brand, week)
        try:
            path = thumbnail(folder, image_id, file_in(folder, item.file), item.sha256)
        except ValueError as exc:
            raise HTTPException(422, f"cannot make a thumbnail: {exc}") from None
        return FileResponse(path, media_type="image/webp", headers={"Cache-Control": "private, max-age=31536000, immutable"})

    @app.get("/runs/{brand}/{week}/images/{image_id}/matches/{number}")
    def matched_reference(brand: str, week: str, image_id: str, number: int):
        """The competitor's image of one match, only from inside the brands folder."""
        item = image_or_404(run_or_404(brand, week), image_id)
        matches = (item.check or {}).get("matches", [])
        if not 0 <= number < len(matches) or config.brands_dir is None:
            raise HTTPException(404, "not found")
        reference = Path(matches[number]["reference"])
        if not reference.is_absolute():
            reference = Path.cwd() / reference
        try:
            relative = reference.resolve().relative_to(config.brands_dir.resolve())
        except ValueError:
            raise HTTPException(404, "the matched image is not inside the brands folder") from None
        return FileResponse(file_in(config.brands_dir, str(relative)))

    # ------------------------------------------------------------------ decisions
    @app.post("/login")
    def login(request: Request, name: str = Form(...), token: str = Form(...), csrf: str = Form(""),
              back: str = Form("/")):
        check_csrf(request, csrf)
        if not policy.check_login(name, token):
            raise HTTPException(403, "unknown reviewer or wrong token")
        request.session["reviewer"] = name
        return RedirectResponse(local_path(back), status_code=303)

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form("")):
        check_csrf(request, csrf)
        request.session.pop("reviewer", None)
        return RedirectResponse("/", status_code=303)

    @app.post("/runs/{brand}/{week}/items/{item_id}/decision")
    def decision(request: Request, brand: str, week: str, item_id: str, decision: str = Form(...),
                 comment: str = Form(""), text: str | None = Form(None), override: str = Form(""),
                 csrf: str = Form(""), back: str = Form("")):
        reviewer = require_post(request, csrf)
        run = run_or_404(brand, week)
        if decision not in ("approved", "rejected"):
            raise HTTPException(400, "decision must be approved or rejected")
        draft = next((d for s in run.slots for d in s.drafts if d.draft_id == item_id), None)
        if draft is None and item_id not in run.images:
            raise HTTPException(404, f"no draft or image {item_id} in this run")
        edited = None
        if draft is not None and text is not None:
            text = text.replace("\r\n", "\n").strip()
            edited = text if text and text != draft.draft["text"] else None
        try:
            decide(ledger, item_id, decision, reviewer, comment.strip(), override.strip() or None, edited)
        except ReviewError as exc:
            raise HTTPException(409, str(exc)) from None
        target = f"/runs/{brand}/{week}/images/{item_id}" if back == "image" else f"/runs/{brand}/{week}#{item_id}"
        return RedirectResponse(target, status_code=303)

    @app.post("/runs/{brand}/{week}/publish", response_class=HTMLResponse)
    def publish_run(request: Request, brand: str, week: str, csrf: str = Form("")):
        require_post(request, csrf)
        run = run_or_404(brand, week)
        if run.bundle is None:
            raise HTTPException(409, f"brand folder '{brand}' not found under the brands folder: "
                                     "start the server with --brands pointing at it to publish from here")
        try:
            report = publish(ledger, run.bundle, week, run_dir(brand, week), config.identity)
        except EstampilleError as exc:
            raise HTTPException(409, str(exc)) from None
        return page(request, "published.html", run=run, report=report)

    @app.post("/audit", response_class=HTMLResponse)
    async def audit_upload(request: Request, file: UploadFile, csrf: str = Form("")):
        check_csrf(request, csrf)
        data = await file.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            raise HTTPException(413, f"file larger than {MAX_UPLOAD // 2**20} MB")
        name = Path(file.filename or "upload").name
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / (name if Path(name).suffix else f"{name}.bin")
            path.write_bytes(data)
            # The audit is synchronous work (decoding, hashing): a worker thread, not the event loop.
            # One auditor while the ledger is unchanged: its index, and the renders' keypoints it
            # builds for tracing crops and screenshots, are not rebuilt for every upload.
            auditor = while_unchanged(("auditor",), lambda: Auditor(ledger, audit_trust(config.settings),
                                                                   out_dir=config.settings.out))
            report = await run_in_threadpool(auditor.audit, path)
        report.file = name
        return page(request, "audit.html", report=report, report_html=Markup(html_fragment([report])))

    @app.get("/healthz")
    def health():
        return Response("ok", media_type="text/plain")

    app.state.ledger = ledger
    return app
