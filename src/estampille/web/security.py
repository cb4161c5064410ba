"""Who may reach the server, who may look and who may decide.

- The network edge (`Gate`, before anything reads a body): a reverse proxy is believed only when
  the connection comes from one of `--trusted-proxy` (and, if set, carries the proxy's shared
  secret); from anyone else its headers are dropped. Bound to loopback, only loopback peers are
  answered. The Host header must be one of the allowed hosts (loopback names by default), so a
  page on another site cannot reach the server through DNS rebinding. Bodies are limited while
  they are read. Cookies get `Secure` when the request came over HTTPS.
- A reviewer is either one of a configured list who knows the team token (a server-side session
  then carries the name: signing out, a restart with another token, or removing the name revokes
  it), or the name a trusted proxy puts in a header. Wrong tokens are throttled per client and
  per name, with a growing delay, and logged.
- Every state change is a POST carrying the session's CSRF token (synchronizer token), rotated
  at sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import SetupError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
MIN_TOKEN_LENGTH = 16
PROXY_SECRET_HEADER = "x-estampille-proxy-secret"
FORWARDED = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "x-real-ip")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _address(host: str):
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True)
class NetworkPolicy:
    """What the network edge accepts (see `Gate`)."""

    bind_host: str = "127.0.0.1"
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    allowed_hosts: tuple[str, ...] = ()  # besides the loopback names
    proxy_header: str | None = None  # the reviewer's name, from a trusted proxy only
    proxy_secret: str | None = None  # the proxy adds X-Estampille-Proxy-Secret: <this>
    max_body: int = 64 * 2**20

    @classmethod
    def parse(
        cls,
        bind_host: str,
        trusted: list[str],
        allowed: list[str],
        proxy_header: str | None,
        proxy_secret: str | None,
        max_body: int = 64 * 2**20,
    ) -> NetworkPolicy:
        """From the command line, refusing a setting that would let anyone in (SetupError, with the fix)."""
        networks = []
        for value in trusted:
            try:
                networks.append(ipaddress.ip_network(value.strip(), strict=False))
            except ValueError:
                raise SetupError(
                    f"--trusted-proxy {value!r} is not an address or a network (e.g. 127.0.0.1 or 10.0.0.0/24)"
                ) from None
        if proxy_header and not networks:
            raise SetupError(
                f"--proxy-header {proxy_header} would take the reviewer's name from anyone who can "
                "reach the port: give the proxy's address with --trusted-proxy ADDR (e.g. "
                "--trusted-proxy 127.0.0.1 when nginx or Caddy runs on this machine)"
            )
        if proxy_secret is not None and len(proxy_secret) < MIN_TOKEN_LENGTH:
            raise SetupError(
                f"ESTAMPILLE_PROXY_SECRET is shorter than {MIN_TOKEN_LENGTH} characters: choose a "
                "longer one (e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')"
            )
        if not is_loopback(bind_host) and not allowed:
            raise SetupError(
                f"serving on {bind_host} needs the names clients use to reach it: add "
                "--allowed-host NAME (e.g. --allowed-host review.example.com)"
            )
        return cls(
            bind_host,
            tuple(networks),
            tuple(a.strip().lower() for a in allowed if a.strip()),
            proxy_header,
            proxy_secret,
            max_body,
        )

    @property
    def hosts(self) -> list[str]:
        return list(LOOPBACK_NAMES) + list(self.allowed_hosts)

    def trusts(self, peer: str) -> bool:
        address = _address(peer)
        return address is not None and any(address in net for net in self.trusted_proxies)


def _size(limit: int) -> str:
    return f"{limit // 2**20} MB" if limit >= 2**20 else f"{limit // 1024} KB"


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than {_size(limit)}")


class Gate:
    """ASGI middleware at the edge; see the module's docstring. Sets scope["state"]["via_proxy"]."""

    def __init__(self, app: ASGIApp, policy: NetworkPolicy):
        self.policy = policy
        self.app = TrustedHostMiddleware(app, allowed_hosts=policy.hosts, www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.policy
        peer = (scope.get("client") or ("", 0))[0]
        headers = Headers(scope=scope)
        via_proxy = policy.trusts(peer)
        if via_proxy and policy.proxy_secret is not None:
            via_proxy = hmac.compare_digest(headers.get(PROXY_SECRET_HEADER, "").encode(), policy.proxy_secret.encode())
        if is_loopback(policy.bind_host) and not is_loopback(peer):
            await self._refuse(
                scope,
                receive,
                send,
                403,
                "This review server is bound to localhost and answers "
                "only local requests. To share it, run it behind a reverse proxy (see the README).",
            )
            return
        # A proxy's headers count only from a trusted proxy: from anyone else they are dropped.
        drop = (
            {PROXY_SECRET_HEADER}
            if via_proxy
            else (
                set(FORWARDED)
                | {PROXY_SECRET_HEADER}
                | ({policy.proxy_header.lower()} if policy.proxy_header else set())
            )
        )
        scope = dict(
            scope,
            headers=[(k, v) for k, v in scope["headers"] if k.decode("latin-1").lower() not in drop],
            state={**scope.get("state", {}), "via_proxy": via_proxy},
        )
        if via_proxy:
            client = self._forwarded_client(headers.get("x-forwarded-for", ""))
            if client:
                scope["client"] = (client, 0)
            proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
            if proto in ("http", "https"):
                scope["scheme"] = proto
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > policy.max_body):
            await self._refuse(scope, receive, send, 413, f"request body larger than {_size(policy.max_body)}")
            return
        await self.app(scope, self._counting(receive), self._securing(scope, send))

    def _forwarded_client(self, forwarded_for: str) -> str | None:
        """The rightmost address that is not one of our proxies (the ones on the left can be forged)."""
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.policy.trusts(hop):
                return hop if _address(hop) is not None else None
        return hops[0] if hops else None

    def _counting(self, receive: Receive) -> Receive:
        limit, seen = self.policy.max_body, 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        return counted

    @staticmethod
    def _securing(scope: Scope, send: Send) -> Send:
        """The security headers on every response (also those no page made: a refused host, a
        body too large), and `Secure` on every cookie of a response to an HTTPS request."""
        https = scope.get("scheme") == "https"

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
                cookies = [v for k, v in headers.raw if k == b"set-cookie"]
                if https and cookies:
                    del headers["set-cookie"]
                    for cookie in cookies:
                        value = cookie.decode("latin-1")
                        headers.append("set-cookie", value if "secure" in value.lower() else value + "; Secure")
            await send(message)

        return secured

    @staticmethod
    async def _refuse(scope, receive, send, status: int, message: str) -> None:
        response = PlainTextResponse(message, status_code=status, headers=dict(SECURITY_HEADERS))
        await response(scope, receive, send)


