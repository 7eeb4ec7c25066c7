"""Plain ASGI pieces of the scoring service: bearer-token authentication and the /docs entry.

With ``FRESHCART_SERVING_API_KEY`` set, every route but the probes and the metrics
(``/livez``, ``/readyz``, ``/metrics``) answers 401 unless the request carries
``Authorization: Bearer <key>``; the comparison takes constant time. ``/docs``
leads to the OpenAPI UI (whose spec is ``/docs.json``).
"""

from __future__ import annotations

import hmac
import json
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


async def docs_redirect(scope: Scope, receive: Receive, send: Send) -> None:
    """``/docs``: a redirect to the service's OpenAPI UI at ``/`` (spec at ``/docs.json``)."""
    if scope.get("type") != "http":
        return
    await send({"type": "http.response.start", "status": 307,
                "headers": [(b"location", b"/"), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})
