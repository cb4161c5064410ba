"""What every route of the review server shares: the ledger, the templates, the views built
from the ledger, the audit workers, and the checks a route makes before it answers (a run that
exists, a file inside its folder, a signed-in reviewer with a good CSRF token).

Routes get the one `Site` of their app through the `SiteDep` dependency.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import escape

from ..images import IMAGE_SUFFIXES
from ..ledger import Ledger
from ..lookalike import describe
from ..paths import OutsideFolder, inside, run_folder
from ..provenance.identity import SignerIdentity
from ..settings import Settings
from .audit_pool import AuditPool
from .runs import ImageItem, RunNotFound, list_runs, load_run
from .security import NetworkPolicy, ReviewerPolicy, csrf_ok, csrf_token, is_loopback

TEMPLATES = Path(__file__).with_name("templates")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")  # brand slugs, item ids
WEEK = re.compile(r"^\d{4}-W\d{2}$")
SERVED_SUFFIXES = IMAGE_SUFFIXES | {".json"}
MAX_UPLOAD = 64 * 1024 * 1024
AUDITS_AT_ONCE = 1  # worker processes auditing uploads (~235 MB each); more wait, then get a 503
AUDIT_QUEUE_SECONDS = 90  # then a 503 with Retry-After
CSRF_SLOT, REVIEWER_SLOT = "@@csrf-slot-5b1e@@", "@@reviewer-slot-5b1e@@"  # filled per request in shared pages


@dataclass
class WebConfig:
    settings: Settings
    identity: SignerIdentity
    policy: ReviewerPolicy
    brands_dir: Path | None = None  # where brand folders live (calendar text, competitor images, publish)
    bind_host: str = "127.0.0.1"
    network: NetworkPolicy | None = None  # the edge: trusted proxies, allowed hosts, body limit

    def __post_init__(self) -> None:
        self.network = self.edge

    @property
    def edge(self) -> NetworkPolicy:
        """The network policy in force: `network`, else the defaults for `bind_host`."""
        if self.network is not None:
            return self.network
        return NetworkPolicy(self.bind_host, max_body=MAX_UPLOAD + 2**20)


class Site:
    """One server's shared state. Views are cached by the ledger's head, not by time: a page is
    rebuilt exactly when a decision or a run has been recorded since (a run page asks for hundreds
    of thumbnails, each of which needs the run's view)."""

    def __init__(self, config: WebConfig):
        self.config, self.settings, self.policy = config, config.settings, config.policy
        self.ledger = Ledger(config.settings.ledger_url)
        self.templates = Jinja2Templates(directory=str(TEMPLATES))  # autoescapes .html: captions come from an LLM
        self.templates.env.globals["describe"] = describe  # one wording of a lookalike match
        self.audits = AuditPool(config.settings, AUDITS_AT_ONCE, AUDIT_QUEUE_SECONDS)
        # A read-only server on loopback (nobody can sign in) still audits files; anywhere else, reviewers only.
        self.anonymous_audits = not (self.policy.can_log_in or self.policy.proxy_header) and is_loopback(
            config.bind_host
        )
        self._views: dict[tuple[str, ...], tuple[int, object]] = {}
        self._views_lock = threading.Lock()

    def close(self) -> None:
        self.audits.close()

    # ------------------------------------------------------------------ pages
    def page(self, request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
        return self.templates.TemplateResponse(
            request,
            name,
            {"reviewer": self.policy.reviewer(request), "policy": self.policy, "csrf": csrf_token(request), **context},
            status_code=status_code,
        )

    def shared_page(self, request: Request, key: tuple[str, ...], name: str, **context) -> HTMLResponse:
        """A page everyone sees alike, rendered once while the ledger is unchanged (a run page of
        400 images is read by a whole team at once): the session's CSRF token and the reviewer's
        name go into slots of the cached HTML."""
        reviewer = self.policy.reviewer(request)
        html = self.while_unchanged(
            key + (str(reviewer is not None),),
            lambda: self.templates.get_template(name).render(
                request=request,
                reviewer=REVIEWER_SLOT if reviewer else None,
                policy=self.policy,
                csrf=CSRF_SLOT,
                **context,
            ),
        )
        html = html.replace(CSRF_SLOT, csrf_token(request)).replace(REVIEWER_SLOT, str(escape(reviewer or "")))
        return HTMLResponse(html)

    def while_unchanged(self, key: tuple[str, ...], build: Callable[[], Any]) -> Any:
        """A view built from the ledger, rebuilt only when the ledger has grown since."""
        head = self.ledger.head()
        with self._views_lock:
            seen = self._views.get(key)
        if seen and seen[0] == head:
            return seen[1]
        value = build()
        with self._views_lock:
            self._views[key] = (head, value)
        return value

    # ------------------------------------------------------------------ what a request may name
    def run_dir(self, brand: str, week: str) -> Path:
        if not NAME.match(brand) or not WEEK.match(week):
            raise HTTPException(404, "no such run")
        return run_folder(self.settings.out, brand, week).resolve()

    def runs(self):
        return self.while_unchanged(("runs",), lambda: list_runs(self.ledger))

    def run_or_404(self, brand: str, week: str):
        self.run_dir(brand, week)
        try:
            return self.while_unchanged(
                ("run", brand, week), lambda: load_run(self.ledger, brand, week, self.config.brands_dir)
            )
        except RunNotFound as exc:
            raise HTTPException(404, str(exc)) from None

    @staticmethod
    def image_or_404(run, image_id: str) -> ImageItem:
        item = run.images.get(image_id)
        if item is None:
            raise HTTPException(404, f"no image {image_id} in this run")
        return item

    @staticmethod
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

    # ------------------------------------------------------------------ who may change state
    @staticmethod
    def check_csrf(request: Request, csrf: str | None) -> None:
        if not csrf_ok(request, csrf):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")

    def require_post(self, request: Request, csrf: str | None) -> str:
        """The reviewer behind a state-changing request, after its CSRF token checks out."""
        self.check_csrf(request, csrf)
        reviewer = self.policy.reviewer(request)
        if reviewer is None:
            raise HTTPException(403, "sign in as a reviewer first")
        return reviewer


def get_site(request: Request) -> Site:
    return request.app.state.site


SiteDep = Annotated[Site, Depends(get_site)]
