"""URL fetching against real local HTTP servers: limits, content checks and the SSRF guard."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from openlipsync.jobs.fetch import (
    FetchError,
    allow_any,
    fetch_to_file,
    is_public_address,
)
from tests.conftest import media_path

MEDIA = media_path("speech/librivox_austen_0870.wav").read_bytes()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        if path == "/media.wav":
            self._send(200, MEDIA, "audio/wav")
        elif path == "/untyped":
            self._send(200, MEDIA, "application/octet-stream")
        elif path == "/html":
            self._send(200, b"<!doctype html><html><body>login</body></html>", "text/html")
        elif path == "/html-as-video":
            self._send(200, b"<html><body>not a video</body></html>", "video/mp4")
        elif path == "/text-as-video":
            self._send(200, b"just some words, no media here\n" * 40, "video/mp4")
        elif path == "/json":
            self._send(200, b'{"error": "denied"}', "application/json")
        elif path == "/missing":
            self._send(404, b"nope", "text/plain")
        elif path == "/big-declared":
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
        elif path == "/big-stream":
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.end_headers()  # no length: the limit must hold while streaming
            try:
                for _ in range(1000):
                    self.wfile.write(b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 65524)
            except OSError:
                pass
        elif path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.end_headers()
            try:
                self.wfile.write(MEDIA[:1000])
                for _ in range(100):
                    time.sleep(0.2)
                    self.wfile.write(MEDIA[:10])
                    self.wfile.flush()
            except OSError:
                pass
        elif path.startswith("/redirect"):
            target = self.path.split("to=", 1)[1]
            self._send(302, b"", "text/plain", Location=target)
        elif path == "/loop":
            self._send(302, b"", "text/plain", Location="/loop")
        else:
            self._send(500, b"?", "text/plain")


def _serve(host: str = "127.0.0.1") -> Iterator[str]:
    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    yield from _serve()


@pytest.fixture(scope="module")
def server_127_0_0_2() -> Iterator[str]:
    yield from _serve("127.0.0.2")


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers a byte."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/video.mp4"
    finally:
        sock.close()


def fetch(url: str, tmp_path: Path, **kwargs: object) -> Path:
    options: dict = {"max_bytes": 50_000_000, "timeout_seconds": 5.0, "policy": allow_any}
    options.update(kwargs)
    return fetch_to_file(url, tmp_path / "input.bin", **options).path


def test_downloads_media_byte_for_byte(server: str, tmp_path: Path) -> None:
    assert fetch(f"{server}/media.wav", tmp_path).read_bytes() == MEDIA
    assert fetch(f"{server}/untyped", tmp_path).read_bytes() == MEDIA


def test_follows_a_redirect_to_an_allowed_host(server: str, tmp_path: Path) -> None:
    path = fetch(f"{server}/redirect?to={server}/media.wav", tmp_path)
    assert path.read_bytes() == MEDIA


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/html", "html_page"),
        ("/html-as-video", "html_page"),
        ("/text-as-video", "not_media"),
        ("/json", "not_media"),
        ("/missing", "http_status"),
        ("/loop", "too_many_redirects"),
    ],
)
def test_rejects_non_media(server: str, tmp_path: Path, path: str, reason: str) -> None:
    with pytest.raises(FetchError) as info:
        fetch(server + path, tmp_path)
    assert info.value.reason == reason
    assert not (tmp_path / "input.bin").exists()


@pytest.mark.parametrize("path", ["/big-declared", "/big-stream"])
def test_size_limit(server: str, tmp_path: Path, path: str) -> None:
    with pytest.raises(FetchError) as info:
        fetch(server + path, tmp_path, max_bytes=1_000_000)
    assert info.value.reason == "too_large"
    assert not (tmp_path / "input.bin").exists()


def test_a_server_that_never_answers_times_out(silent_server: str, tmp_path: Path) -> None:
    began = time.monotonic()
    with pytest.raises(FetchError) as info:
        fetch(silent_server, tmp_path, timeout_seconds=1.0)
    assert info.value.reason == "timeout"
    assert time.monotonic() - began < 3.0


def test_a_trickling_server_hits_the_overall_deadline(server: str, tmp_path: Path) -> None:
    began = time.monotonic()
    with pytest.raises(FetchError) as info:
        fetch(f"{server}/trickle", tmp_path, timeout_seconds=1.0)
    assert info.value.reason == "timeout"
    assert time.monotonic() - began < 3.0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/media.wav",
        "http://localhost:{port}/media.wav",  # a DNS name resolving to loopback
        "http://[::1]:{port}/media.wav",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/x.mp4",
        "http://[::ffff:127.0.0.1]:{port}/x.mp4",
        "http://0.0.0.0:{port}/x.mp4",
        "http://100.100.100.200/latest/meta-data/",
    ],
)
def test_private_addresses_are_refused_by_default(server: str, tmp_path: Path, url: str) -> None:
    port = server.rsplit(":", 1)[1]
    began = time.monotonic()
    with pytest.raises(FetchError) as info:
        fetch_to_file(url.format(port=port), tmp_path / "x", max_bytes=10**6, timeout_seconds=5.0)
    assert info.value.reason == "blocked", info.value.message
    assert time.monotonic() - began < 1.0  # refused before any connection attempt


def test_every_redirect_hop_is_checked(server_127_0_0_2: str, server: str, tmp_path: Path) -> None:
    """127.0.0.2 stands in for a public host; its redirect to 127.0.0.1 must be refused."""

    def only_127_0_0_2(ip: object) -> bool:
        return ip == ipaddress.ip_address("127.0.0.2") or is_public_address(ip)  # type: ignore[arg-type]

    direct = fetch(f"{server_127_0_0_2}/media.wav", tmp_path, policy=only_127_0_0_2)
    assert direct.read_bytes() == MEDIA
    with pytest.raises(FetchError) as info:
        fetch(
            f"{server_127_0_0_2}/redirect?to={server}/media.wav",
            tmp_path,
            policy=only_127_0_0_2,
        )
    assert info.value.reason == "blocked"
    with pytest.raises(FetchError) as info:
        fetch(
            f"{server_127_0_0_2}/redirect?to=http://169.254.169.254/",
            tmp_path,
            policy=only_127_0_0_2,
        )
    assert info.value.reason == "blocked"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x.mp4", "file:///etc/passwd", "http://", "not a url", ""]
)
def test_bad_urls(tmp_path: Path, url: str) -> None:
    with pytest.raises(FetchError) as info:
        fetch(url, tmp_path)
    assert info.value.reason in ("invalid_url", "network")


def test_address_classification() -> None:
    public = ["8.8.8.8", "2001:4860:4860::8888", "1.1.1.1"]
    private = [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "224.0.0.1",
        "240.0.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:10.0.0.1",
        "2002:7f00:1::1",  # 6to4 wrapping 127.0.0.1
        "ff02::1",
    ]
    assert all(is_public_address(ipaddress.ip_address(a)) for a in public)
    assert not any(is_public_address(ipaddress.ip_address(a)) for a in private)
