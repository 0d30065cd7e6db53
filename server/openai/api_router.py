"""Routes of the OpenAI-compatible API; the logic is in `server.openai.serving`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from server.openai import serving
from server.openai.protocol import ChatCompletion, ChatCompletionRequest, ModelList
from server.routes.deps import services
from server.routes.json_body import json_body, openapi_body
from server.services import Services
from server.tenants import request_tenant

router = APIRouter(prefix="/v1")


@router.get("/models", response_model=ModelList)
async def models(svc: Services = Depends(services)) -> ModelList:
    return serving.list_models(svc)


@router.post("/chat/completions", response_model=ChatCompletion, responses={
    200: {"content": {"text/event-stream": {}}, "description": "with `stream: true`, `chat.completion.chunk` "
          "events, then `data: [DONE]`"}}, openapi_extra=openapi_body(ChatCompletionRequest))
async def chat_completions(request: Request,  # type: ignore[no-untyped-def]
                           body: ChatCompletionRequest = Depends(json_body(ChatCompletionRequest)),
                           svc: Services = Depends(services), tenant: str = Depends(request_tenant)):
    return await serving.create_chat_completion(svc, body, request, tenant)
