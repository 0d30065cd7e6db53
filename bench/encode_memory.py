"""Peak memory and speed of `encode_video` on a 10- and a 60-minute video (tiny model, CPU).

    python bench/encode_memory.py [--minutes 10 60] [--checkpoint DIR] [--workdir DIR]

Each video is encoded in a child process of its own so that each peak is its own.
Frames change every second (blocks of random colour), so many survive DINO pruning,
which is the case that would hold the most per-frame state. Target: the 60-minute peak
within 25% of the 10-minute peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_blocks_video(path: Path, minutes: int, width: int = 320, height: int = 180) -> Path:
    rng = np.random.default_rng(minutes)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for _ in range(minutes * 60):
            blocks = rng.integers(0, 255, (height // 20, width // 20, 3), dtype=np.uint8)
            image = np.ascontiguousarray(blocks.repeat(20, 0).repeat(20, 1))
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def child(video: str, checkpoint: str) -> None:
    from models.model import load_longvu
    from models.vision.encode import encode_video
    from models.vision.frames import sample_frames

    model = load_longvu(checkpoint, device="cpu")
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    encoded = encode_video(model, sample_frames(video))
    elapsed = time.perf_counter() - start
    print(json.dumps({
        "frames_sampled": encoded.frames_sampled,
        "frames_survived": encoded.frames_survived,
        "frames_cached": encoded.frames_cached,
        "seconds": elapsed,
        "fps": encoded.frames_sampled / elapsed,
        "baseline_mb": baseline,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, nargs="+", default=[10, 60])
    parser.add_argument("--checkpoint")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--child", nargs=2, metavar=("VIDEO", "CHECKPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="longvu-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint
    if checkpoint is None:
        from models.tiny import write_tiny_checkpoint

        checkpoint = str(write_tiny_checkpoint(workdir / "tiny"))
    rows = []
    for minutes in args.minutes:
        video = workdir / f"blocks_{minutes}min.mp4"
        if not video.exists():
            write_blocks_video(video, minutes)
        out = subprocess.run([sys.executable, __file__, "--child", str(video), checkpoint],
                             capture_output=True, text=True, check=True)
        rows.append((minutes, json.loads(out.stdout.strip().splitlines()[-1])))
    print(f"{'video':>8} {'sampled':>8} {'survived':>8} {'cached':>6} {'frames/s':>9} "
          f"{'after load MB':>14} {'peak MB':>8}")
    for minutes, r in rows:
        print(f"{minutes:>5}min {r['frames_sampled']:>8} {r['frames_survived']:>8} {r['frames_cached']:>6} "
              f"{r['fps']:>9.1f} {r['baseline_mb']:>14.0f} {r['peak_mb']:>8.0f}")
    if len(rows) >= 2:
        ratio = rows[-1][1]["peak_mb"] / rows[0][1]["peak_mb"]
        print(f"peak ratio {rows[-1][0]}min / {rows[0][0]}min: {ratio:.3f} (target <= 1.25)")


if __name__ == "__main__":
    main()
