"""GET /healthz, /readyz, /metrics."""

from __future__ import annotations

import torch
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server.errors import ApiError
from server.routes.deps import services
from server.services import Services

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> dict:
    svc: Services | None = getattr(request.app.state, "services", None)
    if svc is None:
        raise ApiError(503, "not_ready", "the model is still loading")
    if svc.draining:
        raise ApiError(503, "shutting_down", "the server is shutting down")
    if svc.engine.dead is not None:
        raise ApiError(503, "worker_dead", svc.engine.dead)
    if svc.engine.decoding.unavailable is not None:
        raise ApiError(503, "llm_unavailable", svc.engine.decoding.unavailable)
    if not await svc.store.ping():
        raise ApiError(503, "cache_unavailable", "the cache is unreachable")
    return {"status": "ready", "model": svc.model.config.model_type, "fingerprint": svc.model.fingerprint,
            "llm_weights": svc.model.weights}


@router.get("/metrics")
async def metrics(svc: Services = Depends(services)) -> Response:
    if svc.model.device.type == "cuda":
        svc.metrics.gpu_memory.labels("allocated").set(torch.cuda.memory_allocated(svc.model.device))
        svc.metrics.gpu_memory.labels("reserved").set(torch.cuda.memory_reserved(svc.model.device))
    staging = svc.model.staging
    svc.metrics.staging_bytes.set(staging.held_bytes)
    svc.metrics.staging_pageable_steps.set(staging.pageable_steps)
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
