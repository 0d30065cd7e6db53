"""A hostile corpus: uploads, URLs, ask bodies, ids, headers and keys an attacker would try.

Every case must end in a clean JSON 4xx (or 5xx with Retry-After where the server is the
limit), leave the temp dir empty and Redis as it was, leave another video's cached tokens
untouched, and leave the server ready.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
from redis.cluster import RedisCluster

from server.cache.memory_store import MemoryStore
from tests.conftest import server_settings
from tests.harness import ServerThread
from tests.server.test_ask import upload_ready
from tests.videos import write_video

ZERO_ID = "0" * 64


@dataclass
class Case:
    name: str
    method: str
    path: str  # "{video}" is a ready video's id
    statuses: tuple[int, ...]
    kwargs: dict = field(default_factory=dict)
    code: str | None = None
    param: str | None = None  # the field the error must name
    says: str | None = None  # words the message must hold


def multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"XyZ") -> dict:
    body = b"".join(b"--" + boundary + b"\r\n" + head + b"\r\n\r\n" + data + b"\r\n" for head, data in parts)
    body += b"--" + boundary + b"--\r\n"
    return {"content": body, "headers": {"content-type": "multipart/form-data; boundary=" + boundary.decode()}}


FILE = b'Content-Disposition: form-data; name="file"; filename="v.mp4"'


def upload_cases() -> list[Case]:
    bodies = {
        "random": bytes(range(256)) * 32, "text": b"just text\n" * 100, "html": b"<html><body>hi</body></html>",
        "json": b'{"url": "http://169.254.169.254/"}', "zip": b"PK\x03\x04" + bytes(200), "gif": b"GIF89a" + bytes(100),
        "pdf": b"%PDF-1.4\n" + bytes(300), "elf": b"\x7fELF" + bytes(300), "ftyp only": b"\x00\x00\x00\x18ftypmp42",
        "mkv header only": b"\x1a\x45\xdf\xa3" + bytes(60), "riff avi header": b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(50),
        "hls": b"#EXTM3U\n#EXTINF:1,\nhttp://169.254.169.254/latest\n", "ffconcat": b"ffconcat version 1.0\nfile 'x'\n",
        "sdp": b"v=0\no=- 0 0 IN IP4 127.0.0.1\nm=video 5004 RTP/AVP 96\n", "concat protocol": b"concat:/etc/passwd|x",
        "utf16 text": "video".encode("utf-16") * 50, "nul bytes": bytes(5000),
    }
    cases = [Case(f"upload {name}", "POST", "/videos", (415,), {"files": {"file": ("v.mp4", data)}})
             for name, data in bodies.items()]
    cases += [
        Case("upload empty", "POST", "/videos", (400,), {"files": {"file": ("v.mp4", b"")}}, "empty_video"),
        Case("upload no file part", "POST", "/videos", (400,), {"files": {"other": ("v.mp4", b"abc")}}),
        Case("upload two file parts", "POST", "/videos", (400,), multipart([(FILE, b"a"), (FILE, b"b")])),
        Case("upload no boundary", "POST", "/videos", (400,),
             {"content": b"abc", "headers": {"content-type": "multipart/form-data"}}),
        Case("upload wrong boundary", "POST", "/videos", (400,), {
            **multipart([(FILE, b"abc")], b"AAA"), "headers": {"content-type": "multipart/form-data; boundary=BBB"}}),
        Case("upload huge part header", "POST", "/videos", (400,),
             multipart([(b"X-" + b"a" * 20_000 + b": 1\r\n" + FILE, b"abc")])),
        Case("upload huge header value", "POST", "/videos", (400,),
             multipart([(b'Content-Disposition: form-data; name="file"; filename="' + b"v" * 20_000 + b'"', b"a")])),
        Case("upload declared too large", "POST", "/videos", (413,),
             {"raw": (b"content-type: multipart/form-data; boundary=X\r\ncontent-length: %d" % (1 << 40), b"x")},
             "too_large"),
        Case("upload over size", "POST", "/videos", (413,),
             {"files": {"file": ("v.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(4 << 20))}}, "too_large"),
        Case("upload text/plain", "POST", "/videos", (400,), {"content": b"abc", "headers": {"content-type": "text/plain"}}),
        Case("upload no content type", "POST", "/videos", (400,), {"content": b"abc"}),
        Case("upload truncated multipart", "POST", "/videos", (400, 415),
             {"content": b"--XyZ\r\n" + FILE + b"\r\n\r\nabc", "headers": {
                 "content-type": "multipart/form-data; boundary=XyZ"}}),
    ]
    return cases


METADATA_HOSTS = ["169.254.169.254", "[fd00:ec2::254]", "100.100.100.200", "192.0.0.192", "[2002:a9fe:a9fe::1]",
                  "[::ffff:169.254.169.254]", "[64:ff9b::a9fe:a9fe]", "169.254.170.2", "[fe80::1]", "0.0.0.0",
                  "[::]", "224.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1", "[2001:db8::1]"]
LOOPBACK_HOSTS = ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "[::1]", "localhost",
                  "[::ffff:127.0.0.1]", "0010.0010.0010.0010", "10.0.0.1", "192.168.0.1", "172.16.0.1",
                  "[fd12::1]", "100.64.0.1", "127.0.0.1.nip.invalid", "localhost.", "[0:0:0:0:0:ffff:7f00:1]"]


def url_cases() -> list[Case]:
    def url(u: str, statuses: tuple[int, ...] = (422,), code: str | None = None) -> Case:
        return Case(f"url {u[:60]}", "POST", "/videos", statuses, {"json": {"url": u}}, code)

    cases = [url(f"http://{h}/latest/meta-data/") for h in METADATA_HOSTS]
    cases += [url(f"http://{h}:6379/") for h in LOOPBACK_HOSTS]
    cases += [url(u) for u in (
        "ftp://127.0.0.1/v.mp4", "file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "data:video/mp4;base64,AAAA",
        "javascript:alert(1)", "dict://127.0.0.1:6379/info", "http:///nohost", "http://[::1/v.mp4", "http://:80/",
        "http://user:pass@127.0.0.1/v.mp4", "http://127.0.0.1:0/v.mp4", "http://127.0.0.1:99999/v.mp4",
        "//127.0.0.1/v.mp4", "127.0.0.1/v.mp4", "http://%31%32%37.0.0.1/", "https://127.0.0.1\\@example.com/",
        "http://[::ffff:a9fe:a9fe]/", "ws://127.0.0.1/", "http://0/", "http://[::ffff:0:0]/")]
    cases += [url("http://example.com/" + "a" * 5000), url(""), url("   ")]
    bodies = {
        "deep nesting": "[" * 8000 + "]" * 8000, "deep object": '{"url":' * 3000 + "1" + "}" * 3000,
        "url number": '{"url": 1}', "url null": '{"url": null}', "array": "[]", "string": '"http://x"',
        "extra field": '{"url": "https://example.com/v.mp4", "x": 1}', "not json": "{nope", "empty": "",
        "invalid utf8": b'{"url": "\xff\xfe"}', "nan": '{"url": NaN}',
    }
    cases += [Case(f"url body {name}", "POST", "/videos", (413, 422),
                   {"content": body if isinstance(body, bytes) else body.encode(),
                    "headers": {"content-type": "application/json"}}) for name, body in bodies.items()]
    cases.append(Case("url body too large", "POST", "/videos", (413,),
                      {"content": b'{"url": "' + b"a" * 300_000 + b'"}', "headers": {"content-type": "application/json"}}))
    return cases


def ask_cases() -> list[Case]:
    def body(name: str, payload: object, statuses: tuple[int, ...] = (422,), code: str | None = None,
             param: str | None = None, says: str | None = None, content_type: str = "application/json") -> Case:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return Case(f"ask {name}", "POST", "/videos/{video}/ask", statuses,
                    {"content": raw, "headers": {"content-type": content_type}}, code, param, says)

    q = "What?"
    cases = [
        body("huge seed", {"question": q, "seed": 1180591620717411303424}),
        body("negative seed", {"question": q, "seed": -1}),
        body("float seed", {"question": q, "seed": 1.5}),
        body("zero tokens", {"question": q, "max_new_tokens": 0}),
        body("negative tokens", {"question": q, "max_new_tokens": -5}),
        body("too many tokens", {"question": q, "max_new_tokens": 10**9}, param="max_new_tokens", says="at most 4096"),
        body("tokens over the setting", {"question": q, "max_new_tokens": 5000}, param="max_new_tokens",
             says="at most 4096"),
        body("string tokens", {"question": q, "max_new_tokens": "many"}),
        body("temperature -1", {"question": q, "temperature": -1}),
        body("temperature 6", {"question": q, "temperature": 6}),
        body("temperature nan", b'{"question": "What?", "temperature": NaN}'),
        body("temperature inf", b'{"question": "What?", "temperature": Infinity}'),
        body("top_p 0", {"question": q, "top_p": 0}),
        body("top_p 1.5", {"question": q, "top_p": 1.5}),
        body("empty question", {"question": ""}),
        body("null question", {"question": None}),
        body("list question", {"question": ["a", "b"]}),
        body("object question", {"question": {"a": 1}}),
        body("no question", {}, param="question", says="question: this field is required"),
        body("too long question", {"question": "x" * 40_000}),
        body("question too long for the context", {"question": "é" * 6000}, code="question_too_long"),
        body("extra field", {"question": q, "admin": True}),
        body("stream string", {"question": q, "stream": "maybe"}),
        body("negative start", {"question": q, "start_s": -1}),
        body("huge end", {"question": q, "end_s": 1e12}),
        body("string start", {"question": q, "start_s": "soon"}),
        body("inverted range", {"question": q, "start_s": 5, "end_s": 1}, code="invalid_range"),
        body("text/plain body", {"question": q}, (415,), "unsupported_media_type", "content-type",
             content_type="text/plain"),
        body("form body", b"question=What", (415,), "unsupported_media_type", "content-type",
             content_type="application/x-www-form-urlencoded"),
        body("empty range", {"question": q, "start_s": 500, "end_s": 600}, code="empty_range"),
        body("deep nesting", b"[" * 8000 + b"]" * 8000, (400, 422)),
        body("deep object", b'{"question":' * 3000 + b'"x"' + b"}" * 3000, (400, 422)),
        body("not json", b"{question", (400, 422), says="Invalid JSON"),
        body("empty body", b"", says="the body is empty"),
        body("array body", [1, 2]),
        body("invalid utf8", b'{"question": "\xff\xfe"}', (400, 422)),
        body("body too large", {"question": "x" * 400_000}, (413,), "too_large"),
        Case("ask chunked body too large", "POST", "/videos/{video}/ask", (413,),
             {"raw": (b"content-type: application/json\r\ntransfer-encoding: chunked", chunked(300_000))}, "too_large"),
        Case("ask declared 32 MB", "POST", "/videos/{video}/ask", (413,),
             {"raw": (b"content-type: application/json\r\ncontent-length: %d" % (32 << 20), b"{}")}, "too_large"),
        Case("ask unknown video", "POST", f"/videos/{ZERO_ID}/ask", (404,), {"json": {"question": q}}),
        Case("ask GET", "GET", "/videos/{video}/ask", (405,)),
    ]
    return cases


BAD_IDS = ["0" * 64 + "%0A", "abc", "0" * 63, "0" * 65, "G" * 64, "A" * 64, "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%00" + "0" * 61,
           "0" * 64 + "%00", "ü" * 64, "0" * 64 + "%2F..", " " * 64, "0x" + "0" * 62, "-1", "null"]


def id_cases() -> list[Case]:
    cases = []
    for bad in BAD_IDS:
        cases.append(Case(f"GET id {bad[:20]}", "GET", f"/videos/{bad}", (404,)))
        cases.append(Case(f"DELETE id {bad[:20]}", "DELETE", f"/videos/{bad}", (404, 405)))
        cases.append(Case(f"ask id {bad[:20]}", "POST", f"/videos/{bad}/ask", (404, 405), {"json": {"question": "q"}}))
        cases.append(Case(f"events id {bad[:20]}", "GET", f"/videos/{bad}/events", (404,)))
    cases.append(Case("DELETE unknown", "DELETE", f"/videos/{ZERO_ID}", (404,)))
    # A real video's id with a final newline (`$` in a pattern matches before one).
    cases += [Case("GET id newline", "GET", "/videos/{video}%0A", (404,)),
              Case("ask id newline", "POST", "/videos/{video}%0A/ask", (404,), {"json": {"question": "q"}}),
              Case("events id newline", "GET", "/videos/{video}%0A/events", (404,)),
              Case("DELETE id newline", "DELETE", "/videos/{video}%0A", (404,))]
    return cases


def header_cases() -> list[Case]:
    return [
        Case("huge header", "GET", f"/videos/{ZERO_ID}", (431,), {"headers": {"x-big": "a" * 40_000}}),
        Case("many headers", "GET", f"/videos/{ZERO_ID}", (431,),
             {"headers": {f"x-h{i}": "v" for i in range(150)}}),
        Case("ask declared length lies", "POST", "/videos/{video}/ask", (413,),
             {"raw": (b"content-type: application/json\r\ncontent-length: %d" % 10**15, b"{}")}),
        Case("chat huge body", "POST", "/v1/chat/completions", (413,),
             {"raw": (b"content-type: application/json\r\ncontent-length: %d" % (1 << 40), b"{}")}),
        Case("chat not json", "POST", "/v1/chat/completions", (400,),
             {"content": b"{", "headers": {"content-type": "application/json"}}),
        Case("chat deep nesting", "POST", "/v1/chat/completions", (400,),
             {"content": b"[" * 8000 + b"]" * 8000, "headers": {"content-type": "application/json"}}),
        Case("chat metadata url", "POST", "/v1/chat/completions", (404, 422), {"json": {
            "model": "x", "messages": [{"role": "user", "content": [
                {"type": "video_url", "video_url": {"url": "http://169.254.169.254/"}}]}]}}),
        Case("chat 1 MB string message", "POST", "/v1/chat/completions", (400,), {"json": {
            "model": "x", "messages": [{"role": "user", "content": "x" * (1 << 20)}]}}, "invalid_request",
            "messages.0.content", "at most 64000 characters"),
        Case("chat image part", "POST", "/v1/chat/completions", (400,), {"json": {
            "model": "x", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}}, "invalid_request",
            "messages.0.content", "images are not supported, send a video_url part"),
        Case("chat no messages", "POST", "/v1/chat/completions", (400,), {"json": {"model": "x"}},
             "invalid_request", "messages"),
        Case("chat too many tokens", "POST", "/v1/chat/completions", (400,), {"json": {
            "model": "x", "max_tokens": 999_999, "messages": [{"role": "user", "content": "hi"}]}}, "invalid_request",
            "max_tokens", "at most 4096"),
        Case("chat chunked body too large", "POST", "/v1/chat/completions", (413,),
             {"raw": (b"content-type: application/json\r\ntransfer-encoding: chunked", chunked(6 << 20))},
             "too_large"),
        Case("static range inverted", "GET", "/static/app.js", (400, 416), {"headers": {"range": "bytes=10-5"}}),
        Case("static range not a number", "GET", "/static/app.js", (400, 416), {"headers": {"range": "bytes=abc"}}),
        Case("static range other unit", "GET", "/static/app.js", (400, 416), {"headers": {"range": "items=0-1"}}),
        Case("static range past the end", "GET", "/static/app.js", (416,),
             {"headers": {"range": "bytes=999999-"}}, "range_not_satisfiable"),
        Case("static missing file", "GET", "/static/nope.js", (404,)),
        Case("unknown route", "GET", "/admin", (404,)),
        Case("method not allowed", "PUT", "/videos", (405,)),
    ]


def chunked(size: int, piece: int = 64 * 1024) -> bytes:
    """A chunked body of `size` bytes (no Content-Length: the limit must still hold)."""
    out, left = b"", size
    while left > 0:
        n = min(piece, left)
        out += b"%x\r\n" % n + b"a" * n + b"\r\n"
        left -= n
    return out + b"0\r\n\r\n"


def raw_request(port: int, method: str, path: str, head: bytes, body: bytes) -> tuple[int, dict, bytes]:
    """A request whose headers lie (a declared length no client library would send)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n".encode() + head
                     + b"\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_part, _, payload = data.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, payload


