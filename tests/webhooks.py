"""A loopback webhook receiver for tests: records each POST (headers, body) and answers
with the status the test sets."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in list(self.received)]

    def wait(self, done: Callable[[list[dict]], bool], timeout: float = 60) -> None:
        """Until `done(the bodies received)`; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not done(self.bodies()):
            assert time.monotonic() < deadline, self.bodies()
            time.sleep(0.1)

    def verified(self, secret: str) -> list[bytes]:
        """The bodies received, each checked against its signature (as a receiver should)."""
        bodies = []
        for headers, body in list(self.received):
            mac = hmac.new(secret.encode(), headers["x-longvu-timestamp"].encode() + b"." + body, hashlib.sha256)
            assert hmac.compare_digest(headers["x-longvu-signature"], f"sha256={mac.hexdigest()}")
            bodies.append(body)
        return bodies

    def stop(self) -> None:
        self.httpd.shutdown()
