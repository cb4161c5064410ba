"""`estampille serve`: the review and audit pages for designers.

Pages read the ledger; decisions go through the same library calls as the command line
(`review.decisions.decide`, `review.export.publish`, `provenance.audit.Auditor`), so the web
page and the CLI cannot disagree. Files are served only from inside a run folder or a brand's
competitor folders, never from a path a request or a ledger row names elsewhere.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from ..errors import EstampilleError
from ..ledger import Ledger
from ..images import IMAGE_SUFFIXES
from ..paths import OutsideFolder, inside
from ..provenance.audit_report import html_fragment
from ..provenance.c2pa_manifest import read_manifest
from ..provenance.identity import SignerIdentity
from ..provenance.xmp import read_xmp
from ..review.decisions import ReviewError, StaleDecision, decide
from ..review.export import publish
from ..settings import Settings
from .audit_pool import AuditPool, Busy
from .runs import ImageItem, RunNotFound, list_runs, load_run
from .security import (SECURITY_HEADERS, BodyTooLarge, Gate, NetworkPolicy, ReviewerPolicy, csrf_ok, csrf_token,
                       is_loopback, session_secret)
from .thumbnails import thumbnail

log = logging.getLogger("estampille.web")
TEMPLATES = Path(__file__).with_name("templates")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")      # brand slugs, item ids
WEEK = re.compile(r"^\d{4}-W\d{2}$")
SERVED_SUFFIXES = IMAGE_SUFFIXES | {".json"}
MAX_UPLOAD = 64 * 1024 * 1024
UPLOAD_MAX_PIXELS = 24_000_000          # an upload larger than this is audited from the command line
AUDITS_AT_ONCE = 1                      # worker processes auditing uploads (~235 MB each); more wait, then get a 503
AUDIT_QUEUE_SECONDS = 90                # then a 503 with Retry-After
MAX_COMMENT = 2000                      # characters
HISTORY_ROWS = 50                       # decisions shown on a run page (every one is on its item's page)
CSRF_SLOT, REVIEWER_SLOT = "@@csrf-slot-5b1e@@", "@@reviewer-slot-5b1e@@"   # filled per request in shared pages


@dataclass
class WebConfig:
    settings: Settings
    identity: SignerIdentity
    policy: ReviewerPolicy
    brands_dir: Path | None = None       # where brand folders live (calendar text, competitor images, publish)
    bind_host: str = "127.0.0.1"
    network: NetworkPolicy | None = None  # the edge: trusted proxies, allowed hosts, body limit

    def __post_init__(self) -> None:
        if self.network is None:
            self.network = NetworkPolicy(self.bind_host, max_body=MAX_UPLOAD + 2**20)


def create_app(config: WebConfig) -> FastAPI:
    settings, policy = config.settings, config.policy
    ledger = Ledger(settings.ledger_url)
    templates = Jinja2Templates(directory=str(TEMPLATES))   # autoescapes .html: captions come from an LLM
    app = FastAPI(title="Estampille review", docs_url=None, redoc_url=None, openapi_url=None)
    audits = AuditPool(settings, AUDITS_AT_ONCE, AUDIT_QUEUE_SECONDS)
    # A read-only server on loopback (nobody can sign in) still audits files; anywhere else, reviewers only.
    anonymous_audits = not (policy.can_log_in or policy.proxy_header) and is_loopback(config.bind_host)
    app.router.on_shutdown.append(audits.close)

    @app.middleware("http")
    async def headers_and_timing(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers["Cache-Control"] = "no-store"     # pages carry CSRF tokens and names
        if policy.reviewer(request) is not None:               # timings only for a signed-in reviewer
            response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    # Added after the headers middleware, so outside it (the last added runs first): the Gate at the
    # edge, then sessions. The cookie holds a session id and the CSRF token; who signed in is kept
    # server-side (security.py); `Secure` is added by the Gate whenever the request came over HTTPS.
    app.add_middleware(SessionMiddleware, secret_key=session_secret(settings.home), session_cookie="estampille",
                       same_site="strict", https_only=False, max_age=12 * 3600)
    app.add_middleware(Gate, policy=config.network)

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
        """A file inside `folder`, or 404 for anything else: outside, missing, a NUL byte, a
        symlink loop, a name too long for the file system."""
        try:
            path = inside(folder, relative)
            if path.suffix.lower() not in SERVED_SUFFIXES or not path.is_file():
                raise HTTPException(404, "not found")
        except (OutsideFolder, OSError, ValueError, RuntimeError):
            raise HTTPException(404, "not found") from None
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
        response = page(request, "error.html", status_code=exc.status_code, message=exc.detail, status=exc.status_code)
        response.headers.update(exc.headers or {})          # Retry-After
        return response

    @app.exception_handler(RequestValidationError)
    async def form_error(request: Request, exc: RequestValidationError):
        fields = ", ".join(sorted({str(e["loc"][-1]) for e in exc.errors() if e.get("loc")})) or "the form"
        return page(request, "error.html", status_code=400, message=f"missing or invalid field: {fields}", status=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        # Outside the headers middleware: this response sets the security headers itself.
        response = PlainTextResponse("internal error: the server log has the details", status_code=500)
        response.headers.update(SECURITY_HEADERS)
        return response

    # ------------------------------------------------------------------ pages
    @app.get("/", response_class=HTMLResponse)
    def runs_page(request: Request):
        return page(request, "runs.html", runs=while_unchanged(("runs",), lambda: list_runs(ledger)))

    @app.get("/runs/{brand}/{week}", response_class=HTMLResponse)
    def run_page(request: Request, brand: str, week: str, message: str = ""):
        run = run_or_404(brand, week)
        if message:
            return page(request, "run.html", run=run, message=message, history_rows=HISTORY_ROWS)
        return shared_page(request, ("run page", brand, week), "run.html", run=run, message="",
                           history_rows=HISTORY_ROWS)

    def shared_page(request: Request, key: tuple[str, ...], name: str, **context) -> HTMLResponse:
        """A page everyone sees alike, rendered once while the ledger is unchanged (a run page of
        400 images is read by a whole team at once): the session's CSRF token and the reviewer's
        name go into slots of the cached HTML."""
        reviewer = policy.reviewer(request)
        html = while_unchanged(key + (str(reviewer is not None),), lambda: templates.get_template(name).render(
            request=request, reviewer=REVIEWER_SLOT if reviewer else None, policy=policy, csrf=CSRF_SLOT, **context))
        html = html.replace(CSRF_SLOT, csrf_token(request)).replace(REVIEWER_SLOT, str(escape(reviewer or "")))
        return HTMLResponse(html)

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
        except (OutsideFolder, OSError, ValueError):
            validation = {"state": "file unavailable", "failures": [f"{item.file} is missing or unreadable in the run folder"]}
        draft = next((d for s in run.slots for d in s.drafts if d.draft_id == item.render["draft_id"]), None)
        return page(request, "image.html", run=run, item=item, draft=draft, validation=validation, xmp=xmp)

    @app.get("/audit", response_class=HTMLResponse)
    def audit_form(request: Request):
        return page(request, "audit.html", report=None, anonymous_audits=anonymous_audits)

    # ------------------------------------------------------------------ files
    @app.get("/runs/{brand}/{week}/files/{relative:path}")
    def run_file(brand: str, week: str, relative: str):
        run_or_404(brand, week)            # only folders of runs the ledger knows
        return FileResponse(file_in(run_dir(brand, week), relative))

    @app.get("/runs/{brand}/{week}/thumbs/{image_id}.webp")
    def thumb(brand: str, week: str, image_id: str, v: str = ""):
        """Cached for a year only at the address carrying the file's hash (?v=): a retouch gets a new address."""
        run = run_or_404(brand, week)
        item = image_or_404(run, image_id)
        folder = run_dir(brand, week)
        try:
            path = thumbnail(folder, image_id, file_in(folder, item.file), item.sha256)
        except ValueError as exc:
            raise HTTPException(422, f"cannot make a thumbnail: {exc}") from None
        fresh = v == thumb_version(item.sha256)
        return FileResponse(path, media_type="image/webp", headers={
            "Cache-Control": "private, max-age=31536000, immutable" if fresh else "private, no-cache"})

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
        client = request.client.host if request.client else ""
        wait = policy.throttle.wait(client, name)
        if wait > 0:
            raise HTTPException(429, f"too many wrong tokens: try again in {wait:.0f} s",
                                headers={"Retry-After": str(max(1, round(wait)))})
        if not policy.check_login(name, token):
            delay = policy.throttle.failed(client, name)
            log.warning("sign-in refused for %r from %s%s", name[:80], client,
                        f" (next try allowed in {delay:.0f} s)" if delay else "")
            raise HTTPException(403, "unknown reviewer or wrong token")
        policy.throttle.succeeded(client, name)
        policy.sessions.end(request.session.get("sid"))
        request.session.clear()                   # a new session id and a new CSRF token at sign-in
        request.session["sid"] = policy.sessions.start(name, token)
        log.info("%s signed in from %s", name, client)
        return RedirectResponse(local_path(back), status_code=303)

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form("")):
        check_csrf(request, csrf)
        policy.sessions.end(request.session.get("sid"))     # a copied cookie stops working too
        request.session.clear()
        return RedirectResponse("/", status_code=303)

    @app.post("/runs/{brand}/{week}/items/{item_id}/decision")
    def decision(request: Request, brand: str, week: str, item_id: str, decision: str = Form(...),
                 comment: str = Form(""), text: str | None = Form(None), override: str = Form(""),
                 version: str = Form(""), csrf: str = Form(""), back: str = Form("")):
        reviewer = require_post(request, csrf)
        run = run_or_404(brand, week)
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
            edited = text if text and text != draft.draft["text"] else None
        try:
            decide(ledger, item_id, decision, reviewer, comment.strip(), override.strip() or None, edited,
                   version=int(version))
        except StaleDecision as exc:
            return page(request, "stale.html", status_code=409, run=run, item_id=item_id, stale=exc,
                        back=f"/runs/{brand}/{week}/images/{item_id}" if back == "image" else f"/runs/{brand}/{week}#{item_id}")
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
        return page(request, "published.html", run=run, report=report,
                    folder=_relative_to(Path(report.folder), settings.out, "the output folder"))

    @app.post("/audit", response_class=HTMLResponse)
    async def audit_upload(request: Request):
        """Sign-in and the CSRF token (in the form's address) are checked before the body is read;
        the Gate bounds the body; the audit runs in a worker process, a few at a time."""
        token = request.query_params.get("csrf") or request.headers.get("x-csrf-token")
        if anonymous_audits:
            check_csrf(request, token)
        else:
            require_post(request, token)
        try:
            form = await request.form(max_files=1, max_fields=4)
        except BodyTooLarge:
            raise
        except Exception as exc:
            # Raised while reading, the Gate's limit can reach here inside the middleware's task group.
            if isinstance(exc, BaseExceptionGroup) and exc.subgroup(BodyTooLarge):
                raise BodyTooLarge(config.network.max_body) from None
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
                report = await run_in_threadpool(audit_bounded, path)
        finally:
            await form.close()
        report.file = name
        return page(request, "audit.html", report=report, report_html=Markup(html_fragment([report])),
                    anonymous_audits=anonymous_audits)

    def audit_bounded(path: Path):
        """One audit in a worker process, once one is free; pictures over the upload cap refused."""
        try:
            size = image_size(path)
        except OSError:
            size = None
        if size and size[0] * size[1] > UPLOAD_MAX_PIXELS:
            raise HTTPException(413, f"an image of {size[0]}x{size[1]} pixels: uploads are audited up to "
                                     f"{UPLOAD_MAX_PIXELS // 10**6} megapixels; audit it with `estampille audit FILE`")
        try:
            return audits.audit(path, ledger.head())
        except Busy:
            raise HTTPException(503, "other files are being audited: try again in a minute",
                                headers={"Retry-After": "30"}) from None

    @app.get("/healthz")
    def health():
        return Response("ok", media_type="text/plain")

    app.state.ledger = ledger
    return app


def uvicorn_config(app: FastAPI, host: str, port: int):
    """How the server runs: uvicorn's own proxy-header handling off (it would believe
    X-Forwarded-For from any local process; the Gate believes it only from --trusted-proxy)."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level="warning", proxy_headers=False, server_header=False)


def thumb_version(sha256: str) -> str:
    return sha256[:16]


def image_size(path: Path) -> tuple[int, int] | None:
    """Width and height from the header, without decoding (None if Pillow cannot tell)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, ValueError):
        return None


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
