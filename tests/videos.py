"""Test videos written with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def write_video(
    path: Path,
    seconds: float,
    fps: float = 2,
    width: int = 64,
    height: int = 48,
    static: bool = False,
    codec: str = "libx264",
    seed: int = 0,
) -> Path:
    """A video whose frames change every frame (or never, with `static`)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=_rate(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(round(seconds * fps)):
            image = base if static else rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _rate(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1000)


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = int(16000 * seconds)
        for start in range(0, samples, 1024):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, min(1024, samples - start)), dtype=np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_zero_frame_video(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=2)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    return path


def png_bytes(width: int = 4, height: int = 4) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80\x40\x20" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def write_ts_resolution_change(path: Path, seconds: int = 4, fps: int = 2,
                               sizes: tuple[tuple[int, int], ...] = ((64, 48), (96, 64)), seed: int = 0) -> Path:
    """An MPEG-TS recording whose resolution changes mid-stream: each size written by an
    encoder of its own and the bytes concatenated, as a DVR splices broadcasts; timestamps
    go on across the splice."""
    rng = np.random.default_rng(seed)
    parts = []
    for k, (width, height) in enumerate(sizes):
        part = path.with_suffix(f".part{k}.ts")
        with av.open(str(part), "w", format="mpegts") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"bframes": "0"}  # pts = dts: the parts' timestamps do not overlap
            for i in range(seconds * fps):
                frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8),
                                                   format="rgb24")
                frame.pts = k * (seconds + 1) * fps + i  # the muxer starts the first part 1 s in
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        parts.append(part.read_bytes())
        part.unlink()
    path.write_bytes(b"".join(parts))
    return path
