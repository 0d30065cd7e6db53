"""JSON errors: `{"error": {"code", "message", "param"}}` with a fitting status, never a stack
trace; a validation error names the field it is about (`param`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.ingest import errors as ingest

log = logging.getLogger("longvu.errors")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.param = status, code, message, headers, param


class CacheUnavailable(ApiError):
    def __init__(self, detail: str = "the cache is unreachable; try again shortly") -> None:
        super().__init__(503, "cache_unavailable", detail, {"Retry-After": "5"})


class ShuttingDown(ApiError):
    def __init__(self) -> None:
        super().__init__(503, "shutting_down", "the server is shutting down; try another replica",
                         {"Retry-After": "1", "Connection": "close"})


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
    ingest.BadPlaylist: (422, None),
    ingest.StreamGone: (422, None),
    ingest.SpoolFull: (503, 30),
    ingest.DiskFull: (503, 60),
}


def as_api_error(exc: ApiError | ingest.IngestError) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    status, retry_after = INGEST_STATUS.get(type(exc), (422, None))
    return ApiError(status, exc.code, str(exc), {"Retry-After": str(retry_after)} if retry_after else None)


def failure(exc: Exception, code: str, message: str, log: logging.Logger) -> tuple[str, str]:
    """The code and message a background task's failure leaves in a status: the error's
    own for the ones we raise; for anything else `code` and `message` with the exception's
    type, and the traceback in the log."""
    if isinstance(exc, (ApiError, ingest.IngestError)):
        error = as_api_error(exc)
        return error.code, error.message
    log.exception(message, exc_info=exc)
    return code, f"{message} ({type(exc).__name__})"


OPENAI_PREFIX = "/v1/"
_OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                 429: "rate_limit_error"}


def openai_type(status: int) -> str:
    return _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, code: str, message: str, path: str, param: str | None = None) -> dict:
    """Our shape, or OpenAI's (`message`, `type`, `param`, `code`) under /v1/."""
    if path.startswith(OPENAI_PREFIX):
        return {"error": {"message": message, "type": openai_type(status), "param": param, "code": code}}
    return {"error": {"code": code, "message": message, "param": param}}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   path: str = "", param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, code, message, path, param), status_code=status, headers=headers)


_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
               401: "unauthorized", 416: "range_not_satisfiable"}
_UNION_BRANCHES = {"str", "constrained-str", "int", "float", "bool", "list", "dict", "none"}


def field_path(loc: Sequence[int | str]) -> str:
    """`messages.0.content` from pydantic's location: no `body` prefix, no union branch
    names (`str`, `list[...]`), a tagged union's tag not repeated (`text.text`)."""
    parts: list[str] = []
    for item in loc:
        name = str(item)
        if (not parts and name == "body") or "[" in name or name in _UNION_BRANCHES:
            continue
        if parts and parts[-1] == name:
            continue
        parts.append(name)
    return ".".join(parts)


def most_telling(errors: Sequence[Any]) -> Any:
    """Of a union's failures, the one about the value's content, not the branches whose type
    did not match (a 1 MB string is "too long", not "not a list")."""
    telling = [e for e in errors if not str(e.get("type", "")).endswith("_type")]
    return max(telling, key=lambda e: len(e.get("loc", ())), default=errors[0])


def validation_error(errors: Sequence[Any]) -> tuple[str | None, str]:
    """The field an invalid body is about, and a message that names it."""
    if not errors:
        return None, "the request body is invalid"
    first = most_telling(errors)
    param = field_path(first.get("loc", ())) or None
    msg = str(first.get("msg", "invalid"))
    if first.get("type") == "missing":
        msg = "this field is required"
    return param, f"{param}: {msg}" if param else f"the request body: {msg}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    @app.exception_handler(ingest.IngestError)
    async def _api(request: Request, exc: ApiError | ingest.IngestError) -> JSONResponse:
        error = as_api_error(exc)
        return error_response(error.status, error.code, error.message, error.headers, request.url.path, error.param)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        param, message = validation_error(exc.errors())
        path = request.url.path  # OpenAI answers a malformed request with 400
        return error_response(400 if path.startswith(OPENAI_PREFIX) else 422, "invalid_request", message, None, path,
                              param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None), request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "the server hit an unexpected error", None, request.url.path)


class JsonErrors:
    """Every error the app can answer is JSON: an error response with another body (the
    static files' range errors, a framework's plain-text refusal) is rewritten in our shape,
    its status and headers kept."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "HEAD":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        text = b""

        async def rewriting_send(message: Message) -> None:
            nonlocal held, text
            if message["type"] == "http.response.start":
                content_type = MutableHeaders(raw=list(message["headers"])).get("content-type", "")
                if message["status"] >= 400 and not content_type.startswith("application/json"):
                    held = message  # sent with the JSON body once the original body is read
                    return
            if held is None:
                await send(message)
                return
            text += message.get("body", b"")
            if message.get("more_body", False):
                return
            status = held["status"]
            detail = text.decode("utf-8", "replace").strip()[:500] or HTTPStatus(status).phrase
            body = json.dumps(error_body(status, _HTTP_CODES.get(status, "http_error"), detail, scope["path"])).encode()
            headers = MutableHeaders(raw=list(held["headers"]))
            headers["content-type"] = "application/json"
            headers["content-length"] = str(len(body))
            await send({**held, "headers": headers.raw})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewriting_send)