CASES = upload_cases() + url_cases() + ask_cases() + id_cases() + header_cases()


def test_the_corpus_is_large() -> None:
    assert len(CASES) >= 150, len(CASES)


@dataclass
class Target:
    """A server under attack, with a view of its store: what keys it holds, and a digest of
    a bystander video's cached tokens."""

    server: ServerThread
    keys: Callable[[], set]
    tokens_digest: Callable[[str], bytes]
    bystander: str = ""


def redis_target(server: ServerThread, url: str) -> Target:
    client = redis.Redis.from_url(url)
    tokens_key = server.services.store.keys.tokens  # type: ignore[attr-defined]
    return Target(server, lambda: set(client.keys("*")),
                  lambda video_id: hashlib.sha256(client.get(tokens_key(video_id))).digest())


def memory_target(server: ServerThread) -> Target:
    store = server.services.store
    assert isinstance(store, MemoryStore)
    return Target(server, lambda: {*store._tokens, *(f"status:{k}" for k in store._status),
                                   *(f"lease:{k}" for k in store._leases)},
                  lambda video_id: hashlib.sha256(store._tokens[video_id][0]).digest())


@pytest.fixture(scope="module")
def embedded_server(tiny_checkpoint: Path, upload_dir: Path) -> Iterator[ServerThread]:
    server = ServerThread(server_settings(tiny_checkpoint, None, upload_dir)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster_server(tiny_checkpoint: Path, redis_cluster, upload_dir: Path) -> Iterator[ServerThread]:  # type: ignore[no-untyped-def]
    server = ServerThread(server_settings(tiny_checkpoint, redis_cluster.url, upload_dir, redis_cluster=True)).start()
    yield server
    server.stop()


def cluster_target(server: ServerThread, url: str) -> Target:
    client = RedisCluster.from_url(url)
    tokens_key = server.services.store.keys.tokens  # type: ignore[attr-defined]
    return Target(server, lambda: set(client.keys("*", target_nodes=RedisCluster.PRIMARIES)),
                  lambda video_id: hashlib.sha256(client.get(tokens_key(video_id))).digest())


@pytest.fixture(scope="module", params=["redis", "embedded", "cluster"])
def target(request, app_server: ServerThread, redis_server, video_dir: Path) -> Target:  # type: ignore[no-untyped-def]
    """The same corpus against real Redis, the embedded cache and a Redis Cluster, each with
    another user's video whose cached tokens must survive every case."""
    if request.param == "redis":
        target = redis_target(app_server, redis_server.url)
    elif request.param == "cluster":
        target = cluster_target(request.getfixturevalue("cluster_server"),
                                request.getfixturevalue("redis_cluster").url)
    else:
        target = memory_target(request.getfixturevalue("embedded_server"))
    target.bystander = upload_ready(target.server, write_video(video_dir / "bystander.mp4", seconds=3, fps=2,
                                                               seed=71))
    return target


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hostile_input(case: Case, target: Target, upload_dir: Path) -> None:
    server, video_id = target.server, target.bystander
    digest, keys_before = target.tokens_digest(video_id), target.keys()
    path = case.path.replace("{video}", video_id)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        if "raw" in case.kwargs:
            status, headers, body = raw_request(server.port, case.method, path, *case.kwargs["raw"])
        else:
            response = client.request(case.method, path, **case.kwargs)
            status, headers, body = response.status_code, response.headers, response.content
        assert status in case.statuses, (status, body[:300])
        error = json.loads(body)["error"]
        assert isinstance(error["message"], str) and error["message"] and isinstance(error["code"], str)
        if case.code:
            assert error["code"] == case.code
        if case.param:
            assert error["param"] == case.param, error
        if case.says:
            assert case.says in error["message"], error
        if status >= 500:
            assert headers.get("retry-after")
        assert client.get("/readyz").status_code == 200
        assert client.get(f"/videos/{video_id}").json()["status"] == "ready"
    assert list(upload_dir.iterdir()) == []
    assert target.keys() - keys_before == set()  # nothing left behind (another test's job may end meanwhile)
    assert target.tokens_digest(video_id) == digest


NON_ASCII_KEY = "ключ-🔑-secret"


@pytest.fixture(scope="module")
def keyed_server(tiny_checkpoint: Path, redis_server, upload_dir: Path) -> Iterator[ServerThread]:  # type: ignore[no-untyped-def]
    server = ServerThread(server_settings(tiny_checkpoint, redis_server.url, upload_dir,
                                          api_keys=[NON_ASCII_KEY, "plain-key"])).start()
    yield server
    server.stop()


KEY_CASES = [
    ("no header", {}, 401), ("wrong key", {"authorization": b"Bearer nope"}, 401),
    ("basic scheme", {"authorization": b"Basic plain-key"}, 401), ("empty bearer", {"authorization": b"Bearer"}, 401),
    ("prefix of a key", {"authorization": b"Bearer plain-ke"}, 401),
    ("key plus suffix", {"authorization": b"Bearer plain-keyX"}, 401),
    ("latin-1 mangled key", {"authorization": b"Bearer " + NON_ASCII_KEY.encode("utf-8").decode("latin-1").encode()}, 401),
    ("very long key", {"authorization": b"Bearer " + b"k" * 20_000}, 401),
    ("lowercase bearer", {"authorization": b"bearer plain-key"}, 404),
    ("non-ASCII key", {"authorization": b"Bearer " + NON_ASCII_KEY.encode()}, 404),
    ("plain key", {"authorization": b"Bearer plain-key"}, 404),
]


@pytest.mark.parametrize(("name", "headers", "status"), KEY_CASES, ids=[c[0] for c in KEY_CASES])
def test_api_keys(name: str, headers: dict, status: int, keyed_server: ServerThread) -> None:
    with httpx.Client(base_url=keyed_server.url, timeout=10) as client:
        response = client.get(f"/videos/{ZERO_ID}", headers=headers)
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == ("unauthorized" if status == 401 else "not_found")
        assert client.get("/readyz").status_code == 200


# --- HTTP framing, slow and many connections ---------------------------------------------

def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize("framing", [
    b"content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    b"transfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
    b"content-length: 2\r\ncontent-length: 3\r\n\r\n{}",
], ids=["CL then TE", "TE then CL", "two CLs"])
def test_ambiguous_framing_is_refused_and_the_connection_closed(app_server: ServerThread, framing: bytes) -> None:
    smuggled = b"GET /healthz?smuggled=1 HTTP/1.1\r\nhost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", app_server.port), timeout=10) as sock:
        sock.sendall(b"POST /videos/" + ZERO_ID.encode() + b"/ask HTTP/1.1\r\nhost: x\r\n"
                     b"content-type: application/json\r\n" + framing + smuggled)
        data = read_all(sock)  # ends: the server closed the connection
    assert data.startswith(b"HTTP/1.1 400"), data[:200]
    assert data.count(b"HTTP/1.1") == 1  # the smuggled request got no answer
    # ours, or h11's own refusal of differing lengths (identical ones are one length, RFC 9112 6.3)
    assert json.loads(data.partition(b"\r\n\r\n")[2])["error"]["code"] in ("ambiguous_framing", "bad_request")


