"""The one error body of the API (spec §17): NestJS-style JSON on every non-2xx response."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from openlipsync.store.db import is_unavailable

log = logging.getLogger("openlipsync.api")

DATABASE_UNAVAILABLE = "The database is temporarily unavailable; retry shortly"
RETRY_AFTER_SECONDS = "2"


class ApiError(Exception):
    """Raised anywhere in a request; rendered as the §17 body with this status."""

    def __init__(
        self,
        status: int,
        message: str | list[str],
        error_code: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message if isinstance(message, str) else "; ".join(message))
        self.status = status
        self.message = message
        self.error_code = error_code
        self.headers = headers or {}
        self.extra = extra


def bad_request(message: str | list[str], error_code: str = "invalid_request") -> ApiError:
    return ApiError(400, message, error_code)


def not_found(what: str, error_code: str) -> ApiError:
    return ApiError(404, f"{what} not found", error_code)


def error_body(
    status: int, message: str | list[str], error_code: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"statusCode": status, "message": message, "error": _reason(status)}
    if error_code:
        body["errorCode"] = error_code
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def error_response(error: ApiError) -> JSONResponse:
    body = error_body(error.status, error.message, error.error_code, **error.extra)
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


_DEFAULT_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limit_exceeded",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else _reason(exc.status_code)
        if exc.status_code == 404 and message == "Not Found":
            message = "Route not found"
        body = error_body(exc.status_code, message, _DEFAULT_CODES.get(exc.status_code))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        messages = [_describe(err) for err in exc.errors()] or ["invalid request"]
        return JSONResponse(error_body(400, messages, "invalid_request"), status_code=400)

    @app.exception_handler(SQLAlchemyError)
    async def _database_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        if not is_unavailable(exc):
            return await _unexpected(request, exc)
        # PostgreSQL restarting or SQLite locked: nothing was written, the client may retry.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        body = error_body(503, DATABASE_UNAVAILABLE, "generation_database_error")
        return JSONResponse(body, status_code=503, headers={"Retry-After": RETRY_AFTER_SECONDS})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        body = error_body(500, "Internal server error", "generation_unhandled_error")
        return JSONResponse(body, status_code=500)


def _describe(err: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in err.get("loc", ()) if part not in ("body", "query"))
    return f"{location} {err.get('msg', 'is invalid')}".strip()
