"""Live HLS streams for the tests, written with PyAV while a test runs: every `every_s`
seconds of wall time one segment of `segment_s` stream seconds (MPEG-TS, or fragmented MP4
with an init section) and a sliding-window playlist; served by a loopback HTTP server that
counts the requests."""

from __future__ import annotations

import http.server
import io
import threading
from collections import Counter
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def encode_segment(first_frame: int, frames: int, fps: int, width: int, height: int, fmp4: bool,
                   seed: int) -> bytes:
    """One segment's bytes; its timestamps go on from the previous segment's, as a live
    encoder's do. Every frame differs (random pixels)."""
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    options = {"movflags": "frag_keyframe+empty_moov+default_base_moof"} if fmp4 else {}
    with av.open(out, "w", format="mp4" if fmp4 else "mpegts", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for n in range(frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8),
                                               format="rgb24")
            frame.pts, frame.time_base = first_frame + n, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def split_init(data: bytes) -> tuple[bytes, bytes]:
    """A fragmented MP4 as its init section (ftyp, moov) and its media (moof, mdat, ...)."""
    offset = 0
    while offset < len(data):
        size, kind = int.from_bytes(data[offset : offset + 4], "big"), data[offset + 4 : offset + 8]
        if kind == b"moof":
            return data[:offset], data[offset:]
        offset += size
    raise ValueError("no moof box")


class HlsStream:
    def __init__(self, directory: Path, segment_s: int = 4, fps: int = 2, window: int = 6, every_s: float = 0.5,
                 width: int = 64, height: int = 48, fmp4: bool = False) -> None:
        self.directory, self.segment_s, self.fps, self.window = directory, segment_s, fps, window
        self.every_s, self.width, self.height, self.fmp4 = every_s, width, height, fmp4
        directory.mkdir(parents=True, exist_ok=True)
        self.written = 0
        self.ended = False
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def playlist(self) -> Path:
        return self.directory / "live.m3u8"

    def start(self) -> HlsStream:
        self.write_segment()  # a playlist exists before the stream is followed
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stopping.wait(self.every_s):
            self.write_segment()

    def write_segment(self) -> None:
        n = self.written
        frames = self.segment_s * self.fps
        data = encode_segment(n * frames, frames, self.fps, self.width, self.height, self.fmp4, seed=n)
        name = f"seg{n}.m4s" if self.fmp4 else f"seg{n}.ts"
        if self.fmp4:
            init, data = split_init(data)
            if n == 0:
                (self.directory / "init.mp4").write_bytes(init)
        (self.directory / name).write_bytes(data)
        self.written += 1
        self._write_playlist()

    def _write_playlist(self) -> None:
        first = max(0, self.written - self.window)
        lines = ["#EXTM3U", "#EXT-X-VERSION:7", f"#EXT-X-TARGETDURATION:{self.segment_s}",
                 f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        if self.fmp4:
            lines.append('#EXT-X-MAP:URI="init.mp4"')
        for n in range(first, self.written):
            lines += [f"#EXTINF:{self.segment_s:.3f},", f"seg{n}.m4s" if self.fmp4 else f"seg{n}.ts"]
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        tmp = self.playlist.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.playlist)  # readers never see half a playlist

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join()

    def end(self) -> None:
        """No more segments: the playlist gets EXT-X-ENDLIST."""
        self.stop()
        self.ended = True
        self._write_playlist()

    def remove(self) -> None:
        """The source goes away: the playlist answers 404 from now on."""
        self.stop()
        self.playlist.unlink()


class CountingFiles(http.server.SimpleHTTPRequestHandler):
    requests: Counter[str]

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.requests[self.path.split("/")[1]] += 1  # by the stream's folder
        super().do_GET()


class HlsServer:
    """Serves a folder of streams (one subfolder each) on loopback."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: Counter[str] = Counter()
        handler = type("Handler", (CountingFiles,), {"requests": self.requests})
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), lambda *a, **kw: handler(*a, directory=str(root), **kw))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.count = 0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}/live.m3u8"

    def stream(self, **kwargs: object) -> tuple[HlsStream, str]:
        """A new live stream, started, and its playlist's URL."""
        self.count += 1
        name = f"s{self.count}"
        return HlsStream(self.root / name, **kwargs).start(), self.url(name)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.httpd.shutdown()
