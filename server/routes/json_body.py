"""JSON request bodies parsed and validated off the event loop (a 5 MB chat body costs
milliseconds of parsing that no other request should wait on), with errors that name the
field, and the settings' limits given to the validators as context."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from server.errors import ApiError

M = TypeVar("M", bound=BaseModel)


def is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media in ("", "application/json") or media.endswith("+json")


def json_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A dependency giving the request's body as `model`. No content type is read as JSON
    (a bare client); another one is a 415 that says what to send."""

    async def parse(request: Request) -> M:
        if not is_json(request.headers.get("content-type", "")):
            raise ApiError(415, "unsupported_media_type", "content-type: send the body as application/json",
                           param="content-type")
        raw = await request.body()  # the size limit applies here (413)
        if not raw.strip():
            raise RequestValidationError([{"loc": ("body",), "msg": "a JSON object is required, the body is empty",
                                           "type": "missing_body"}])
        context = {"max_new_tokens": request.app.state.services.settings.max_new_tokens}
        try:
            return await run_in_threadpool(model.model_validate_json, raw, context=context)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None

    return parse


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """The route's request body in the OpenAPI document (the schema itself is registered
    by `server.app.openapi_with`)."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
