"""Request and response models of `/v1/chat/completions` and `/v1/models`, following
OpenAI's Chat Completions schema as vLLM serves it, with `video_url` content parts."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from server.schemas import MAX_NEW_TOKENS_DOC, within_token_limit

LONGVU_SCHEME = "longvu://"  # a video already uploaded, named by its id: longvu://<sha256>
MAX_TEXT = 64_000  # characters of one text part, or of a message given as a string
UNSUPPORTED_PARTS = {
    "image_url": "images are not supported, send a video_url part",
    "input_audio": "audio is not supported, send a video_url part",
    "audio_url": "audio is not supported, send a video_url part",
    "file": "files are not supported, send a video_url part",
}


class TextPart(BaseModel):
    type: Literal["text"]
    text: str = Field(max_length=MAX_TEXT)


class VideoUrl(BaseModel):
    url: str = Field(min_length=1, description="https://..., data:video/<type>;base64,..., or longvu://<sha256>")


class VideoPart(BaseModel):
    type: Literal["video_url"]
    video_url: VideoUrl


ContentPart = Annotated[TextPart | VideoPart, Field(discriminator="type")]


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: Annotated[str, Field(max_length=MAX_TEXT)] | list[ContentPart] | None = None
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _supported_parts(cls, content: object) -> object:
        """Say what to send instead of a part we do not take, not which tags exist."""
        if isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind in UNSUPPORTED_PARTS:
                    raise PydanticCustomError("unsupported_part", UNSUPPORTED_PARTS[kind])
        return content

    def parts(self) -> list[TextPart | VideoPart]:
        if isinstance(self.content, list):
            return list(self.content)
        return [TextPart.model_construct(type="text", text=self.content or "")]  # validated as the content


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """Fields OpenAI defines that we do not implement (tools, logprobs, penalties, ...)
    are ignored, as by vLLM; `n` must be 1."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(None, ge=1, description=MAX_NEW_TOKENS_DOC)
    max_completion_tokens: int | None = Field(None, ge=1, description=MAX_NEW_TOKENS_DOC)
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 (greedy, as LongVU) unless given")
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0, le=1_000_000)  # vLLM's extra field
    repetition_penalty: float | None = Field(None, gt=0.0, le=10.0)  # vLLM's extra field
    ignore_eos: bool = False  # vLLM's extra field: generate max_tokens whatever comes (benchmarks)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    stop: str | list[str] | None = None
    n: Literal[1] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    # Extra fields: ask about a part of the video only.
    start_s: float | None = Field(None, ge=0.0, le=1e7)
    end_s: float | None = Field(None, ge=0.0, le=1e7)
    last_s: float | None = Field(None, gt=0.0, le=1e7, description="the last seconds before now (a live stream's edge)")

    _tokens = field_validator("max_tokens", "max_completion_tokens")(within_token_limit)

    @property
    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return [s for s in stops if s]


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=completion_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: CompletionUsage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "longvu-server"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
