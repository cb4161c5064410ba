"""Who may look and who may decide.

- Bound to loopback (the default), the server answers only loopback clients that name a
  loopback host: a page on another site cannot reach it through DNS rebinding.
- A reviewer is either one of a configured list who knows the shared token (a session cookie
  then carries the name), or the name a trusted reverse proxy puts in a header.
- Every state change is a POST carrying the session's CSRF token (synchronizer token).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class LocalOnly:
    """ASGI middleware: refuse non-loopback clients and foreign Host headers (403)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            client = (scope.get("client") or ("", 0))[0]
            host = Request(scope).url.hostname or ""
            if not is_loopback(client) or not is_loopback(host):
                response = PlainTextResponse(
                    "This review server is bound to localhost and answers only local requests. "
                    "To share it, run it behind a reverse proxy (see the README).", status_code=403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class ReviewerPolicy:
    """How a request gets a reviewer name."""

    reviewers: tuple[str, ...] = ()
    token: str | None = None              # shared by the listed reviewers; never logged
    proxy_header: str | None = None       # e.g. X-Forwarded-User, set by a trusted proxy
    notes: list[str] = field(default_factory=list, compare=False)

    @property
    def can_log_in(self) -> bool:
        return bool(self.reviewers and self.token)

    def reviewer(self, request: Request) -> str | None:
        if self.proxy_header:
            name = request.headers.get(self.proxy_header, "").strip()
            if name and (not self.reviewers or name in self.reviewers):
                return name
            return None
        name = request.session.get("reviewer")
        return name if name in self.reviewers else None

    def check_login(self, name: str, token: str) -> bool:
        return bool(self.token) and name in self.reviewers and hmac.compare_digest(
            token.encode("utf-8"), self.token.encode("utf-8"))


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(request: Request, submitted: str | None) -> bool:
    expected = request.session.get("csrf")
    return bool(expected and submitted) and hmac.compare_digest(expected.encode(), submitted.encode())


def session_secret(home: Path) -> str:
    """A per-installation secret for session cookies, kept as a private file (0600)."""
    path = home / "web-session.key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_text(secrets.token_urlsafe(48))
        tmp.replace(path)
    path.chmod(0o600)
    return path.read_text().strip()
