"""Every metric the dashboard queries is one the server exports."""

import json
import re
from pathlib import Path

from server.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docker" / "grafana" / "dashboards" / "longvu.json"
SUFFIXES = ("_bucket", "_count", "_sum")


def exported() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in SUFFIXES)
        if family.type == "counter":  # labelled counters have no sample until first used
            names.add(family.name + "_total")
    return names


def test_every_panel_queries_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = exported()
    queried = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            found = re.findall(r"\blongvu_[a-z0-9_]+", target["expr"])
            assert found, (panel["title"], target["expr"])
            queried.update(found)
    unknown = queried - names
    assert not unknown, unknown


def test_dashboard_covers_what_operators_watch() -> None:
    text = DASHBOARD.read_text()
    for metric in ("longvu_http_requests_total", "longvu_time_to_first_token_seconds_bucket",
                   "longvu_inter_token_seconds_bucket", "longvu_questions_waiting", "longvu_ingest_steps_waiting",
                   "longvu_rejected_requests_total",
                   "longvu_video_seconds_ingested_total", "longvu_frames_cached_total",
                   "longvu_visual_tokens_after_total", "longvu_cache_hits_total", "longvu_gpu_memory_bytes",
                   "longvu_windows_scored_total", "longvu_moments_seconds_bucket", "longvu_chapters_seconds_bucket"):
        assert metric in text, metric
