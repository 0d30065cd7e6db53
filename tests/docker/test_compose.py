"""docker-compose.yml is valid compose and everything it points at exists (no engine needed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_matches_the_compose_spec() -> None:
    exe = shutil.which("check-jsonschema")
    assert exe, "check-jsonschema is a dev dependency"
    result = subprocess.run([exe, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_contexts_and_mounted_files_exist() -> None:
    services = compose()["services"]
    for name, service in services.items():
        build = service.get("build")
        if build:
            context = ROOT / build["context"]
            assert context.is_dir(), name
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source}"


def test_app_services_are_complete() -> None:
    services = compose()["services"]
    assert services["longvu"]["profiles"] == ["gpu"] and services["longvu-cpu"]["profiles"] == ["cpu"]
    gpu = services["longvu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    for name in ("longvu", "longvu-cpu"):
        app = services[name]
        assert app["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "/healthz" in " ".join(app["healthcheck"]["test"])
        assert app["environment"]["LONGVU_REDIS_URL"] == "redis://redis:6379/0"
        assert any(v.endswith(":/data/hf") for v in app["volumes"])
        assert "longvu" in app["networks"]["default"]["aliases"]
    redis = " ".join(services["redis"]["command"])
    assert "--maxmemory-policy allkeys-lru" in redis and '--save ' in redis
    assert (ROOT / ".env").read_text().strip() == "COMPOSE_PROFILES=gpu"


def test_grafana_provisioning_points_at_the_mounted_files() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2][::-1] for v in grafana["volumes"] if v.startswith("./"))
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090" and datasource["uid"] == "prometheus"
    provider = yaml.safe_load((provisioning / "dashboards" / "longvu.yml").read_text())["providers"][0]
    dashboards = ROOT / mounts[provider["options"]["path"]]
    dashboard = json.loads((dashboards / "longvu.json").read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"]}
    assert uids == {"prometheus"}


def test_prometheus_scrapes_the_app_port() -> None:
    config = yaml.safe_load((ROOT / "docker" / "prometheus" / "prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["dns_sd_configs"][0]["names"] == ["longvu"] and job["dns_sd_configs"][0]["port"] == 8000
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(r"--port\", \"8000\"", dockerfile) and "USER longvu" in dockerfile
