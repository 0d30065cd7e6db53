"""Soak: many asks and ingests in a row against a running server; RSS must stay flat.

    python bench/soak.py                       # starts a server (tiny model) and soaks it
    python bench/soak.py --url http://host:8000  # soaks a running server (RSS only if local: --pid)

Prints the server's resident memory at checkpoints and the error count. Traffic goes to the
server given (by default one this script starts on 127.0.0.1), bounded in count and time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import free_port  # noqa: E402
from tests.videos import write_video  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url")
    parser.add_argument("--pid", type=int, help="the server's process id, to read its RSS")
    parser.add_argument("--asks", type=int, default=1000)
    parser.add_argument("--ingests", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=3600)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="longvu-soak-"))
    process = None
    url, pid = args.url, args.pid
    if url is None:
        port = free_port()
        env = dict(os.environ, LONGVU_DEVICE="cpu", LONGVU_DEMO_DIR=str(tmp / "tiny"), LONGVU_TMP_DIR=str(tmp))
        process = subprocess.Popen([sys.executable, "-m", "server", "--port", str(port), "--log-level", "warning"],
                                   env=env)
        url, pid = f"http://127.0.0.1:{port}", process.pid
    errors = 0
    started = time.monotonic()
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() - started < 300, "the server did not start"
                time.sleep(0.5)
            rss = lambda: f"{rss_mb(pid):.0f} MB" if pid else "n/a"  # noqa: E731
            print(f"ready; RSS {rss()}", flush=True)
            ids = []
            for i in range(args.ingests):
                video = write_video(tmp / "soak.mp4", seconds=8, fps=2, width=64, height=48, seed=1000 + i)
                response = client.post("/videos", files={"file": ("v.mp4", video.read_bytes())})
                if response.status_code not in (200, 202):
                    errors += 1
                    continue
                video_id = response.json()["id"]
                while (status := client.get(f"/videos/{video_id}").json()["status"]) == "processing":
                    time.sleep(0.05)
                errors += status != "ready"
                ids.append(video_id)
                if (i + 1) % 10 == 0:
                    print(f"ingests {i + 1:4d}: RSS {rss()}, errors {errors}", flush=True)
            for i in range(args.asks):
                body = {"question": f"What happens? ({i})", "max_new_tokens": 16, "stream": i % 2 == 0}
                response = client.post(f"/videos/{ids[i % len(ids)]}/ask", json=body)
                errors += response.status_code != 200 or ("event: done" not in response.text and body["stream"])
                if (i + 1) % 200 == 0:
                    print(f"asks    {i + 1:4d}: RSS {rss()}, errors {errors}", flush=True)
                if time.monotonic() - started > args.max_seconds:
                    print("time limit reached")
                    break
            for video_id in ids:
                errors += client.delete(f"/videos/{video_id}").status_code != 204
            print(f"done in {time.monotonic() - started:.0f} s: RSS {rss()}, errors {errors}")
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
