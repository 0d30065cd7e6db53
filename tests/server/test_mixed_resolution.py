"""An MPEG-TS recording whose resolution changes mid-stream (two encoders' bytes
concatenated, as broadcast and DVR recordings come): uploaded, it ingests with host and
with device preprocessing (LONGVU_PREPROCESS), to the same features, and is answered."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from models.vision.encode import encode_video
from server.ingest.decode import Decoder
from server.ingest.probe import probe
from server.settings import Settings
from tests.conftest import server_settings
from tests.harness import ServerThread
from tests.server.test_ask import ask
from tests.videos import write_ts_resolution_change


@pytest.fixture(scope="module")
def recording(video_dir: Path) -> Path:
    return write_ts_resolution_change(video_dir / "spliced.ts", seed=71)


@pytest.fixture(scope="module")
def device_server(tiny_checkpoint: Path, upload_dir: Path) -> Iterator[ServerThread]:
    server = ServerThread(server_settings(tiny_checkpoint, None, upload_dir, preprocess="device")).start()
    yield server
    server.stop()


def test_every_frame_comes_at_the_first_size(recording: Path) -> None:
    info = probe(recording, Settings())
    assert info.container == "mpegts" and (info.width, info.height) == (64, 48)
    frames = list(Decoder(recording, info, threading.BoundedSemaphore(2), 2, 60, 1000).frames())
    assert [f.pts_s for f in frames] == [float(s) for s in range(1, 9)]  # both parts, every second
    assert {f.rgb.shape for f in frames} == {(48, 64, 3)}


def test_host_and_device_preprocessing_give_the_same_features(model, recording: Path) -> None:  # type: ignore[no-untyped-def]
    info = probe(recording, Settings())

    def encoded(where: str) -> torch.Tensor:
        frames = Decoder(recording, info, threading.BoundedSemaphore(2), 2, 60, 1000).frames()
        return encode_video(model, frames, preprocess=where).features

    host, device = encoded("host"), encoded("device")
    assert host.shape[0] == 8 and torch.equal(host, device)


def test_the_recording_is_answered_on_both_paths(app_server: ServerThread, device_server: ServerThread,
                                                 recording: Path) -> None:
    answers = []
    for server in (app_server, device_server):
        with server.client() as client:
            created = client.post("/videos", files={"file": ("recording.ts", recording.read_bytes())})
            assert created.status_code in (200, 202), created.text
            video_id = created.json()["id"]
        status = server.wait_ready(video_id)
        assert status["status"] == "ready" and status["width"] == 64 and status["height"] == 48, status
        reply = ask(server, video_id, stream=False, ignore_eos=True)
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 12
        answers.append(reply.json()["answer"])
    assert answers[0] == answers[1]


def test_m2ts_is_sniffed_and_probed(recording: Path, tmp_path: Path) -> None:
    """Blu-ray/AVCHD's M2TS: each 188-byte packet behind a 4-byte timestamp."""
    data = recording.read_bytes()
    m2ts = tmp_path / "recording.m2ts"
    m2ts.write_bytes(b"".join(b"\0\0\0\0" + data[i : i + 188] for i in range(0, len(data), 188)))
    info = probe(m2ts, Settings())
    assert info.container == "mpegts" and info.codec == "h264" and (info.width, info.height) == (64, 48)
