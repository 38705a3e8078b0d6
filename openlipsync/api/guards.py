"""Refuse NUL characters before they reach the database.

PostgreSQL text columns cannot hold U+0000 and raise a DataError (a 500) on any query that
binds one, so a stray `%00` in a path, query string or body is rejected up front with a 400.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from openlipsync.api.errors import error_body

NUL_MESSAGE = "NUL characters are not allowed in requests"


def contains_nul(data: bytes | str) -> bool:
    """True for a raw NUL or a JSON `\\u0000` escape (a false positive on `\\\\u0000` is fine)."""
    if isinstance(data, str):
        return "\x00" in data or "\\u0000" in data
    return b"\x00" in data or b"\\u0000" in data


class RejectNulMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._has_nul(scope):
            body = json.dumps(error_body(400, NUL_MESSAGE, "invalid_request")).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 400,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _has_nul(scope: Scope) -> bool:
        query = scope.get("query_string", b"").lower()
        return "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query