SECURITY_HEADERS = {
    # No script at all: the pages are plain forms. Images only from this server.
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@dataclass
class _Failures:
    count: int = 0
    blocked_until: float = 0.0


class SignInThrottle:
    """A growing delay after wrong tokens, per client address and per reviewer name: the first
    `free` failures cost nothing, then each doubles the wait (1 s, 2 s, 4 s ... up to `longest`)."""

    def __init__(self, free: int = 5, longest: float = 900.0, clock=time.monotonic):
        self.free, self.longest, self.clock = free, longest, clock
        self._failures: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    def wait(self, client: str, name: str) -> float:
        """Seconds before this client, or this name, may try again (0: now)."""
        now = self.clock()
        with self._lock:
            return max(
                [0.0] + [f.blocked_until - now for key in self._keys(client, name) if (f := self._failures.get(key))]
            )

    def failed(self, client: str, name: str) -> float:
        now = self.clock()
        with self._lock:
            delays = []
            for key in self._keys(client, name):
                f = self._failures.setdefault(key, _Failures())
                f.count += 1
                if f.count > self.free:
                    f.blocked_until = now + min(self.longest, 2.0 ** (f.count - self.free - 1))
                delays.append(max(0.0, f.blocked_until - now))
            if len(self._failures) > 10_000:  # bounded memory under a spray of names
                self._failures = {k: v for k, v in self._failures.items() if v.blocked_until > now}
        return max(delays)

    def succeeded(self, client: str, name: str) -> None:
        with self._lock:
            for key in self._keys(client, name):
                self._failures.pop(key, None)

    @staticmethod
    def _keys(client: str, name: str) -> tuple[str, str]:
        return f"client:{client}", f"name:{name.lower()}"


@dataclass
class _Session:
    reviewer: str
    token_fingerprint: str
    started: float


class SessionStore:
    """Signed-in sessions, kept by the server: the cookie carries only a random id. A session
    ends at sign-out, after `max_age`, when the server restarts, or when its reviewer or the
    team token is no longer the one it signed in with."""

    def __init__(self, max_age: float = 12 * 3600, clock=time.monotonic):
        self.max_age, self.clock = max_age, clock
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def start(self, reviewer: str, token: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = self.clock()
            self._sessions = {k: s for k, s in self._sessions.items() if now - s.started < self.max_age}
            self._sessions[sid] = _Session(reviewer, fingerprint(token), now)
        return sid

    def reviewer(self, sid: str | None, reviewers: tuple[str, ...], token: str | None) -> str | None:
        if not sid or not token:
            return None
        with self._lock:
            session = self._sessions.get(sid)
        if session is None or self.clock() - session.started >= self.max_age:
            return None
        if session.reviewer not in reviewers or not hmac.compare_digest(session.token_fingerprint, fingerprint(token)):
            return None
        return session.reviewer

    def end(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)


def fingerprint(token: str) -> str:
    return hashlib.sha256(b"estampille-review-token:" + token.encode("utf-8")).hexdigest()


@dataclass
class ReviewerPolicy:
    """How a request gets a reviewer name."""

    reviewers: tuple[str, ...] = ()
    token: str | None = None  # shared by the listed reviewers; never logged
    proxy_header: str | None = None  # e.g. X-Forwarded-User, set by a trusted proxy
    sessions: SessionStore = field(default_factory=SessionStore, compare=False)
    throttle: SignInThrottle = field(default_factory=SignInThrottle, compare=False)

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise SetupError(
                f"the team token (ESTAMPILLE_REVIEW_TOKEN) is shorter than {MIN_TOKEN_LENGTH} "
                "characters: choose a longer one, or unset it to get one made for you"
            )

    @property
    def can_log_in(self) -> bool:
        return bool(self.reviewers and self.token)

    def reviewer(self, request: Request) -> str | None:
        if self.proxy_header:
            if not request.scope.get("state", {}).get("via_proxy"):
                return None
            name = request.headers.get(self.proxy_header, "").strip()
            if name and (not self.reviewers or name in self.reviewers):
                return name
            return None
        return self.sessions.reviewer(request.session.get("sid"), self.reviewers, self.token)

    def check_login(self, name: str, token: str) -> bool:
        if not self.token:
            return False  # no shared token: nobody signs in with one
        return name in self.reviewers and hmac.compare_digest(token.encode("utf-8"), self.token.encode("utf-8"))


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(request: Request, submitted: str | None) -> bool:
    expected = request.session.get("csrf")
    if not expected or not submitted:
        return False
    return hmac.compare_digest(str(expected).encode(), submitted.encode())


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
