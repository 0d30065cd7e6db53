"""A live stream and questions together: lag behind the live edge, and how the engine
shares its time, against a real server (one this script starts: the tiny model, CPU).

    python bench/live.py [--seconds 90] [--segment-s 2] [--width 320 --height 180] [--watches 4]

A loopback HLS stream is written in real time (one segment of `--segment-s` stream seconds
every `--segment-s` wall seconds). First questions alone (a 6-second clip, 64 tokens), then
the stream followed while the same questions run. Prints the stream's `lag_s` (stream
seconds available at the source, not yet encoded: the partial 16-second DINO window
included), the engine's ingest share (`longvu_ingest_share`) and the questions' TTFT and
tokens/s, alone and beside the stream. Then (`--watches N`, 0 to skip) the same stream again
with N watches on it (threshold 0: every window alerts every watch): its lag beside the lag
with no watch, and the time from a window's encode to its alerts (`longvu_watch_alert_seconds`:
p50 and p99 as Prometheus estimates them from the buckets, and the mean).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.harness import free_port, wait_until_ok  # noqa: E402
from tests.live import HlsServer  # noqa: E402
from tests.videos import write_video  # noqa: E402

QUESTION = {"question": "What happens?", "max_new_tokens": 64, "ignore_eos": True, "stream": False}


def metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def asks(client: httpx.Client, video_id: str, until: float) -> list[tuple[float, float]]:
    """(TTFT s, tokens/s after the first) of questions asked one after another until `until`."""
    out = []
    while time.monotonic() < until:
        timings = client.post(f"/videos/{video_id}/ask", json=QUESTION).json()["timings"]
        out.append((timings["ttft_s"], 63 / max(1e-9, timings["total_s"] - timings["ttft_s"])))
    return out


def summary(name: str, runs: list[tuple[float, float]]) -> str:
    ttft = sorted(r[0] for r in runs)
    return (f"{name}: {len(runs)} asks, TTFT p50 {1000 * statistics.median(ttft):.0f} ms, "
            f"max {1000 * ttft[-1]:.0f} ms, {statistics.median(r[1] for r in runs):.0f} tok/s per answer")


def histogram(client: httpx.Client, name: str) -> tuple[list[tuple[float, float]], float, float]:
    """A histogram's cumulative buckets (le, count), its sum and count."""
    buckets, total, count = [], 0.0, 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float(le), float(line.split()[-1])))
        elif line.startswith(f"{name}_sum "):
            total = float(line.split()[1])
        elif line.startswith(f"{name}_count "):
            count = float(line.split()[1])
    return buckets, total, count


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus's histogram_quantile: linear within the bucket that holds the rank."""
    rank, below, lower = q * buckets[-1][1], 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-9)
        below, lower = count, le
    return lower


def follow_with_watches(client: httpx.Client, hls: HlsServer, args: argparse.Namespace, watches: int) -> list[float]:
    """A real-time stream followed for `args.seconds` with `watches` watches; its lags."""
    writer, url = hls.stream(segment_s=args.segment_s, every_s=args.segment_s, window=10, width=args.width,
                             height=args.height)
    stream_id = client.post("/streams", json={"url": url}).json()["id"]
    for i in range(watches):
        client.post(f"/videos/{stream_id}/watches", json={"query": f"something happens ({i})", "threshold": 0})
    lags = []
    done = time.monotonic() + args.seconds
    time.sleep(20)  # the first window
    while time.monotonic() < done:
        lags.append(client.get(f"/videos/{stream_id}").json()["lag_s"])
        time.sleep(1)
    writer.stop()
    client.delete(f"/videos/{stream_id}")
    return lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=90, help="wall seconds of the stream followed")
    parser.add_argument("--segment-s", type=int, default=2)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--watches", type=int, default=4, help="watches on the second stream (0: none)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="longvu-live-"))
    port = free_port()
    env = dict(os.environ, LONGVU_DEVICE="cpu", LONGVU_TMP_DIR=str(tmp), LONGVU_URL_ALLOW_PRIVATE="true",
               LONGVU_STREAM_POLL_S="0.25")
    server = subprocess.Popen([sys.executable, "-m", "server", "--port", str(port), "--log-level", "warning"],
                              env=env)
    hls = HlsServer(tmp / "hls")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            wait_until_ok(f"http://127.0.0.1:{port}/readyz", server, 300, "the server")
            clip = write_video(tmp / "clip.mp4", seconds=6, fps=2, seed=7)
            video_id = client.post("/videos", files={"file": ("c.mp4", clip.read_bytes())}).json()["id"]
            while client.get(f"/videos/{video_id}").json()["status"] != "ready":
                time.sleep(0.1)
            print(summary("questions alone", asks(client, video_id, time.monotonic() + 20)), flush=True)

            writer, url = hls.stream(segment_s=args.segment_s, every_s=args.segment_s, window=10,
                                     width=args.width, height=args.height)
            stream_id = client.post("/streams", json={"url": url}).json()["id"]
            lags: list[float] = []
            shares: list[float] = []
            done = time.monotonic() + args.seconds
            beside: list[tuple[float, float]] = []
            worker = threading.Thread(target=lambda: beside.extend(asks(httpx.Client(
                base_url=f"http://127.0.0.1:{port}", timeout=120), video_id, done)))
            time.sleep(20)  # the first window
            worker.start()
            while time.monotonic() < done:
                status = client.get(f"/videos/{stream_id}").json()
                lags.append(status["lag_s"])
                shares.append(metric(client, "longvu_ingest_share"))
                time.sleep(1)
            worker.join()
            writer.stop()
            final = client.get(f"/videos/{stream_id}").json()
            print(summary("questions beside the stream", beside))
            print(f"stream: {writer.written * args.segment_s} s written, {final['seconds_live']:.0f} s listed when "
                  f"last read at {args.width}x{args.height}, "
                  f"{final['frames_cached']} frames cached; lag_s p50 {statistics.median(lags):.1f}, "
                  f"max {max(lags):.1f} (a window is 16 s: the lag runs 0-16 s plus the encode)")
            print(f"engine ingest share while both ran: p50 {statistics.median(shares):.2f}, "
                  f"max {max(shares):.2f} (LONGVU_INGEST_SHARE caps it at 0.3 while answers run)")
            client.delete(f"/videos/{stream_id}")
            if args.watches:
                alone = follow_with_watches(client, hls, args, 0)
                watched = follow_with_watches(client, hls, args, args.watches)
                buckets, total, count = histogram(client, "longvu_watch_alert_seconds")
                print(f"stream with no watch: lag_s p50 {statistics.median(alone):.1f}, max {max(alone):.1f}")
                print(f"stream with {args.watches} watches: lag_s p50 {statistics.median(watched):.1f}, "
                      f"max {max(watched):.1f}; {count:.0f} alerts, encode to alert p50 "
                      f"{quantile(0.5, buckets):.3f} s, p99 {quantile(0.99, buckets):.3f} s, "
                      f"mean {total / max(count, 1):.3f} s")
    finally:
        server.terminate()
        server.wait(30)
        hls.stop()


if __name__ == "__main__":
    main()
