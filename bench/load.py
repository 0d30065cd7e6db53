"""Concurrent asks against a running server: throughput, time to first token, latency.

    python bench/load.py [--url http://127.0.0.1:8000] [--checkpoint DIR] [--levels 1 4 16 64]

Without --url it starts `python -m server` itself on the tiny checkpoint (written to a
temporary directory unless --checkpoint names one). It uploads a short video, then for
each concurrency N sends N streaming asks at once (fixed-length answers: ignore_eos) and
prints requests/s, p50/p99 time to first token and total latency, errors and rejections.
Last, it times the same question in process (build_inputs + first token) on the same
checkpoint: the difference at N = 1 is the server's overhead (target: under 10 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BODY = {"question": "What happens in the video?", "max_new_tokens": 32, "ignore_eos": True}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def one_ask(client: httpx.AsyncClient, video_id: str) -> tuple[str, float, float, float]:
    """(outcome, time to first token, total, the server's own prefill time)."""
    start = time.perf_counter()
    ttft = prefill = float("nan")
    async with client.stream("POST", f"/videos/{video_id}/ask", json=BODY) as response:
        if response.status_code == 429:
            await response.aread()
            return "rejected", 0.0, 0.0, 0.0
        if response.status_code != 200:
            await response.aread()
            return "error", 0.0, 0.0, 0.0
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
                if event == "token" and ttft != ttft:
                    ttft = time.perf_counter() - start
                if event == "error":
                    return "error", 0.0, 0.0, 0.0
            elif event == "done" and line.startswith("data: "):
                prefill = json.loads(line[6:])["timings"]["prefill_s"]
    return "ok", ttft, time.perf_counter() - start, prefill


async def level(url: str, video_id: str, n: int) -> dict:
    limits = httpx.Limits(max_connections=n + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*(one_ask(client, video_id) for _ in range(n)))
        wall = time.perf_counter() - start
    ok = [r for r in results if r[0] == "ok"]
    return {
        "n": n, "rps": len(ok) / wall,
        "ttft": [r[1] for r in ok], "total": [r[2] for r in ok], "prefill": [r[3] for r in ok],
        "errors": sum(r[0] == "error" for r in results), "rejected": sum(r[0] == "rejected" for r in results),
    }


async def sequential(url: str, video_id: str, count: int) -> list[dict]:
    """Single asks one after another on one kept-alive connection."""
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        results = [await one_ask(client, video_id) for _ in range(count)]
    return [{"ttft": [r[1]], "prefill": [r[3]]} for r in results if r[0] == "ok"]


def upload(url: str, video: Path) -> str:
    with httpx.Client(base_url=url, timeout=120) as client:
        video_id = client.post("/videos", files={"file": ("v.mp4", video.read_bytes())}).json()["id"]
        while client.get(f"/videos/{video_id}").json()["status"] == "processing":
            time.sleep(0.1)
    return video_id


def in_process_ttft(checkpoint: str, video: Path, repeat: int = 20) -> float:
    from models.build import build_inputs
    from models.language.generate import generate_ids
    from models.language.sampling import SamplingParams
    from models.model import load_longvu
    from models.vision.encode import encode_video
    from models.vision.frames import sample_frames

    model = load_longvu(checkpoint, device="cpu")
    encoded = encode_video(model, sample_frames(video))
    params = SamplingParams(max_new_tokens=1, ignore_eos=True)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        built = build_inputs(model, encoded, BODY["question"])
        next(generate_ids(model, built.inputs_embeds, params))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def start_server(checkpoint: str, port: int) -> subprocess.Popen:
    env = dict(os.environ, LONGVU_CHECKPOINT=checkpoint, LONGVU_DEVICE="cpu")
    process = subprocess.Popen([sys.executable, "-m", "server", "--port", str(port), "--log-level", "warning"],
                               env=env, cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url")
    parser.add_argument("--checkpoint")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--singles", type=int, default=30, help="sequential single asks for the overhead")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="longvu-load-"))
    checkpoint = args.checkpoint
    if checkpoint is None:
        from models.tiny import write_tiny_checkpoint

        checkpoint = str(write_tiny_checkpoint(workdir / "tiny"))
    from tests.videos import write_video

    video = write_video(workdir / "load.mp4", seconds=20, fps=2)
    server = None if args.url else start_server(checkpoint, args.port)
    url = args.url or f"http://127.0.0.1:{args.port}"
    try:
        video_id = upload(url, video)
        asyncio.run(level(url, video_id, 2))  # warm-up
        rows = [asyncio.run(level(url, video_id, n)) for n in args.levels]
        # One request tells little: time single requests one after another for the overhead.
        singles = asyncio.run(sequential(url, video_id, args.singles))
    finally:
        if server:
            server.terminate()
            server.wait(30)
    print(f"{'N':>4} {'req/s':>8} {'TTFT p50':>9} {'TTFT p99':>9} {'total p50':>10} {'total p99':>10} "
          f"{'errors':>7} {'rejected':>9}")
    for r in rows:
        print(f"{r['n']:>4} {r['rps']:>8.2f} {percentile(r['ttft'], .5) * 1e3:>7.1f}ms "
              f"{percentile(r['ttft'], .99) * 1e3:>7.1f}ms {percentile(r['total'], .5) * 1e3:>8.1f}ms "
              f"{percentile(r['total'], .99) * 1e3:>8.1f}ms {r['errors']:>7} {r['rejected']:>9}")
    local = in_process_ttft(checkpoint, video)
    sse = statistics.median(ttft for r in singles for ttft in r["ttft"])
    served = statistics.median(ttft - prefill for r in singles for ttft, prefill in zip(r["ttft"], r["prefill"]))
    print(f"time to first token (median of {len(singles)} single asks): over SSE {sse * 1e3:.1f} ms, "
          f"in process {local * 1e3:.1f} ms (ratio {sse / local:.2f}, difference {(sse - local) * 1e3:.1f} ms)")
    print(f"server overhead (client time to first token minus the server's own prefill): {served * 1e3:.1f} ms "
          f"(target < 10 ms)")


if __name__ == "__main__":
    main()
