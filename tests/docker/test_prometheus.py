"""A real Prometheus (Debian's package) scrapes the server with a copy of our prometheus.yml."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.harness import ServerThread, free_port
from tests.videos import write_video

CONFIG = Path(__file__).resolve().parents[2] / "docker" / "prometheus" / "prometheus.yml"


@pytest.fixture()
def prometheus(app_server: ServerThread, tmp_path: Path) -> Iterator[str]:
    exe = shutil.which("prometheus")
    assert exe, "prometheus is installed by .ci/run (apt-get install prometheus)"
    config = yaml.safe_load(CONFIG.read_text())
    config["global"]["scrape_interval"] = "1s"
    job = config["scrape_configs"][0]
    # Our file finds replicas through the compose network alias; here the one server is local.
    del job["dns_sd_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{app_server.port}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [exe, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(10)


def query(url: str, expr: str) -> float | None:
    result = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_sees_an_ask(prometheus: str, app_server: ServerThread, video_dir: Path) -> None:
    video = write_video(video_dir / "prometheus.mp4", seconds=3, fps=2, seed=41)
    with app_server.client() as client:
        video_id = client.post("/videos", files={"file": ("v.mp4", video.read_bytes())}).json()["id"]
        app_server.wait_ready(video_id)
        answer = client.post(f"/videos/{video_id}/ask",
                             json={"question": "What?", "max_new_tokens": 5, "ignore_eos": True, "stream": False})
        assert answer.status_code == 200
    expected = app_server.services.metrics.generated_tokens._value.get()
    assert expected >= 5
    deadline = time.monotonic() + 30
    seen = None
    while time.monotonic() < deadline:
        seen = query(prometheus, "longvu_generated_tokens_total")
        if seen == expected:
            break
        time.sleep(0.5)
    assert seen == expected
    assert query(prometheus, 'up{job="longvu"}') == 1.0
