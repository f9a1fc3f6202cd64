"""What no route may receive, refused before the app reads anything (a pure ASGI middleware).

- A body over the limit: by its Content-Length at once, or by counting a streamed body, so a 50 MB upload is
  never read into memory or spooled to disk. Multipart bodies (deployments) have their own, larger limit.
- NUL characters in the path, the query or a header: no id, key or user name contains one, and PostgreSQL
  cannot even compare text with them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.api.errors import BodyTooLarge, error_body

DEFAULT_MAX_JSON_BYTES = 4 * 1024 * 1024


class RequestGuard:
    def __init__(self, app: ASGIApp, *, max_json_bytes: int, max_multipart_bytes: int) -> None:
        self.app = app
        self.max_json_bytes = max_json_bytes
        self.max_multipart_bytes = max_multipart_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        problem = _nul_problem(scope)
        if problem is not None:
            await _answer(scope, receive, send, 400, error_body("invalid_request", problem))
            return
        content_type = headers.get("content-type", "").lower()
        limit = self.max_multipart_bytes if content_type.startswith("multipart/") else self.max_json_bytes
        declared = headers.get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()):
                await _answer(
                    scope,
                    receive,
                    send,
                    400,
                    error_body("invalid_request", "the Content-Length header is not a number"),
                )
                return
            if int(declared) > limit:
                await _answer(scope, receive, send, 413, _too_large(limit))
                return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _answer(scope, receive, send, 413, _too_large(limit))


def _too_large(limit: int) -> dict[str, Any]:
    return error_body(
        "payload_too_large", f"the request body is larger than the limit of {limit} bytes", limit=limit
    )


def _nul_problem(scope: Scope) -> str | None:
    if "\x00" in scope.get("path", ""):
        return "the path must not contain NUL characters"
    if b"\x00" in unquote_to_bytes(scope.get("query_string", b"")):
        return "the query string must not contain NUL characters"
    for name, value in scope.get("headers", ()):
        if b"\x00" in value:
            return f"the header {name.decode('latin-1')} must not contain NUL characters"
    return None


async def _answer(scope: Scope, receive: Receive, send: Send, status: int, body: dict[str, Any]) -> None:
    # Closing the connection tells the client to stop sending a body nobody will read.
    headers = {"connection": "close"} if status == 413 else None
    await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)
