"""Request and response bodies of the HTTP API (SPEC section 2)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class VideoUrl(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=4096)


class VideoStatus(BaseModel):
    id: str
    status: Literal["processing", "ready", "failed"]
    progress: float = 0.0
    error: str | None = None
    error_code: str | None = None
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    frames_sampled: int | None = None
    frames_kept: int | None = None
    tokens_cached: int | None = None
    bytes: int | None = None
    decode_strategy: str | None = None
    created_at: float | None = None
    updated_at: float | None = None


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=32_000)
    max_new_tokens: int = Field(128, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stream: bool = True
    seed: int | None = None
    ignore_eos: bool = False
