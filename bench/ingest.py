"""Ingest speed and memory through the server's own path: probe, decoder, read-ahead, encode.

    python bench/ingest.py                      # GPU: released tower shapes, random weights; CPU: tiny
    python bench/ingest.py --minutes 10 60      # how long the 720p videos are
    python bench/ingest.py --tiny               # the tiny checkpoint wherever it runs
    python bench/ingest.py --layers 1           # released widths, one layer a tower (the CPU smoke)

It writes a short 30 fps clip with PyAV and remuxes it into the long videos (no re-encoding),
then ingests each in a child process of its own, so each peak is its own, and prints: seconds
per hour of video, realtime factor, where the time went (waiting on decode, preprocessing,
DINOv2, pruning, SigLIP, SVA, other), the device's busy share, peak GPU memory and peak host
RSS; then the same at 3840x2160 and 7680x4320, for memory. On a GPU the towers have the
released shapes (SigLIP so400m, DINOv2-giant, SVA at 1024), random weights, float16.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

def write_clip(path: Path, seconds: int, width: int, height: int) -> Path:
    """30 fps, a keyframe every 10 s (as encoders ship video: decoding a second's frame then
    costs more than the frame), a new picture every second (so frames survive DINO)."""
    rng = np.random.default_rng(width)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": "300"}
        for i in range(seconds * 30):
            if i % 30 == 0:
                blocks = rng.integers(0, 255, (height // 40 + 1, width // 40 + 1, 3), dtype=np.uint8)
                picture = np.ascontiguousarray(blocks.repeat(40, 0).repeat(40, 1)[:height, :width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def remux_loop(clip: Path, out: Path, minutes: float) -> Path:
    """The clip again and again, timestamps shifted, no re-encoding: a long video in seconds."""
    with av.open(str(clip)) as source, av.open(str(out), "w") as target:
        src = source.streams.video[0]
        dst = target.add_stream_from_template(src)
        packets = [p for p in source.demux(src) if p.pts is not None]
        span = max(p.pts + (p.duration or 0) for p in packets) - min(p.pts for p in packets)
        loops = max(1, round(minutes * 60 / float(span * src.time_base)))
        for k in range(loops):
            for p in packets:
                p.pts, p.dts = p.pts + (span if k else 0), p.dts + (span if k else 0)
                p.stream = dst
                target.mux(p)
    return out


def build_model(tiny: bool, layers: int | None):  # type: ignore[no-untyped-def]
    from bench.released import released_model
    from models.model import load_longvu
    from models.tiny import write_tiny_checkpoint

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        model = load_longvu(str(write_tiny_checkpoint(Path(tmp))), device=device)
    if tiny or (device.type == "cpu" and not layers):
        return model
    return released_model(model, torch.float16 if device.type == "cuda" else torch.float32, layers, llm=False)


def child(video: str, tiny: bool, layers: int | None) -> None:
    from models.vision import encode
    from models.vision.encode import BATCH_BYTES, encode_video
    from server.ingest.decode import Decoder
    from server.ingest.probe import probe
    from server.ingest.read_ahead import read_ahead
    from server.settings import Settings

    model = build_model(tiny, layers)
    cuda = model.device.type == "cuda"
    split: dict[str, float] = defaultdict(float)

    def timed(name: str, fn: Callable) -> Callable:  # type: ignore[type-arg]
        def run(*args, **kwargs):  # type: ignore[no-untyped-def]
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            if cuda:
                torch.cuda.synchronize()
            split[name] += time.perf_counter() - start
            return out
        return run

    towers = model.towers
    towers.encode_dino = timed("DINOv2", towers.encode_dino)
    towers.encode_siglip = timed("SigLIP", towers.encode_siglip)
    model.connector.aggregate = timed("SVA", model.connector.aggregate)
    encode.window_prune = timed("pruning", encode.window_prune)
    for tower in (encode.DINO, encode.SIGLIP):
        object.__setattr__(tower, "resize", timed("preprocessing", tower.resize))
        object.__setattr__(tower, "resize_on", timed("preprocessing", tower.resize_on))

    def waited(frames: Iterator) -> Iterator:  # type: ignore[type-arg]
        while True:
            start = time.perf_counter()
            frame = next(frames, None)
            split["waiting on decode"] += time.perf_counter() - start
            if frame is None:
                return
            yield frame

    import threading

    settings = Settings()
    started = time.perf_counter()
    info = probe(Path(video), settings)
    decoder = Decoder(Path(video), info, threading.BoundedSemaphore(settings.decoder_threads),
                      settings.decoder_threads, 3600 * 4, 10**6)
    encoded = encode_video(model, waited(read_ahead(decoder.frames(), BATCH_BYTES)), duration_s=info.duration_s)
    wall = time.perf_counter() - started
    device_s = sum(v for k, v in split.items() if k in ("DINOv2", "SigLIP", "SVA", "pruning"))
    print(json.dumps({
        "duration_s": info.duration_s, "resolution": f"{info.width}x{info.height}", "wall_s": wall,
        "frames": encoded.frames_sampled, "cached": encoded.frames_cached, "split": dict(split),
        "device_busy": device_s / wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0,
        "peak_reserved_mb": torch.cuda.max_memory_reserved() / 2**20 if cuda else 0.0,
        "device": torch.cuda.get_device_name() if cuda else f"CPU ({'tiny model' if tiny or not layers else 'released widths'})",
    }))


def run(video: Path, tiny: bool, layers: int | None) -> dict:
    flags = (["--tiny"] if tiny else []) + (["--layers", str(layers)] if layers else [])
    out = subprocess.run([sys.executable, __file__, "--child", str(video), *flags], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+")
    parser.add_argument("--memory-minutes", type=float, default=2, help="length of the 4K and 8K videos")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--layers", type=int, help="every transformer stack cut to this many layers (released widths)")
    parser.add_argument("--clip-seconds", type=int, nargs=2, default=(30, 10), metavar=("HD", "UHD"),
                        help="the clip written at 720p, and at 4K and 8K (looped to each length)")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.tiny, args.layers)
        return
    gpu = torch.cuda.is_available()
    minutes = args.minutes or ([10, 60] if gpu else [2, 10])
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="longvu-ingest-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cases = [(1280, 720, m) for m in minutes] + [(3840, 2160, args.memory_minutes), (7680, 4320, args.memory_minutes)]
    print("| video | wall | s per hour | realtime | waiting on decode | preprocessing | DINOv2 | pruning | SigLIP "
          "| SVA | other | device busy | peak GPU | peak GPU reserved | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for width, height, length in cases:
        clip = workdir / f"clip_{width}x{height}.mp4"
        if not clip.exists():
            seconds = args.clip_seconds[0 if height <= 720 else 1]
            print(f"writing a {seconds} s {width}x{height} clip...", file=sys.stderr, flush=True)
            write_clip(clip, seconds, width, height)
        video = remux_loop(clip, workdir / f"video_{width}x{height}_{length:g}min.mp4", length)
        r = run(video, args.tiny, args.layers)
        s = r["split"]
        named = ("waiting on decode", "preprocessing", "DINOv2", "pruning", "SigLIP", "SVA")
        other = r["wall_s"] - sum(s.get(k, 0.0) for k in named)
        cells = " | ".join(f"{s.get(k, 0.0):.1f} s" for k in named)
        print(f"| {length:g} min {r['resolution']} | {r['wall_s']:.1f} s | {r['wall_s'] * 3600 / r['duration_s']:.1f} "
              f"| {r['duration_s'] / r['wall_s']:.1f}x | {cells} | {other:.1f} s | {100 * r['device_busy']:.0f}% "
              f"| {r['peak_gpu_mb']:.0f} MB | {r['peak_reserved_mb']:.0f} MB | {r['peak_rss_mb']:.0f} MB |", flush=True)
    print(f"device: {r['device']}")


if __name__ == "__main__":
    main()
