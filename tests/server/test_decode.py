"""The fast decoder gives exactly the frames of the plain sequential sampler."""

import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from models.vision.frames import sample_frames
from server.ingest.decode import Decoder, index_packets, plan_runs, sampled_pts
from server.ingest.probe import probe
from server.settings import Settings


def write_gop_video(path: Path, seconds: int, fps: Fraction, gop: int, bframes: int, container: str = "mp4") -> Path:
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": str(bframes),
                          "preset": "ultrafast"}
        for i in range(int(seconds * fps)):
            image = np.full((64, 96, 3), (i * 3) % 256, np.uint8)
            image[:, : (i * 5) % 96] = 200
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


CASES = [
    (Fraction(25), 25, 0, "mp4"),  # a keyframe every second
    (Fraction(25), 250, 3, "mp4"),  # one every ten seconds, B-frames
    (Fraction(30000, 1001), 30, 2, "mp4"),  # NTSC rate
    (Fraction(24), 7, 0, "matroska"),
    (Fraction(5, 2), 3, 0, "mp4"),  # fewer frames than seconds would need
]


@pytest.mark.parametrize(("fps", "gop", "bframes", "container"), CASES)
@pytest.mark.parametrize(("workers", "mode"), [(1, "exact"), (2, "exact"), (2, "reference")])
def test_exact_frames(tmp_path: Path, fps: Fraction, gop: int, bframes: int, container: str, workers: int,
                      mode: str) -> None:
    video = write_gop_video(tmp_path / f"v.{'mkv' if container == 'matroska' else 'mp4'}", 20, fps, gop, bframes,
                            container)
    info = probe(video, Settings())
    decoder = Decoder(video, info, threading.BoundedSemaphore(2), workers, 60, 100, mode)  # type: ignore[arg-type]
    fast = list(decoder.frames())
    plain = list(sample_frames(video, mode))  # type: ignore[arg-type]
    assert [f.pts_s for f in fast] == [f.pts_s for f in plain]
    assert [f.index for f in fast] == list(range(len(plain)))
    for a, b in zip(fast, plain, strict=True):
        assert np.array_equal(a.rgb, b.rgb)


def test_dense_keyframes_skip_most_frames(tmp_path: Path) -> None:
    video = write_gop_video(tmp_path / "dense.mp4", 30, Fraction(25), 25, 0)
    info = probe(video, Settings())
    index = index_packets(video, info)
    runs = plan_runs(index, sampled_pts(index))
    assert len(runs) == 30  # one seek per second, one frame decoded each
    decoder = Decoder(video, info, threading.BoundedSemaphore(1), 1, 60, 100)
    assert len(list(decoder.frames())) == 30
    assert decoder.strategy == "gop-skip" and decoder.frames_decoded_hint == 30


def test_disposable_h264_packets_are_recognised() -> None:
    from server.ingest.decode import h264_length_size, is_disposable_h264

    def nal(header: int, body: bytes = b"\x88\x84") -> bytes:
        return (len(body) + 1).to_bytes(4, "big") + bytes([header]) + body

    sei_then_b_slice = nal(0x06) + nal(0x01)  # SEI, then a slice with nal_ref_idc 0
    referenced_p_slice = nal(0x09) + nal(0x41)  # AUD, then a slice with nal_ref_idc 2
    idr = nal(0x65)
    assert is_disposable_h264(memoryview(sei_then_b_slice), 4)
    assert not is_disposable_h264(memoryview(referenced_p_slice), 4)
    assert not is_disposable_h264(memoryview(idr), 4)
    assert h264_length_size(bytes([1, 0x64, 0, 0x1F, 0xFF])) == 4
    assert h264_length_size(b"\x00\x00\x00\x01") is None  # Annex B: nothing is skipped


def test_each_worker_opens_the_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from server.ingest import decode

    video = write_gop_video(tmp_path / "dense.mp4", 30, Fraction(25), 25, 0)
    info = probe(video, Settings())
    opens: list[Path] = []

    def counted(path: Path, container: str):  # type: ignore[no-untyped-def]
        opens.append(path)
        return decode_open(path, container)

    decode_open = decode.open_video
    monkeypatch.setattr(decode, "open_video", counted)
    frames = list(Decoder(video, info, threading.BoundedSemaphore(2), 2, 60, 100).frames())
    assert len(frames) == 30
    assert len(opens) == 1 + 2  # the packet index, then one demuxer per worker for 30 runs


def test_parallel_runs_hold_a_bounded_number_of_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Long GOPs make long runs; a run's frames wait in a channel bounded in bytes, not in a list."""
    from server.ingest import decode

    video = write_gop_video(tmp_path / "long_gop.mp4", 40, Fraction(25), 250, 0)
    info = probe(video, Settings())
    monkeypatch.setattr(decode, "RUN_BYTES", info.width * info.height * 3)  # one frame per run's channel
    produced = 0
    pictures = decode.Demuxer.pictures

    def counting(self, run, deadline):  # type: ignore[no-untyped-def]
        nonlocal produced
        for item in pictures(self, run, deadline):
            produced += 1
            yield item

    monkeypatch.setattr(decode.Demuxer, "pictures", counting)
    decoder = Decoder(video, info, threading.BoundedSemaphore(2), 2, 60, 100)
    ahead, consumed = 0, 0
    for _ in decoder.frames():
        consumed += 1
        time.sleep(0.02)  # a slow consumer: the workers fill whatever room they have
        ahead = max(ahead, produced - consumed)
    assert decoder.strategy == "parallel" and consumed == 40
    assert ahead <= 2 * 2  # per worker: one frame in its channel, one waiting to go in


def test_a_consumer_that_leaves_stops_the_workers(tmp_path: Path) -> None:
    video = write_gop_video(tmp_path / "long_gop.mp4", 40, Fraction(25), 250, 0)
    info = probe(video, Settings())
    frames = Decoder(video, info, threading.BoundedSemaphore(2), 2, 60, 100).frames()
    next(frames)
    frames.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("longvu-decode")]
