"""Plain ASGI pieces of the scoring service: bearer-token authentication, /readyz with its reason, the /docs
entry, and one log line (not a traceback) per request answered 4xx.

With ``FRESHCART_SERVING_API_KEY`` set, every route but the probes and the metrics
(``/livez``, ``/readyz``, ``/metrics``) answers 401 unless the request carries
``Authorization: Bearer <key>``; the comparison takes constant time. ``/docs``
leads to the OpenAPI UI (whose spec is ``/docs.json``).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import Any, Awaitable, Callable

OPEN_PATHS = frozenset({"/livez", "/readyz", "/metrics", "/healthz"})
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def bearer_ok(header: bytes | None, key: bytes) -> bool:
    """Whether an ``Authorization`` header value carries the key as a bearer token."""
    if not header:
        return False
    scheme, _, token = header.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), key)


class ApiKeyMiddleware:
    """401 for every HTTP request without the bearer token, except on :data:`OPEN_PATHS`."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], api_key: str | None) -> None:
        self.app = app
        self.key = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is None or scope.get("type") != "http" or scope.get("path", "") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope.get("headers", []) if k == b"authorization"), None)
        if bearer_ok(header, self.key):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "missing or wrong API key: send the header "
                                    "'Authorization: Bearer <FRESHCART_SERVING_API_KEY>'"}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class ReadinessMiddleware:
    """``GET /readyz`` answered with the reason: 200 ``{"ready": true, "detail": "serving <model> vN"}`` or 503
    ``{"ready": false, "detail": "<which part is down and why>"}`` (the framework's own says only "not ready")."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]],
                 ready: Callable[[], tuple[bool, str]]) -> None:
        self.app = app
        self.ready = ready

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("path") != "/readyz":
            await self.app(scope, receive, send)
            return
        ok, detail = await asyncio.to_thread(self.ready)  # pings the online store: off the event loop
        await _send_json(send, 200 if ok else 503, {"ready": ok, "detail": detail})


class ClientErrorsInOneLine(logging.Filter):
    """BentoML logs a whole traceback for every request it answers 4xx (a body that fails validation); this
    keeps one line with the status and the first line of the error, at INFO. Server errors keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        status = 400 if type(exc).__name__ == "ValidationError" else getattr(
            getattr(exc, "error_code", None), "value", 500)
        if isinstance(status, int) and status < 500:
            first = (str(exc).splitlines() or [""])[0][:200]
            record.msg, record.args = f"{record.getMessage()}: {status} {type(exc).__name__}: {first}", ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


async def docs_redirect(scope: Scope, receive: Receive, send: Send) -> None:
    """``/docs``: a redirect to the service's OpenAPI UI at ``/`` (spec at ``/docs.json``)."""
    if scope.get("type") != "http":
        return
    await send({"type": "http.response.start", "status": 307,
                "headers": [(b"location", b"/"), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})
