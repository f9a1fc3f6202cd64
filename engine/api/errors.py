"""Errors as JSON ``{error, message, ...}``: never a stack trace, never a 500 for bad input."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import CaseflowError

log = logging.getLogger("caseflow.api")


class MalformedBody(CaseflowError):
    """The body is not JSON at all (as opposed to JSON of the wrong shape, which is a 422)."""

    status = 400
    code = "malformed_json"


class InvalidRequest(CaseflowError):
    """Something outside the body is unusable: a NUL character in the path, a broken header."""

    status = 400
    code = "invalid_request"


class UnknownUser(CaseflowError):
    """X-Caseflow-User names nobody in the users directory (only when the engine has one)."""

    status = 401
    code = "unknown_user"


class UnsupportedMediaType(CaseflowError):
    status = 415
    code = "unsupported_media_type"


class BodyTooLarge(StarletteHTTPException):
    """Raised while the body streams in; an HTTPException, so that FastAPI's body reader passes it on."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes")
        self.limit = limit


def error_body(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"error": code, "message": message, **{k: v for k, v in details.items() if v is not None}}


def _field(loc: tuple[object, ...]) -> str:
    return ".".join(str(p) for p in loc if p not in ("body", "query", "path", "header", "form"))


def _where(loc: tuple[object, ...]) -> str:
    if loc and loc[0] in ("query", "path", "header"):
        return f" ({loc[0]})"
    return ""


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    for e in errors:
        if e.get("type") == "json_invalid":
            reason = (e.get("ctx") or {}).get("error") or "JSON decode error"
            position = e.get("loc", ("body", None))[-1]
            where = f" at character {position}" if isinstance(position, int) else ""
            return JSONResponse(
                error_body("malformed_json", f"the request body is not valid JSON: {reason}{where}"),
                status_code=400,
            )
    problems = [
        {
            "field": _field(tuple(e.get("loc", ()))) or "body",
            "message": str(e.get("msg", "")).removeprefix("Value error, "),
            "type": e.get("type", ""),
        }
        for e in errors
    ]
    text = "; ".join(
        f"{p['field']}{_where(tuple(e.get('loc', ())))}: {p['message']}"
        for p, e in zip(problems[:5], errors[:5], strict=True)
    )
    if len(problems) > 5:
        text += f"; and {len(problems) - 5} more"
    return JSONResponse(error_body("invalid_request", text, problems=problems), status_code=422)


def _http_response(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    status = exc.status_code
    headers = getattr(exc, "headers", None)
    if status == 404:
        body = error_body("not_found", f"no such path: {request.method} {request.url.path}")
    elif status == 405:
        body = error_body("method_not_allowed", f"{request.method} is not allowed on {request.url.path}")
    elif status == 413:
        limit = getattr(exc, "limit", None)
        message = exc.detail if isinstance(exc, BodyTooLarge) else "the request body is too large"
        body = error_body("payload_too_large", str(message), limit=limit)
    elif status == 400 and exc.detail == "There was an error parsing the body":
        cause = exc.__cause__
        if isinstance(cause, RecursionError):
            body = error_body("malformed_json", "the request body is nested too deeply to be read")
        elif isinstance(cause, ValueError):
            body = error_body("malformed_json", f"the request body could not be read: {cause}")
        else:
            body = error_body("malformed_body", "the request body could not be read")
    elif status == 400:  # the multipart parser: too many parts, no boundary, broken data
        body = error_body("malformed_body", f"the request body could not be read: {exc.detail}")
    else:
        body = error_body("http_error", str(exc.detail))
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(CaseflowError)
    async def _caseflow(_: Request, exc: CaseflowError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _http_response(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(
            error_body("internal", "the engine failed unexpectedly; nothing was changed"), status_code=500
        )
