"""The s3:// storage backend against a real S3-compatible HTTP server (moto) on loopback.

moto accepts presigned URLs without checking their signature or expiry, so those two properties
are checked on the URL itself; everything else (bytes, headers, multipart, errors) goes over HTTP.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import boto3
import httpx
import pytest
from botocore.config import Config
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer
from test_api_support import media

from openlipsync.api.app import create_app
from openlipsync.api.enqueue import NoEnqueue
from openlipsync.jobs.inputs import InputError, _download
from openlipsync.settings import Settings
from openlipsync.store.files import (
    S3_MAX_TTL,
    S3Storage,
    StorageError,
    StorageKeyError,
    open_storage,
)
from openlipsync.store.keys import create_key

BUCKET = "olps-test"
DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (random port) with dummy credentials in the environment."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            patch.delenv(name, raising=False)
        for name, value in DUMMY_ENV.items():
            patch.setenv(name, value)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        admin(url).create_bucket(Bucket=BUCKET)
        try:
            yield url
        finally:
            server.stop()


def admin(endpoint: str):  # type: ignore[no-untyped-def]
    """A plain boto3 client to look at the bucket independently of the code under test."""
    config = Config(s3={"addressing_style": "path"}, signature_version="s3v4")
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=config)


@pytest.fixture
def storage(endpoint: str, request: pytest.FixtureRequest) -> S3Storage:
    prefix = f"p-{request.node.name[:40]}"
    store = open_storage(Settings(storage_url=f"s3://{BUCKET}/{prefix}", s3_endpoint_url=endpoint))
    assert isinstance(store, S3Storage)
    return store


def listed(endpoint: str, prefix: str) -> dict[str, int]:
    pages = admin(endpoint).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"]: item["Size"] for page in pages for item in page.get("Contents", [])}


def test_every_method_round_trips_through_the_bucket(
    storage: S3Storage, endpoint: str, tmp_path: Path
) -> None:
    video = media("video/grid_bbaf2n.mpg")
    assert storage.put_file("in/clip.mpg", video) == video.stat().st_size
    assert storage.put_bytes("in/notes.txt", b"hello s3") == 8
    keys = listed(endpoint, storage.prefix + "/")
    assert keys == {
        f"{storage.prefix}/in/clip.mpg": video.stat().st_size,
        f"{storage.prefix}/in/notes.txt": 8,
    }
    assert storage.keys("in") == ["in/clip.mpg", "in/notes.txt"]  # the folder, prefix stripped
    assert storage.keys("i") == [] and storage.keys("elsewhere") == []  # folders, not prefixes
    head = admin(endpoint).head_object(Bucket=BUCKET, Key=f"{storage.prefix}/in/clip.mpg")
    assert head["ContentType"] == "video/mpeg"

    assert storage.exists("in/clip.mpg") and storage.size("in/clip.mpg") == video.stat().st_size
    into_dir = storage.download("in/clip.mpg", tmp_path)
    assert into_dir == tmp_path / "clip.mpg" and into_dir.read_bytes() == video.read_bytes()
    named = storage.download("in/notes.txt", tmp_path / "deep" / "copy.txt")
    assert named.read_bytes() == b"hello s3"

    storage.put_bytes("in/notes.txt", b"replaced")  # overwrite in place
    assert storage.download("in/notes.txt", tmp_path / "again").read_bytes() == b"replaced"
    storage.delete("in/notes.txt")
    assert not storage.exists("in/notes.txt") and storage.size("in/notes.txt") is None
    storage.delete("in/notes.txt")  # deleting twice is not an error (like the local backend)
    assert list(listed(endpoint, storage.prefix + "/")) == [f"{storage.prefix}/in/clip.mpg"]


def test_signed_url_downloads_without_credentials(storage: S3Storage) -> None:
    video = media("video/grid_bbaf2n.mpg")
    storage.put_file("out/result.mp4", video)
    with httpx.Client(timeout=10) as browser:  # no AWS credentials, no API key
        plain = browser.get(storage.signed_url("out/result.mp4", 600))
        assert plain.status_code == 200 and plain.content == video.read_bytes()
        assert plain.headers["content-type"] == "video/mp4"
        assert "content-disposition" not in plain.headers
        part = browser.get(
            storage.signed_url("out/result.mp4", 600), headers={"Range": "bytes=100-199"}
        )
        assert part.status_code == 206 and part.content == video.read_bytes()[100:200]

        named = browser.get(storage.signed_url("out/result.mp4", 600, filename="final cut.mp4"))
        assert (
            named.headers["content-disposition"] == "attachment; filename*=utf-8''final%20cut.mp4"
        )
        simple = browser.get(storage.signed_url("out/result.mp4", 600, filename="final.mp4"))
        assert simple.headers["content-disposition"] == 'attachment; filename="final.mp4"'
        hostile = browser.get(
            storage.signed_url("out/result.mp4", 600, filename='a"b\r\nX-Evil: 1 ü.mp4')
        )
        assert hostile.status_code == 200 and "x-evil" not in hostile.headers
        assert hostile.headers["content-disposition"].startswith("attachment; filename*=utf-8''")

        missing = browser.get(storage.signed_url("out/nothing.mp4", 600))
        assert missing.status_code == 404


def test_signed_url_expiry_is_signed_into_the_url(storage: S3Storage) -> None:
    """moto serves expired presigned URLs (it does not check X-Amz-Expires): check the URL."""
    storage.put_bytes("ttl/x.bin", b"x")
    for ttl, expected in ((1, 1), (0, 1), (3600, 3600), (10**9, S3_MAX_TTL)):
        query = parse_qs(urlparse(storage.signed_url("ttl/x.bin", ttl)).query)
        assert query["X-Amz-Expires"] == [str(expected)]
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        signed_at = time.mktime(time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ"))
        assert abs(signed_at - time.mktime(time.gmtime())) < 60
        assert "X-Amz-Signature" in query and "testing" not in query["X-Amz-Credential"][0][5:]


def test_upload_url_accepts_a_put_with_the_content_type(
    storage: S3Storage, endpoint: str, tmp_path: Path
) -> None:
    audio = media("speech/librivox_austen_0870.wav").read_bytes()
    url = storage.upload_url("up/voice.wav", 600, "audio/wav")
    assert "content-type" in parse_qs(urlparse(url).query)["X-Amz-SignedHeaders"][0]
    put = httpx.put(url, content=audio, headers={"Content-Type": "audio/wav"}, timeout=10)
    assert put.status_code == 200, put.text
    head = admin(endpoint).head_object(Bucket=BUCKET, Key=f"{storage.prefix}/up/voice.wav")
    assert head["ContentType"] == "audio/wav"
    assert storage.size("up/voice.wav") == len(audio)
    assert storage.download("up/voice.wav", tmp_path / "v.wav").read_bytes() == audio
    untyped = storage.upload_url("up/raw.bin", 600)
    assert httpx.put(untyped, content=b"\x00\x01", timeout=10).status_code == 200
    assert storage.size("up/raw.bin") == 2


def test_large_file_goes_up_and_down_in_parts(
    storage: S3Storage, endpoint: str, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with open(source, "wb") as handle:
        for _ in range(20):
            chunk = os.urandom(1 << 20)
            digest.update(chunk)
            handle.write(chunk)
    started = time.monotonic()
    assert storage.put_file("big/big.bin", source) == 20 << 20
    head = admin(endpoint).head_object(Bucket=BUCKET, Key=f"{storage.prefix}/big/big.bin")
    assert head["ContentLength"] == 20 << 20
    assert head["ETag"].strip('"').endswith("-3")  # three 8 MiB parts: a multipart upload
    copy = storage.download("big/big.bin", tmp_path / "copy.bin")
    with open(copy, "rb") as handle:
        assert hashlib.file_digest(handle, "sha256").hexdigest() == digest.hexdigest()
    assert time.monotonic() - started < 20


MEMORY_PROBE = """
import pathlib, sys, tracemalloc
from openlipsync.store.files import S3Storage
store = S3Storage(sys.argv[1], sys.argv[2])
store.size("warm-up")  # load botocore's models before measuring
tracemalloc.start()
store.put_file("mem/big.bin", pathlib.Path(sys.argv[3]))
up = tracemalloc.get_traced_memory()[1] >> 20
tracemalloc.reset_peak()
store.download("mem/big.bin", pathlib.Path(sys.argv[3] + ".copy"))
print(up, tracemalloc.get_traced_memory()[1] >> 20)
"""


def test_large_file_is_streamed_not_read_into_memory(
    storage: S3Storage, endpoint: str, tmp_path: Path
) -> None:
    """Peak Python heap of a fresh process stays small while 32 MiB go up and back down."""
    source = tmp_path / "big.bin"
    with open(source, "wb") as handle:
        for _ in range(32):
            handle.write(os.urandom(1 << 20))
    url = f"s3://{BUCKET}/{storage.prefix}"
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, url, endpoint, str(source)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    up, down = map(int, done.stdout.split()[-2:])
    assert up < 16 and down < 16  # MiB of peak heap; reading the file whole costs 32+
    assert (tmp_path / "big.bin.copy").read_bytes() == source.read_bytes()


def test_missing_key_is_file_not_found_and_the_worker_fails_cleanly(
    storage: S3Storage, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        storage.download("nope/missing.mp4", tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists() and list(tmp_path.iterdir()) == []
    assert storage.size("nope/missing.mp4") is None and not storage.exists("nope/missing.mp4")
    storage.delete("nope/missing.mp4")
    with pytest.raises(InputError) as expired:  # what the worker turns into a FAILED generation
        _download(storage, "nope/missing.mp4", tmp_path / "v.mp4", "video")
    assert expired.value.code == "generation_input_video_inaccessible"


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "a\\b", "x\x00y"])
def test_bad_keys_are_rejected_before_any_request(storage: S3Storage, key: str) -> None:
    for call in (
        lambda: storage.put_bytes(key, b"x"),
        lambda: storage.size(key),
        lambda: storage.signed_url(key, 60),
        lambda: storage.upload_url(key, 60),
        lambda: storage.delete(key),
    ):
        with pytest.raises(StorageKeyError):
            call()


def test_missing_bucket_is_a_storage_error(endpoint: str, tmp_path: Path) -> None:
    store = S3Storage("s3://no-such-bucket-here/p", endpoint)
    source = tmp_path / "f.bin"
    source.write_bytes(b"abc")
    for call in (
        lambda: store.put_bytes("k.bin", b"x"),
        lambda: store.put_file("k.bin", source),
        lambda: store.download("k.bin", tmp_path / "out.bin"),
        lambda: store.size("k.bin"),
        lambda: store.exists("k.bin"),
        lambda: store.delete("k.bin"),
    ):
        with pytest.raises(StorageError, match="no-such-bucket-here"):
            call()
    with pytest.raises(InputError) as broken:
        _download(store, "k.bin", tmp_path / "v.mp4", "video")
    assert broken.value.code == "generation_storage_error"


def test_bad_storage_url_is_rejected() -> None:
    for url in ("s3://", "s3:///prefix"):
        with pytest.raises(StorageError, match="s3://bucket/prefix"):
            S3Storage(url, None)


def test_endpoint_down_fails_fast_with_default_config(endpoint: str, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    store = S3Storage(f"s3://{BUCKET}/p", dead)
    config = store.client.meta.config
    assert config.connect_timeout == 5.0 and config.read_timeout == 60.0
    assert config.retries["total_max_attempts"] == 3
    started = time.monotonic()
    with pytest.raises(StorageError, match="cannot reach"):
        store.put_bytes("k.bin", b"x")
    with pytest.raises(StorageError, match="cannot reach"):
        store.exists("k.bin")
    with pytest.raises(InputError) as broken:
        _download(store, "k.bin", tmp_path / "v.mp4", "video")
    assert broken.value.code == "generation_storage_error"
    assert time.monotonic() - started < 15


def test_silent_endpoint_times_out_instead_of_hanging() -> None:
    """A server that accepts connections and never answers: bounded by read_timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        held: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    held.append(listener.accept()[0])
                except TimeoutError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{listener.getsockname()[1]}"
            store = S3Storage(
                f"s3://{BUCKET}/p", url, connect_timeout=1, read_timeout=1, max_attempts=1
            )
            started = time.monotonic()
            with pytest.raises(StorageError, match="cannot reach"):
                store.size("k.bin")
            assert time.monotonic() - started < 5
        finally:
            stop.set()
            thread.join(timeout=5)
            for connection in held:
                connection.close()


