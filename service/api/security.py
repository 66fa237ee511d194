"""Who may call: optional bearer-token authentication and CORS, both off unless configured.

Authentication denies by default: with `api_token` set, every route needs `Authorization: Bearer
<token>` except the try-it page and API docs (no data) and, unless `auth_probes` is set, the
probes and /metrics (kubelets and Prometheus carry no token). The check runs before the body is
read, so an unauthenticated upload costs nothing. docs/reliability.md, "Security".
"""

from __future__ import annotations

import hmac

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from service import metrics
from service.api.errors import error_response
from service.settings import Settings

PUBLIC = frozenset({"/", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
PUBLIC_PREFIXES = ("/static/",)
PROBES = frozenset({"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"})
# What a browser page on an allowed origin may send and read (the v2 binary extension included).
CORS_HEADERS = ("Authorization", "Content-Type", "Content-Encoding", "X-Request-ID", "Inference-Header-Content-Length")
CORS_EXPOSED = ("X-Request-ID", "Retry-After", "Inference-Header-Content-Length")


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` value (the scheme is case-insensitive, RFC 7235)."""
    scheme, _, token = authorization.strip().partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def check_token(authorization: str, token: bytes) -> tuple[bool, bool]:
    """(the value carries the right token, a token was offered): the one check of HTTP and gRPC."""
    given = bearer_token(authorization)
    # compare_digest: the time taken does not depend on where the first wrong byte is.
    return given is not None and hmac.compare_digest(given.encode("latin-1"), token), given is not None


class BearerAuth:
    """Pure ASGI: refuses a request without the right token with a JSON 401, before any route runs."""

    def __init__(self, app: ASGIApp, *, token: str, protect_probes: bool) -> None:
        self.app = app
        self._token = token.encode()
        self._open = PUBLIC if protect_probes else PUBLIC | PROBES

    def _allowed(self, scope: Scope) -> tuple[bool, bool]:
        """(allowed, a token was offered)."""
        path = scope["path"]
        if path in self._open or path.startswith(PUBLIC_PREFIXES):
            return True, False
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"").decode("latin-1")
        return check_token(header, self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        allowed, offered = self._allowed(scope)
        if allowed:
            await self.app(scope, receive, send)
            return
        metrics.REJECTIONS.labels("unauthorized").inc()
        # RFC 6750 section 3: say which scheme, and whether the offered token was the problem.
        challenge = 'Bearer realm="googlenet", error="invalid_token"' if offered else 'Bearer realm="googlenet"'
        message = "the bearer token is not valid" if offered else "this endpoint needs 'Authorization: Bearer <token>'"
        response = error_response(401, "unauthorized", message, {"WWW-Authenticate": challenge})
        await response(scope, receive, send)


def install(app: FastAPI, settings: Settings) -> None:
    """Add the configured middlewares. Call before the request-context middleware is added, so that
    one stays outermost and 401s still get a request id and metrics."""
    if settings.api_token is not None:
        app.add_middleware(
            BearerAuth, token=settings.api_token.get_secret_value(), protect_probes=settings.auth_probes
        )
    if settings.cors_origins:  # added after auth, so it runs first: preflights carry no token
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=("GET", "POST"),
            allow_headers=CORS_HEADERS, expose_headers=CORS_EXPOSED, allow_credentials=False,
        )
