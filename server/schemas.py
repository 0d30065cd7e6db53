"""Request and response bodies of the HTTP API (SPEC section 2)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from models.arithmetic import Regime

RENAMED = "deprecated, removed in the next release: the same as "


def fill_renamed(data: Any, renames: dict[str, str]) -> Any:
    """Each renamed field and its old name carry the same value, whichever one was given
    (statuses cached by the previous release hold the old names only)."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for new, old in renames.items():
        value = data.get(new, data.get(old))
        data[new] = data[old] = value
    return data


MAX_NEW_TOKENS_DOC = "at most LONGVU_MAX_NEW_TOKENS (4096 unless configured)"


def within_token_limit(value: int | None, info: ValidationInfo) -> int | None:
    """One limit for the tokens a question may ask for: the server's setting, given as
    validation context by the route."""
    limit = (info.context or {}).get("max_new_tokens")
    if value is not None and limit is not None and value > limit:
        raise PydanticCustomError("too_many_tokens", "at most {limit} tokens on this server (LONGVU_MAX_NEW_TOKENS)",
                                  {"limit": limit})
    return value


class VideoUrl(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=4096)


class StreamRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=4096, description="an HLS playlist (http, https: live, event or "
                     "ended; a master playlist's variant nearest 720p is followed), or rtsp, rtmp or srt to a "
                     "host in LONGVU_STREAM_ALLOWED_HOSTS")
    retention_s: float = Field(3600.0, gt=0, description="seconds of the stream kept for questions (at most "
                               "LONGVU_STREAM_MAX_RETENTION_S)")


class VideoStatus(BaseModel):
    id: str
    status: Literal["processing", "live", "ready", "failed"]
    kind: Literal["video", "stream"] = "video"
    progress: float = 0.0
    stage: Literal["queued", "decoding", "encoding"] | None = None  # while processing
    frames_decoded: int | None = None
    frames_encoded: int | None = None
    frames_survived: int | None = None
    seconds_done: float | None = None
    eta_s: float | None = None
    error: str | None = None
    error_code: str | None = None
    seconds_live: float | None = Field(None, description="a stream's live edge: its seconds so far on its own "
                                       "clock (since its first segment), as its source lists them")
    lag_s: float | None = Field(None, description="stream seconds available at the source and not yet encoded "
                                "(a window is encoded once its 16 s are complete)")
    retention_s: float | None = Field(None, description="a stream's seconds kept for questions")
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    frames_sampled: int | None = None
    frames_cached: int | None = Field(None, description="frames kept at encode time, whose SVA rows the cache holds "
                                      "(every sampled frame when the video was too short to prune for any question)")
    rows_cached: int | None = Field(None, description="SVA rows the cache holds, 144 a frame; the visual tokens a "
                                    "question gets are in its `compression`")
    frames_kept: int | None = Field(None, deprecated=True, description=RENAMED + "frames_cached")
    tokens_cached: int | None = Field(None, deprecated=True, description=RENAMED + "rows_cached")
    bytes: int | None = None
    decode_strategy: str | None = None
    created_at: float | None = None
    updated_at: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return fill_renamed(data, {"frames_cached": "frames_kept", "rows_cached": "tokens_cached"})


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=32_000)
    max_new_tokens: int = Field(128, ge=1, description=MAX_NEW_TOKENS_DOC)
    temperature: float = Field(0.0, ge=0.0, le=5.0, description="0: greedy, as LongVU answers")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="default: the checkpoint's generation config")
    top_k: int | None = Field(None, ge=0, le=1_000_000, description="default: the checkpoint's; 0 turns it off")
    repetition_penalty: float | None = Field(None, gt=0.0, le=10.0, description="default: the checkpoint's")
    stream: bool = True
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    ignore_eos: bool = False
    start_s: float | None = Field(None, ge=0.0, le=1e7, description="ask about the video from this second on")
    end_s: float | None = Field(None, ge=0.0, le=1e7, description="... up to this second (inclusive)")
    last_s: float | None = Field(None, gt=0.0, le=1e7, description="ask about the last seconds before now (a live "
                                 "stream's edge, a video's end)")

    _tokens = field_validator("max_new_tokens")(within_token_limit)


class Usage(BaseModel):
    prompt_tokens: int = Field(description="positions given to the LLM: text and visual tokens")
    text_tokens: int
    visual_tokens: int
    completion_tokens: int


class Timings(BaseModel):
    queue_wait_s: float = Field(description="from submission to admission into the running batch")
    cache_load_s: float
    prefill_s: float = Field(description="from admission to the first token: inputs, chunked prefill")
    ttft_s: float | None = Field(None, description="from the request to the first token; none if no token came")
    total_s: float


