"""Prometheus metrics, all named `longvu_*`, in a registry owned by the app.

Labels never carry user text or video ids: routes are the path templates.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Seconds: video work runs from milliseconds (a cached question) to minutes (an ingest).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
TOKEN_GAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry

        def hist(name: str, doc: str, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> Histogram:
            return Histogram(name, doc, buckets=buckets, registry=r)

        self.http_requests = Counter(
            "longvu_http_requests_total", "HTTP requests by route and status", ["route", "method", "status"], registry=r
        )
        self.queue_wait = hist("longvu_queue_wait_seconds", "Time a request waited for the model worker")
        self.cache_load = hist("longvu_cache_load_seconds", "Time to load and decode a video's cached tokens")
        self.prefill = hist("longvu_prefill_seconds", "Per-question preparation and LLM prefill time")
        self.ttft = hist("longvu_time_to_first_token_seconds", "Time from request to the first answer token")
        self.inter_token = hist("longvu_inter_token_seconds", "Time between answer tokens", TOKEN_GAP_BUCKETS)
        self.ask_latency = hist("longvu_ask_seconds", "End-to-end latency of an ask request")
        self.decode_time = hist("longvu_video_decode_seconds", "Time spent decoding a video's 1-fps frames")
        self.encode_time = hist("longvu_video_encode_seconds", "Time to ingest a video: decode, towers, SVA")
        self.video_seconds = Counter("longvu_video_seconds_ingested_total", "Seconds of video ingested", registry=r)
        self.frames_decoded = Counter("longvu_frames_decoded_total", "1-fps frames decoded", registry=r)
        self.frames_cached = Counter(
            "longvu_frames_cached_total", "Frames whose SVA rows were cached (kept at encode time)", registry=r
        )
        self.frames_kept = Counter(
            "longvu_frames_kept_total", "Deprecated (removed in the next release): longvu_frames_cached_total",
            registry=r,
        )
        self.videos_encoded = Counter(
            "longvu_videos_encoded_total", "Ingest jobs finished by outcome", ["outcome"], registry=r
        )
        self.visual_tokens_before = Counter(
            "longvu_visual_tokens_before_total", "Visual tokens before the query / STC", registry=r
        )
        self.visual_tokens_after = Counter(
            "longvu_visual_tokens_after_total", "Visual tokens given to the LLM", registry=r
        )
        self.generated_tokens = Counter("longvu_generated_tokens_total", "Answer tokens generated", registry=r)
        self.prefix_positions = Counter("longvu_prompt_positions_total", "Prompt positions of local answers and "
                                        "windows, by whether the prefix cache held them (reused) or they were "
                                        "prefilled", ["source"], registry=r)
        self.cache_hits = Counter("longvu_cache_hits_total", "Encoded-video cache hits", ["operation"], registry=r)
        self.cache_misses = Counter("longvu_cache_misses_total", "Encoded-video cache misses", ["operation"], registry=r)
        self.numerical_errors = Counter(
            "longvu_numerical_errors_total", "Answers ended because the model's logits were not finite (an overflow "
            "of the model's dtype)", registry=r)
        self.windows_scored = Counter("longvu_windows_scored_total", "Windows of video scored with a yes/no "
                                      "question (moments)", registry=r)
        self.moment_requests = Counter("longvu_moment_requests_total", "Moments requests started", registry=r)
        self.moments_latency = hist("longvu_moments_seconds", "Time from a moments request to its full list")
        self.chapter_requests = Counter("longvu_chapter_requests_total", "Chapters requests started, by whether "
                                        "the cache held them", ["cached"], registry=r)
        self.chapters_latency = hist("longvu_chapters_seconds", "Time from a chapters request to its last event")
        self.watch_scores = Counter("longvu_watch_scores_total", "Watches scored on a live stream's new window",
                                    registry=r)
        self.watch_alerts = Counter("longvu_watch_alerts_total", "Alerts raised by watches", registry=r)
        self.watch_alert_delay = hist("longvu_watch_alert_seconds", "Time from a live window's encode to its alerts")
        self.webhook_deliveries = Counter("longvu_webhook_deliveries_total", "Alerts sent to webhooks by outcome "
                                          "(delivered, failed, refused, dropped)", ["outcome"], registry=r)
        self.cancelled = Counter("longvu_cancelled_requests_total", "Asks stopped by a client disconnect", registry=r)
        self.rejected = Counter(
            "longvu_rejected_requests_total", "Requests refused for load", ["reason"], registry=r
        )
        self.questions_waiting = Gauge(
            "longvu_questions_waiting", "Questions waiting to join the running batch", registry=r
        )
        self.ingest_steps_waiting = Gauge(
            "longvu_ingest_steps_waiting", "Ingest steps (a batch's tower work) waiting for the model worker",
            registry=r,
        )
        self.queue_depth = Gauge(
            "longvu_queue_depth", "Deprecated (removed in the next release): longvu_questions_waiting", registry=r
        )
        self.running = Gauge("longvu_running_requests", "Asks being answered now", registry=r)
        self.ingest_share = Gauge("longvu_ingest_share", "Fraction of the model worker's recent time spent on "
                                  "ingest (at most LONGVU_INGEST_SHARE while questions are answering)", registry=r)
        self.decode_graphs = Gauge("longvu_decode_graphs", "Decode shapes (batch rows, attention window) that replay "
                                   "a captured CUDA graph, and those that run eagerly", ["state"], registry=r)
        self.decode_graph_fallbacks = Counter(
            "longvu_decode_graph_fallbacks_total", "Decode steps run eagerly because their shape has no CUDA graph "
            "(its capture failed: see the warning naming the shape)", registry=r)
        self.asks_open = Gauge("longvu_asks_open", "Asks not yet ended: waiting, answering, or with their last event "
                               "not yet sent", registry=r)
        self.jobs_in_progress = Gauge("longvu_jobs_in_progress", "Ingest jobs running in this process", registry=r)
        self.streams_live = Gauge("longvu_streams_live", "Live streams followed by this process", registry=r)
        self.stream_lag = Gauge("longvu_stream_lag_seconds", "The most stream seconds a live stream followed here "
                                "has made available and not yet encoded (the partial DINO window included)",
                                registry=r)
        self.staging_bytes = Gauge("longvu_staging_bytes", "Host memory held for staging frame uploads "
                                   "(page-locked on a GPU; bounded)", registry=r)
        self.staging_pageable_steps = Gauge(
            "longvu_staging_pageable_steps", "Tower steps since start-up whose frames were staged in pageable "
            "memory (the staging pool was full: slower uploads)", registry=r)
        self.gpu_memory = Gauge(
            "longvu_gpu_memory_bytes", "GPU memory held by the model process", ["kind"], registry=r
        )
