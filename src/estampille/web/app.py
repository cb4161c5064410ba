"""`estampille serve`: the review and audit pages for designers.

This module assembles the app: the network edge (`security.Gate`), sessions, security headers,
error pages, and the routers (`pages.py`: what it shows, GET only; `actions.py`: what changes
state, POST with CSRF). What the routes share lives in one `Site` (`site.py`).
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from . import actions, pages, resolver
from .security import SECURITY_HEADERS, Gate, session_secret
from .site import Site, WebConfig

__all__ = ["WebConfig", "create_app", "uvicorn_config"]


def create_app(config: WebConfig) -> FastAPI:
    site = Site(config)
    policy = site.policy
    app = FastAPI(title="Estampille review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.site, app.state.ledger = site, site.ledger
    app.router.on_shutdown.append(site.close)

    @app.middleware("http")
    async def headers_and_timing(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers["Cache-Control"] = "no-store"  # pages carry CSRF tokens and names
        if policy.reviewer(request) is not None:  # timings only for a signed-in reviewer
            response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    # Added after the headers middleware, so outside it (the last added runs first): the Gate at the
    # edge, then sessions. The cookie holds a session id and the CSRF token; who signed in is kept
    # server-side (security.py); `Secure` is added by the Gate whenever the request came over HTTPS.
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(config.settings.home),
        session_cookie="estampille",
        same_site="strict",
        https_only=False,
        max_age=12 * 3600,
    )
    app.add_middleware(Gate, policy=config.edge)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        response = site.page(
            request, "error.html", status_code=exc.status_code, message=exc.detail, status=exc.status_code
        )
        response.headers.update(exc.headers or {})  # Retry-After
        return response

    @app.exception_handler(RequestValidationError)
    async def form_error(request: Request, exc: RequestValidationError):
        fields = ", ".join(sorted({str(e["loc"][-1]) for e in exc.errors() if e.get("loc")})) or "the form"
        return site.page(
            request, "error.html", status_code=400, message=f"missing or invalid field: {fields}", status=400
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        # Outside the headers middleware: this response sets the security headers itself.
        response = PlainTextResponse("internal error: the server log has the details", status_code=500)
        response.headers.update(SECURITY_HEADERS)
        return response

    app.include_router(pages.router)
    app.include_router(actions.router)
    app.include_router(resolver.router)  # the C2PA soft-binding resolution API (read-only)
    return app


def uvicorn_config(app: FastAPI, host: str, port: int):
    """How the server runs: uvicorn's own proxy-header handling off (it would believe
    X-Forwarded-For from any local process; the Gate believes it only from --trusted-proxy)."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level="warning", proxy_headers=False, server_header=False)