class Compression(BaseModel):
    frames_sampled: int
    frames_survived_dino: int
    frames_used: int = Field(description="frames this question's answer saw")
    frames_kept: int = Field(deprecated=True, description=RENAMED + "frames_used")
    regime: Regime
    stc_applied: bool
    highres_frames: int
    visual_tokens_before: int
    visual_tokens_after: int
    seconds: list[float] = Field(description="presentation times of the frames the answer saw")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return fill_renamed(data, {"frames_used": "frames_kept"})


class Answer(BaseModel):
    """The `done` event of a streamed ask, and the body of a non-streamed one."""

    answer: str
    finish_reason: Literal["stop", "length"]
    usage: Usage
    timings: Timings
    compression: Compression


class ErrorDetail(BaseModel):
    code: str
    message: str
    param: str | None = Field(None, description="the request field the error is about, if one is")


class ErrorBody(BaseModel):
    error: ErrorDetail


RANGE_DOCS = {
    "start_s": "score from this second on", "end_s": "... up to this second (exclusive: windows tile "
    "[start_s, end_s))", "last_s": "the last seconds before the video's end (a live stream's edge)"}


class MomentsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=4_000, description="what to find, e.g. 'a dog catches a frisbee'")
    window_s: float = Field(16.0, ge=1.0, le=3600.0, description="seconds of video one score covers")
    stride_s: float | None = Field(None, ge=1.0, le=3600.0, description="seconds between windows' starts "
                                   "(default: window_s, so the windows tile the range)")
    start_s: float | None = Field(None, ge=0.0, le=1e7, description=RANGE_DOCS["start_s"])
    end_s: float | None = Field(None, ge=0.0, le=1e7, description=RANGE_DOCS["end_s"])
    last_s: float | None = Field(None, gt=0.0, le=1e7, description=RANGE_DOCS["last_s"])
    top_k: int = Field(5, ge=1, le=100_000, description="moments in the `done` event, best first")
    stream: bool = True


class Moment(BaseModel):
    """One window and its score: P(yes) / (P(yes) + P(no)) for the first answer token."""

    start_s: float
    end_s: float
    score: float
    seconds: list[float] = Field(description="the times of the frames the window's prompt holds (a window whose "
                                 "frames were all pruned holds the kept frame standing for its seconds)")


class MomentsTimings(BaseModel):
    cache_load_s: float
    first_moment_s: float | None = Field(description="from the request to the first window scored")
    total_s: float


class MomentsResult(BaseModel):
    """The `done` event of a streamed moments request, and the body of a non-streamed one."""

    moments: list[Moment] = Field(description="the top_k windows by score, best first")
    windows: int = Field(description="windows scored: every window of the range")
    timings: MomentsTimings


class ChaptersRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    every_s: float | None = Field(None, ge=1.0, le=1e7, description="seconds a chapter (default: the video's length "
                                  "over 12, at least 30 s)")
    max_new_tokens: int = Field(48, ge=1, le=1024, description="the longest caption of one chapter, in tokens")
    summary: bool = Field(True, description="a summary of the whole video from the chapters' captions")
    stream: bool = True


class Chapter(BaseModel):
    index: int
    start_s: float
    end_s: float
    text: str


class ChaptersTimings(BaseModel):
    chapters_s: float = Field(description="from the request to the last caption")
    total_s: float


class ChaptersResult(BaseModel):
    """The `done` event of a streamed chapters request, and the body of a non-streamed one."""

    chapters: list[Chapter]
    summary: str | None
    cached: bool = Field(description="read from the cache: no model call")
    timings: ChaptersTimings


class Webhook(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=4096, description="http(s); the URL intake's address policy applies")
    secret: str = Field(min_length=16, max_length=256, description="signs each delivery (X-LongVU-Signature); "
                        "never shown again")


class WatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=4_000, description="what to be told about, e.g. 'a truck at the dock'")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="a window scoring at least this alerts")
    window_s: float = Field(16.0, ge=1.0, le=300.0, description="the latest seconds each score covers")
    cooldown_s: float = Field(0.0, ge=0.0, le=1e7, description="stream seconds after an alert before the next")
    webhook: Webhook | None = None


class Watch(BaseModel):
    id: str
    query: str
    threshold: float
    window_s: float
    cooldown_s: float
    webhook_url: str | None = Field(None, description="where alerts are POSTed (the secret is never shown)")
    created_at: float


class WatchList(BaseModel):
    watches: list[Watch]


class Alert(BaseModel):
    """An `alert` event on /videos/{id}/events, and a webhook's body."""

    watch_id: str
    query: str
    start_s: float
    end_s: float
    score: float
    at: float = Field(description="when it was raised, seconds since the epoch")
