"""Every setting of the server, read from `LONGVU_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.arithmetic import SamplingMode

CommaList = Annotated[list[str], NoDecode]  # "a, b" in the environment


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LONGVU_", extra="ignore")

    # Model. No checkpoint: the tiny random demo model, generated into demo_dir.
    checkpoint: str | None = None
    siglip: str | None = None
    dino: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    demo_dir: Path = Path.home() / ".cache" / "longvu" / "tiny"
    size_quirk: bool = True
    sampling: SamplingMode = "exact"  # 1-fps rule: ours, or the reference's index stepping

    # Cache. No Redis URL: an in-process LRU bounded in bytes.
    redis_url: str | None = None
    memory_cache_bytes: int = 2 << 30
    hot_cache_bytes: int = 2 << 30  # decoded videos kept in process in front of the store
    cache_ttl_s: int = 7 * 24 * 3600
    lease_s: float = 30.0

    # Intake limits.
    max_upload_bytes: int = 4 << 30
    max_duration_s: float = 4 * 3600.0
    max_width: int = 7680
    max_height: int = 4320
    max_streams: int = 16
    decode_timeout_s: float = 3600.0
    decoder_threads: int = Field(2, ge=1)
    tmp_dir: Path | None = None
    max_spool_bytes: int = 16 << 30  # uploads on disk at once (received or waiting for a job); 503 beyond
    max_jobs: int = Field(4, ge=1)  # ingest jobs running at once in this process; 503 beyond
    body_read_timeout_s: float = Field(60.0, gt=0)  # longest wait for the next piece of a request body (408)

    # URL intake.
    url_allow_private: bool = False
    url_allowed_hosts: CommaList = []
    url_connect_timeout_s: float = 10.0
    url_read_timeout_s: float = 30.0
    url_total_timeout_s: float = 600.0
    url_max_redirects: int = 5

    # Asking.
    max_queue: int = Field(64, ge=0)  # questions waiting for the model; beyond it: 429
    max_running: int = Field(16, ge=1)  # questions answering at once: KV slots, the decode batch
    max_new_tokens: int = Field(4096, ge=1, le=32768)  # the most a question may ask for; sizes the KV slots
    prefill_chunk: int = Field(512, ge=16)  # prompt positions per prefill step: bounds the stall of others
    cuda_graphs: bool = True  # decode steps as captured CUDA graphs (GPU only)
    sse_ping_s: float = 15.0

    # OpenAI-compatible endpoint. No name: the checkpoint's directory or hub id.
    served_model_name: str | None = None
    chat_ingest_wait_s: float = Field(900.0, gt=0)  # how long a chat request waits for its video's ingest

    # Every endpoint but /healthz, /readyz and /metrics needs one of these as a Bearer token.
    api_keys: CommaList = []

    @field_validator("url_allowed_hosts", "api_keys", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value
