"""1-fps decoding speed and exactness: our decoder vs a plain PyAV loop vs `ffmpeg -vf fps=1`.

    python bench/decode.py [--minutes 10] [--workdir DIR] [--threads 1 2 4 8]

Writes a 720p, 25 fps video with keyframes every 1 s and every 10 s (each frame shows
its own number as a row of black and white blocks), decodes each at one frame per
second three ways, and prints video-seconds per wall-second and the largest error
between the source time of the frame each picked and the exact one (the first frame at
or after each whole second). Target on a 2-core machine: exact frames, and at least
1.5x the plain PyAV loop on both files.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.ingest.decode import Decoder  # noqa: E402
from server.ingest.probe import probe  # noqa: E402
from server.settings import Settings  # noqa: E402

W, H, FPS, BITS, BLOCK = 1280, 720, 25, 16, 40


def write_numbered_video(path: Path, minutes: float, keyint: int) -> Path:
    xs = np.linspace(0, 255, W, dtype=np.float32)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"g": str(keyint), "keyint_min": str(keyint), "sc_threshold": "0", "preset": "veryfast"}
        for n in range(int(minutes * 60 * FPS)):
            image = np.empty((H, W, 3), np.uint8)
            image[:] = ((xs + n * 3) % 256).astype(np.uint8)[None, :, None]
            for bit in range(BITS):
                image[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255 if n >> bit & 1 else 0
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def frame_number(rgb: np.ndarray) -> int:
    cells = rgb[BLOCK // 4 : 3 * BLOCK // 4, : BITS * BLOCK].reshape(BLOCK // 2, BITS, BLOCK, 3)
    bits = cells[:, :, BLOCK // 4 : 3 * BLOCK // 4].mean(axis=(0, 2, 3)) > 127
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def max_error(numbers: list[int], seconds: int) -> float:
    exact = [math.ceil(k * FPS) for k in range(seconds)]  # first frame at or after each second
    if len(numbers) != len(exact):
        return float("inf")
    return max(abs(n - e) / FPS for n, e in zip(numbers, exact, strict=True))


def ours(path: Path, threads: int) -> list[int]:
    info = probe(path, Settings())
    decoder = Decoder(path, info, threading.BoundedSemaphore(threads), threads, 3600, 10**6)
    return [frame_number(f.rgb) for f in decoder.frames()]


def plain_pyav(path: Path) -> list[int]:
    numbers, next_second = [], 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if frame.time is not None and frame.time >= next_second:
                numbers.append(frame_number(frame.to_ndarray(format="rgb24")))
                next_second = math.floor(frame.time) + 1
    return numbers


def ffmpeg_cli(path: Path) -> list[int]:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vf", "fps=1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True,
    ).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, H, W, 3)
    return [frame_number(f) for f in frames]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="decoder threads, one row each")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:  # compared against it: say so now, not after minutes of work
        sys.exit("bench/decode.py compares against the ffmpeg command: install it (apt-get install ffmpeg)")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="longvu-decode-"))
    workdir.mkdir(parents=True, exist_ok=True)
    seconds = int(args.minutes * 60)
    print(f"{'keyframes':>10} {'decoder':>12} {'video s / s':>12} {'max error s':>12} {'frames':>7}")
    for keyint_s in (1, 10):
        video = workdir / f"numbered_{args.minutes:g}min_k{keyint_s}s.mp4"
        if not video.exists():
            print(f"writing a {args.minutes:g}-minute test video (keyframes every {keyint_s} s)...", flush=True)
            write_numbered_video(video, args.minutes, keyint_s * FPS)
        speeds = {}
        decoders = [(f"ours x{n}", lambda v=video, n=n: ours(v, n)) for n in args.threads]
        for name, run in [*decoders, ("plain PyAV", lambda v=video: plain_pyav(v)),
                          ("ffmpeg fps=1", lambda v=video: ffmpeg_cli(v))]:
            start = time.perf_counter()
            numbers = run()
            speeds[name] = seconds / (time.perf_counter() - start)
            print(f"{keyint_s:>9}s {name:>12} {speeds[name]:>12.1f} {max_error(numbers, seconds):>12.3f} "
                  f"{len(numbers):>7}")
        best = max(speeds[name] for name, _ in decoders)
        print(f"{'':>10} ours (best) / plain PyAV: {best / speeds['plain PyAV']:.2f}x")


if __name__ == "__main__":
    main()
