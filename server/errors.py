"""JSON errors: `{"error": {"code", "message"}}` with a fitting status, never a stack trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.ingest import errors as ingest

log = logging.getLogger("longvu.errors")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class CacheUnavailable(ApiError):
    def __init__(self, detail: str = "the cache is unreachable; try again shortly") -> None:
        super().__init__(503, "cache_unavailable", detail, {"Retry-After": "5"})


# The ingest's errors as HTTP: (status, seconds worth waiting before trying again).
INGEST_STATUS: dict[type[ingest.IngestError], tuple[int, int | None]] = {
    ingest.MalformedUpload: (400, None),
    ingest.EmptyVideo: (400, None),
    ingest.VideoTooLarge: (413, None),
    ingest.VideoTooLong: (413, None),
    ingest.NotAVideo: (415, None),
    ingest.DecodeTimeout: (422, None),
    ingest.InvalidUrl: (422, None),
    ingest.UrlNotAllowed: (422, None),
    ingest.UrlUnreachable: (422, None),
    ingest.FetchFailed: (422, None),
    ingest.FetchTimeout: (422, None),
    ingest.SpoolFull: (503, 30),
    ingest.DiskFull: (503, 60),
}


def as_api_error(exc: ApiError | ingest.IngestError) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    status, retry_after = INGEST_STATUS.get(type(exc), (422, None))
    return ApiError(status, exc.code, str(exc), {"Retry-After": str(retry_after)} if retry_after else None)


OPENAI_PREFIX = "/v1/"
_OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                 429: "rate_limit_error"}


def openai_type(status: int) -> str:
    return _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   path: str = "") -> JSONResponse:
    """Our shape, or OpenAI's (`message`, `type`, `param`, `code`) under /v1/."""
    if path.startswith(OPENAI_PREFIX):
        body = {"error": {"message": message, "type": openai_type(status), "param": None, "code": code}}
    else:
        body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
               401: "unauthorized"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    @app.exception_handler(ingest.IngestError)
    async def _api(request: Request, exc: ApiError | ingest.IngestError) -> JSONResponse:
        error = as_api_error(exc)
        return error_response(error.status, error.code, error.message, error.headers, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid body"))
        path = request.url.path  # OpenAI answers a malformed request with 400
        return error_response(400 if path.startswith(OPENAI_PREFIX) else 422, "invalid_request", message, None, path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None), request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "the server hit an unexpected error", None, request.url.path)