@pytest.fixture(scope="module")
def guarded_server(tiny_checkpoint: Path, upload_dir: Path) -> Iterator[ServerThread]:
    server = ServerThread(server_settings(tiny_checkpoint, None, upload_dir, header_timeout_s=1.0,
                                          max_connections=4)).start()
    yield server
    server.stop()


def test_headers_that_trickle_or_never_come_time_out(guarded_server: ServerThread) -> None:
    import time

    with socket.create_connection(("127.0.0.1", guarded_server.port), timeout=10) as idle, \
            socket.create_connection(("127.0.0.1", guarded_server.port), timeout=10) as slow:
        started = time.monotonic()
        request = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 100
        for byte in request:  # a byte every 0.1 s: never a whole header in 1 s
            try:
                slow.send(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
            if time.monotonic() - started > 5:
                break
        for sock in (idle, slow):
            data = read_all(sock)
            assert data.startswith(b"HTTP/1.1 408"), data[:200]
            assert json.loads(data.partition(b"\r\n\r\n")[2])["error"]["code"] == "header_timeout"
        assert time.monotonic() - started < 4
    with httpx.Client(base_url=guarded_server.url, timeout=10) as client:
        assert client.get("/healthz").status_code == 200  # a prompt request is unaffected


def test_connections_beyond_the_cap_are_refused_with_json(guarded_server: ServerThread) -> None:
    socks = [socket.create_connection(("127.0.0.1", guarded_server.port), timeout=10) for _ in range(4)]
    try:
        with socket.create_connection(("127.0.0.1", guarded_server.port), timeout=10) as extra:
            data = read_all(extra)
        assert data.startswith(b"HTTP/1.1 503"), data[:200]
        assert json.loads(data.partition(b"\r\n\r\n")[2])["error"]["code"] == "too_many_connections"
    finally:
        for sock in socks:
            sock.close()
    with httpx.Client(base_url=guarded_server.url, timeout=10) as client:
        for _ in range(20):  # the server notices the closed ones at once
            if client.get("/healthz").status_code == 200:
                break
        assert client.get("/healthz").status_code == 200


def test_a_malformed_request_line_gets_json(guarded_server: ServerThread) -> None:
    with socket.create_connection(("127.0.0.1", guarded_server.port), timeout=10) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        data = read_all(sock)
    assert data.startswith(b"HTTP/1.1 400")
    assert json.loads(data.partition(b"\r\n\r\n")[2])["error"]["code"] == "bad_request"


def test_page_head_and_favicon(app_server: ServerThread) -> None:
    with httpx.Client(base_url=app_server.url, timeout=10) as client:
        assert client.head("/").status_code == 200
        icon = client.get("/favicon.ico")
        assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
        assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file


def test_healthz_answers_while_huge_chat_bodies_are_refused(app_server: ServerThread) -> None:
    import threading
    import time

    with httpx.Client(base_url=app_server.url, timeout=60) as client:
        model = client.get("/v1/models").json()["data"][0]["id"]
        parts = [{"type": "text", "text": "word " * 12_800} for _ in range(64)]  # 4 MB of text
        parts.append({"type": "video_url", "video_url": {"url": "longvu://" + ZERO_ID}})
        body = {"model": model, "messages": [{"role": "user", "content": parts}]}
        statuses: list[int] = []
        done = threading.Event()

        def flood() -> None:
            with httpx.Client(base_url=app_server.url, timeout=120) as sender:
                for _ in range(3):
                    statuses.append(sender.post("/v1/chat/completions", json=body).status_code)
            done.set()

        threading.Thread(target=flood, daemon=True).start()
        slowest = 0.0
        while not done.wait(0.05):
            started = time.monotonic()
            assert client.get("/healthz").status_code == 200
            slowest = max(slowest, time.monotonic() - started)
    assert statuses == [422, 422, 422]  # too long a prompt, found on a worker thread
    assert slowest < 1.0, slowest
