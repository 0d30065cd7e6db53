"""Every setting of the server, read from `LONGVU_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.arithmetic import SamplingMode

CommaList = Annotated[list[str], NoDecode]  # "a, b" in the environment


class Settings(BaseSettings):
    """Each field is LONGVU_<NAME>; its description is what `python -m server --help` prints."""

    model_config = SettingsConfigDict(env_prefix="LONGVU_", extra="ignore")

    # Model. No checkpoint: the tiny random demo model, generated into demo_dir.
    checkpoint: str | None = Field(None, description="LongVU checkpoint directory or hub id (none: the tiny demo)")
    siglip: str | None = Field(None, description="SigLIP tower (siglip/ beside the checkpoint, else the hub's)")
    dino: str | None = Field(None, description="DINOv2 tower (dino/ beside the checkpoint, else the hub's)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto, cpu or cuda")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="auto (fp16 on a GPU, fp32 on CPU), bfloat16, float16 or float32")
    demo_dir: Path = Field(Path.home() / ".cache" / "longvu" / "tiny",
                           description="where the demo checkpoint is generated")
    size_quirk: bool = Field(True, description="the reference's frame-size quirk (README, fidelity)")
    sampling: SamplingMode = Field("exact", description="1-fps rule: exact (each whole second) or reference")
    preprocess: Literal["auto", "host", "device"] = Field(
        "auto", description="where frames are padded, resized and normalised for the towers: auto (device on a "
        "GPU, host on CPU), host (PIL; for GPUs with weak float64, such as L4 and A10) or device (the same bits)")

    llm_weights: Literal["float", "int8"] = Field(
        "float", description="the language model's linear layers: float (the model dtype) or int8 (weight-only, "
        "per output channel: half the bytes per token and on the card; the towers stay float)")

    # Answers. No LLM URL: decoded here, on our device.
    llm_url: str | None = Field(None, description="an OpenAI-compatible base URL ending in /v1 (e.g. vLLM "
                                "started with --enable-prompt-embeds) that generates the answers from our "
                                "inputs_embeds (none: decoded here)")
    llm_model: str | None = Field(None, description="the model to ask at LONGVU_LLM_URL (none: the only one "
                                  "it serves)")
    llm_timeout_s: float = Field(60.0, gt=0, description="the longest wait for the LLM server's next bytes "
                                 "(connecting, first token, each token)")

    # Cache. No Redis URL: an in-process LRU bounded in bytes.
    redis_url: str | None = Field(None, description="e.g. redis://redis:6379/0 (none: in-process cache)")
    redis_cluster: bool = Field(False, description="the Redis URL names a node of a Redis Cluster")
    memory_cache_bytes: int = Field(2 << 30, description="bound of the in-process cache (no Redis)")
    hot_cache_bytes: int = Field(2 << 30, description="decoded videos kept in process in front of the store")
    cache_ttl_s: int = Field(7 * 24 * 3600, description="lifetime of cached tokens and statuses")
    lease_s: float = Field(30.0, description="ingest job lease; a crashed job shows as failed after it")

    # Intake limits.
    max_upload_bytes: int = Field(4 << 30, description="upload and download limit (413)")
    max_duration_s: float = Field(4 * 3600.0, description="longest video (413)")
    max_width: int = Field(7680, description="widest picture (413)")
    max_height: int = Field(4320, description="tallest picture (413)")
    max_streams: int = Field(16, description="most streams in a container (415)")
    decode_timeout_s: float = Field(3600.0, description="wall-time budget of one decode")
    decoder_threads: int = Field(2, ge=1, description="decoder threads in the whole process")
    tmp_dir: Path | None = Field(None, description="where uploads are spooled (none: the system's temp dir)")
    max_spool_bytes: int = Field(16 << 30, description="uploads on disk at once, received or waiting for a job "
                                 "(503 beyond)")
    max_jobs: int = Field(4, ge=1, description="ingest jobs running at once in this process (503 beyond)")
    body_read_timeout_s: float = Field(60.0, gt=0, description="longest wait for the next piece of a request "
                                       "body (408)")
    header_timeout_s: float = Field(10.0, gt=0, description="longest wait for a request's line and headers "
                                    "(408, connection closed)")
    max_connections: int = Field(1000, ge=1, description="open HTTP connections per process (503 and closed "
                                 "beyond)")

    # URL intake.
    url_allow_private: bool = Field(False, description="fetch from loopback and private addresses (never "
                                    "link-local or metadata)")
    url_allowed_hosts: CommaList = Field([], description="comma-separated host allow-list (none: any host)")
    url_connect_timeout_s: float = Field(10.0, description="URL fetch connect timeout")
    url_read_timeout_s: float = Field(30.0, description="URL fetch read timeout")
    url_total_timeout_s: float = Field(600.0, description="URL fetch total timeout")
    url_max_redirects: int = Field(5, description="redirects followed, each hop checked again")

    # Live streams (POST /streams): HLS through the guarded client; RTSP, RTMP and SRT only
    # to the hosts listed, since FFmpeg does that network I/O itself, out of the guard's sight.
    max_streams_live: int = Field(4, ge=0, description="live streams followed at once by this process (503 beyond)")
    stream_allowed_hosts: CommaList = Field([], description="comma-separated hosts that rtsp://, rtmp:// and "
                                            "srt:// streams may come from (none: those schemes are refused)")
    stream_max_retention_s: float = Field(86400.0, gt=0, description="the longest retention_s a stream may ask for")
    stream_poll_s: float = Field(1.0, gt=0, description="the most time between reloads of a live playlist (half "
                                 "its target duration when that is shorter; never under 0.5 s)")
    stream_gone_s: float = Field(30.0, gt=0, description="how long a stream may fail or stall before it is "
                                 "`failed`")

    # Asking.
    max_queue: int = Field(64, ge=0, description="questions waiting for the model (429 beyond)")
    max_moment_windows: int = Field(1024, ge=1, description="the most windows one moments request may score (422 "
                                    "beyond)")
    max_chapters: int = Field(256, ge=1, description="the most chapters one chapters request may caption (422 "
                              "beyond)")
    max_watches: int = Field(8, ge=1, description="the most watches one live stream may have (409 beyond)")
    gpu_memory_fraction: float = Field(0.9, gt=0, le=1, description="the part of the GPU's memory the server "
                                       "sizes its KV slots to (on a GPU, LONGVU_MAX_RUNNING is what fits, at most "
                                       "the value set)")
    max_running: int = Field(16, ge=1, description="questions answering at once: KV slots, the decode batch")
    max_new_tokens: int = Field(4096, ge=1, le=32768, description="the most tokens a question may ask for "
                                "(sizes the KV slots)")
    prefix_cache: int = Field(2, ge=0, description="prompts kept on the device with their keys and values, so "
                              "that a question about a video asked about lately skips prefilling the video (0: "
                              "none; each takes a prompt's KV, sized with the slots)")
    prefill_tokens: int = Field(8192, ge=16, description="prompt positions one prefill pass may pack while "
                                "answers are running: bounds how long they stall (with none running, "
                                "a prompt is never cut)")
    ingest_share: float = Field(0.3, gt=0, le=1, description="the most of the model worker's time ingest may "
                                "take while questions are answering (all of it when none are)")
    ingest_step_ms: float = Field(25.0, gt=0, description="device time one ingest step through a tower aims "
                                  "at (steps are sized by measured time): a running answer waits for at most "
                                  "one")
    cpu_threads: int | None = Field(None, ge=1, description="torch's threads for the model's work (none: "
                                    "torch's default); fewer leave cores to the event loop that streams tokens")
    cuda_graphs: bool = Field(True, description="decode steps as captured CUDA graphs (GPU only)")
    sse_ping_s: float = Field(15.0, description="keep-alive comment interval on idle streams")
    shutdown_grace_s: float = Field(30.0, ge=0, description="on SIGTERM, how long running answers may go on "
                                    "before they end with a shutting_down error")

    # OpenAI-compatible endpoint.
    served_model_name: str | None = Field(None, description="model id of the OpenAI-compatible API (none: the "
                                          "checkpoint's name)")
    chat_ingest_wait_s: float = Field(900.0, gt=0, description="how long a chat request waits for its video's "
                                      "ingest (504 after)")

    # Every endpoint but /healthz, /readyz, /metrics and the page needs one of these as a Bearer token.
    api_keys: CommaList = Field([], description="comma-separated keys for Authorization: Bearer (none: open); "
                                "`tenant:key` puts the key's videos and streams in that tenant's namespace")
    tenant_max_running: int | None = Field(None, ge=1, description="answers (waiting or running) one tenant may "
                                           "have at once in this process (429 beyond; none: no limit)")
    tenant_max_jobs: int | None = Field(None, ge=1, description="ingest jobs one tenant may have at once in this "
                                        "process (429 beyond; none: no limit)")

    @field_validator("url_allowed_hosts", "stream_allowed_hosts", "api_keys", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value