def test_api_stores_uploads_in_the_bucket_and_links_work(endpoint: str, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        storage_url=f"s3://{BUCKET}/api",
        s3_endpoint_url=endpoint,
        signing_secret="test-secret",
        public_base_url="http://testserver",
    )
    app = create_app(settings, enqueue=NoEnqueue())
    assert isinstance(app.state.storage, S3Storage)
    with app.state.sessions() as session:
        key, _ = create_key(session, "s3-org")
    video = media("video/grid_bbaf2n.mpg").read_bytes()
    audio = media("speech/librivox_austen_0870.wav").read_bytes()
    with TestClient(app, headers={"x-api-key": key}) as client:
        created = client.post(
            "/v2/generate",
            data={"model": "lipsync-2"},
            files={"video": ("clip.mpg", video), "audio": ("speech.wav", audio)},
        )
        assert created.status_code == 201, created.text
        ids = {item["type"]: item["assetId"] for item in created.json()["input"]}
        stored = listed(endpoint, "api/")
        assert sorted(stored.values()) == sorted([len(video), len(audio)])
        assert all(name.startswith("api/assets/") for name in stored)

        for kind, payload in (("video", video), ("audio", audio)):
            asset = client.get(f"/v2/assets/{ids[kind]}").json()
            assert asset["url"].startswith(endpoint + f"/{BUCKET}/api/assets/")
            got = httpx.get(asset["url"], timeout=10)
            assert got.status_code == 200 and got.content == payload

        upload = client.post(
            "/v2/assets/upload",
            json={"fileName": "talk.wav", "contentType": "audio/wav", "size": len(audio)},
        )
        assert upload.status_code == 201, upload.text
        target = upload.json()
        assert target["uploadUrl"].startswith(endpoint)
        early = client.post("/v2/assets", json={"url": target["url"], "type": "AUDIO"})
        assert early.status_code == 400  # nothing PUT yet
        put = httpx.put(
            target["uploadUrl"], content=audio, headers={"Content-Type": "audio/wav"}, timeout=10
        )
        assert put.status_code == 200
        registered = client.post("/v2/assets", json={"url": target["url"], "type": "AUDIO"})
        assert registered.status_code == 201, registered.text
        asset = registered.json()
        assert asset["type"] == "AUDIO" and asset["size"] == len(audio)
        assert httpx.get(asset["url"], timeout=10).content == audio
        assert any(name.startswith("api/uploads/") for name in listed(endpoint, "api/"))

        assert client.delete(f"/v2/assets/{asset['id']}").status_code == 200
        assert not any(name.startswith("api/uploads/") for name in listed(endpoint, "api/"))
        # Signed-link routes belong to the local backend only.
        assert client.get("/v2/files/api/assets/x").status_code == 404
