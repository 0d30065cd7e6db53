"""The objects that live as long as the app: model, store, jobs, metrics."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.language.sizing import GIB, sizing
from models.model import LongVU, load_longvu
from models.tiny import write_demo_checkpoint
from server.cache.hot import HotVideos
from server.cache.memory_store import MemoryStore
from server.cache.redis_store import RedisStore, connect
from server.cache.store import Keys, Store, pipeline_fingerprint
from server.decoding import Decoding
from server.decoding.local import LocalDecoding
from server.decoding.remote import RemoteDecoding
from server.engine import Engine
from server.ingest.client import GuardedClient
from server.jobs import JobRunner
from server.live.runner import StreamRunner
from server.metrics import Metrics
from server.scoring import Scoring, prompt_scorer
from server.settings import Settings
from server.tenant_limits import TenantLimits
from server.watches.alerts import Score
from server.watches.webhooks import Webhooks

log = logging.getLogger("longvu")
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass
class Services:
    settings: Settings
    model: LongVU
    store: Store
    jobs: JobRunner
    metrics: Metrics
    engine: Engine
    hot: HotVideos
    streams: StreamRunner
    tenant_limits: TenantLimits
    scoring: Scoring  # moments and watches: whether windows can be scored here
    started_at: float = field(default_factory=time.time)
    draining: bool = False  # SIGTERM received: readiness 503, new work refused

    async def drain(self) -> None:
        """The start of a graceful shutdown (SIGTERM): readiness and new asks and uploads
        turn 503 `shutting_down`; ingest jobs and live streams stop and release their leases,
        so another replica can take their videos and streams at once; running answers get LONGVU_SHUTDOWN_GRACE_S
        to finish, then end with a `shutting_down` error event."""
        if self.draining:
            return
        self.draining = True
        log.info("shutting down: running answers have %.0f s to finish", self.settings.shutdown_grace_s)
        self.engine.end_answers_after(self.settings.shutdown_grace_s)
        await self.jobs.shutdown()
        await self.streams.shutdown()


def resolve_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def demo_checkpoint(directory: Path) -> str:
    if not (directory / "config.json").exists():
        write_demo_checkpoint(directory)
    log.warning(
        "=" * 70 + "\nNO MODEL CONFIGURED: serving the tiny random-weight demo checkpoint from %s.\n"
        "Answers are random words. Set LONGVU_CHECKPOINT (and the tower settings) for real answers.\n" + "=" * 70,
        directory,
    )
    return str(directory)


def load_model(settings: Settings) -> LongVU:
    device = resolve_device(settings.device)
    dtype = None if settings.dtype == "auto" else DTYPES[settings.dtype]
    checkpoint = settings.checkpoint or demo_checkpoint(settings.demo_dir)
    model = load_longvu(checkpoint, settings.siglip, settings.dino, device=device, dtype=dtype,
                        weights=settings.llm_weights)
    log.info("LLM weights %s (LONGVU_LLM_WEIGHTS): %.2f GiB", model.weights, module_bytes(model.llm) / GIB)
    return model


def build_store(settings: Settings, model: LongVU) -> Store:
    keys = Keys(model.fingerprint, pipeline_fingerprint(size_quirk=settings.size_quirk, dtype=str(model.dtype),
                                                        sampling=settings.sampling))
    if settings.redis_url:
        return RedisStore(connect(settings.redis_url, settings.redis_cluster), keys, settings.cache_ttl_s)
    log.warning("no LONGVU_REDIS_URL: using the in-process cache (%d bytes); it is lost on restart",
                settings.memory_cache_bytes)
    return MemoryStore(settings.memory_cache_bytes, settings.cache_ttl_s)


def module_bytes(*modules: torch.nn.Module) -> int:
    """Parameters and buffers (int8 weights are buffers)."""
    return sum(t.numel() * t.element_size() for m in modules for t in (*m.parameters(), *m.buffers()))


def loaded_bytes(model: LongVU) -> int:
    return module_bytes(model.llm, model.connector, model.towers.siglip, model.towers.dino)


def kv_slots(settings: Settings, model: LongVU, device_memory: tuple[int, int] | None = None) -> int:
    """The answers that run at once (KV slots). On a GPU, what fits in LONGVU_GPU_MEMORY_FRACTION
    of the card (`device_memory`: its size and what is loaded, read from the device when not
    given), at most LONGVU_MAX_RUNNING when it is set; a card that holds not even one answer
    refuses to start (`NotEnoughMemory`). On the CPU the arithmetic is logged against the host's
    memory and LONGVU_MAX_RUNNING is honoured as given."""
    if device_memory is None and model.device.type == "cuda":
        device_memory = (torch.cuda.get_device_properties(model.device).total_memory,
                         torch.cuda.memory_allocated(model.device))
    on_device = device_memory is not None
    card, held = device_memory or (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), loaded_bytes(model))
    plan = sizing(model.llm.config, model.dtype, card, settings.gpu_memory_fraction, held,
                  model.config.tokenizer_model_max_length, settings.max_new_tokens, settings.prefill_tokens,
                  settings.prefix_cache)
    log.info("KV slots: %s", plan.explain())
    if not on_device:
        return settings.max_running
    plan.check()
    if "max_running" not in settings.model_fields_set:
        log.info("KV slots: %d answers at once (LONGVU_MAX_RUNNING not set: what fits)", plan.slots)
        return plan.slots
    slots = min(plan.slots, settings.max_running)
    log.info("KV slots: %d answers at once (LONGVU_MAX_RUNNING %d)", slots, settings.max_running)
    return slots


def build_decoding(settings: Settings, model: LongVU, metrics: Metrics) -> Decoding:
    """Answers decoded here, or by the OpenAI-compatible server at LONGVU_LLM_URL."""
    if settings.llm_url:
        return RemoteDecoding(settings, model, metrics)
    return LocalDecoding(model, metrics, kv_slots(settings, model), settings.max_new_tokens, settings.prefill_tokens,
                         settings.cuda_graphs, settings.prefix_cache)


def watch_scorer(settings: Settings, engine: Engine, metrics: Metrics, scoring: Scoring) -> Score | None:
    """How live streams score their watches: none when windows cannot be scored here."""
    if scoring.yes_no is None:
        return None
    return prompt_scorer(engine, metrics, scoring.yes_no, settings.max_running)


def build_services(settings: Settings) -> Services:
    model = load_model(settings)
    store = build_store(settings, model)
    metrics = Metrics()
    engine = Engine(model, metrics, build_decoding(settings, model, metrics), settings.max_queue,
                    settings.ingest_share)
    engine.warm_up()
    scoring = Scoring.of(engine.decoding, model.tokenizer)
    if scoring.unavailable is not None:
        log.warning("moments and watches are unavailable: %s", scoring.unavailable)
    jobs = JobRunner(model, store, settings, metrics, engine.run_on_device)
    # Live streams' tower steps are sized by the same timings as the uploads'.
    streams = StreamRunner(model, store, settings, metrics, engine.run_on_device, jobs.tower_steps,
                           watch_scorer(settings, engine, metrics, scoring), Webhooks(GuardedClient(settings), metrics))
    limits = TenantLimits(settings.tenant_max_running, settings.tenant_max_jobs)
    return Services(settings, model, store, jobs, metrics, engine, HotVideos(settings.hot_cache_bytes), streams, limits,
                    scoring)
