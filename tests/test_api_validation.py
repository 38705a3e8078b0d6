"""Bad and hostile input on every input path: always a 4xx with the §17 body, never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import test_api_support as support
from test_api_support import LiveServer, media, url_body

database_url = support.database_url  # fixture
live = support.live  # fixture
server_factory = support.server_factory  # fixture


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["statusCode"] == status
    assert isinstance(body["message"], str | list) and body["message"]
    assert isinstance(body["error"], str)
    if code is not None:
        assert body["errorCode"] == code, body
    return body


def messages(body: dict[str, Any]) -> str:
    return json.dumps(body["message"])


@pytest.fixture(scope="module")
def client(live: LiveServer):
    with live.client() as http:
        yield http


BAD_JSON_BODIES = [
    pytest.param(b"{not json", "not valid JSON", id="malformed"),
    pytest.param(b"", "JSON object", id="empty"),
    pytest.param(b"[1,2]", "JSON object", id="array"),
    pytest.param(b"null", "JSON object", id="null"),
    pytest.param(b"[" * 100_000, "not valid JSON", id="deep-nesting"),
]


@pytest.mark.parametrize(("raw", "expected"), BAD_JSON_BODIES)
def test_malformed_json(client: httpx.Client, raw: bytes, expected: str) -> None:
    response = client.post(
        "/v2/generate", content=raw, headers={"content-type": "application/json"}
    )
    assert expected in messages(assert_error(response, 400))


BAD_BODIES = [
    pytest.param({"model": "lipsync-9", "input": []}, "model must be one of", id="unknown-model"),
    pytest.param({"model": 3, "input": []}, "model must be one of", id="model-type"),
    pytest.param({"model": "lipsync-2", "input": "x"}, "input must be an array", id="input-type"),
    pytest.param(
        {"model": "lipsync-2", "input": [{"type": "audio", "url": "https://a/b.wav"}]},
        "video input",
        id="missing-video",
    ),
    pytest.param(
        {"model": "lipsync-2", "input": [{"type": "video", "url": "https://a/b.mp4"}]},
        "audio or text input",
        id="missing-audio",
    ),
    pytest.param(
        url_body(
            input=[
                {"type": "video", "url": "file:///etc/passwd"},
                {"type": "audio", "url": "https://a/b"},
            ]
        ),
        "http(s) URL",
        id="file-scheme",
    ),
    pytest.param(
        url_body(
            input=[
                {"type": "video", "url": "ftp://h/v.mp4"},
                {"type": "audio", "url": "https://a/b"},
            ]
        ),
        "http(s) URL",
        id="ftp-scheme",
    ),
    pytest.param(
        url_body(
            input=[
                {"type": "video", "url": "javascript:alert(1)"},
                {"type": "audio", "url": "https://a/b"},
            ]
        ),
        "http(s) URL",
        id="javascript-scheme",
    ),
    pytest.param(
        url_body(input=[{"type": "video"}, {"type": "audio", "url": "https://a/b"}]),
        "url or an assetId",
        id="no-source",
    ),
    pytest.param(
        url_body(
            input=[
                {"type": "video", "url": "https://a/v", "assetId": "x"},
                {"type": "audio", "url": "https://a/b"},
            ]
        ),
        "not both",
        id="url-and-asset",
    ),
    pytest.param(
        url_body(
            input=[
                {"type": "image", "url": "https://a/i.png"},
                {"type": "audio", "url": "https://a/b"},
            ]
        ),
        "only supported by model sync-3",
        id="image-not-sync3",
    ),
    pytest.param(
        url_body(input=[{"type": "hologram", "url": "https://a/v"}]),
        "type must be one of",
        id="unknown-input-type",
    ),
    pytest.param(url_body(options={"sync_mode": "sideways"}), "sync_mode", id="bad-sync-mode"),
    pytest.param(url_body(options={"temperature": "hot"}), "temperature", id="temperature-type"),
    pytest.param(url_body(options={"temperature": 1.5}), "temperature", id="temperature-range"),
    pytest.param(url_body(options=[1]), "options must be an object", id="options-type"),
    pytest.param(url_body(options={"prompt": "bored"}), "prompt", id="bad-emotion"),
    pytest.param(
        url_body(options={"active_speaker_detection": {"coordinates": [1]}}),
        "coordinates",
        id="bad-coordinates",
    ),
    pytest.param(url_body(webhookUrl="not a url"), "webhookUrl", id="bad-webhook"),
    pytest.param(url_body(outputFileName="x" * 300), "outputFileName", id="long-name"),
    pytest.param(
        url_body(
            input=[
                {"type": "video", "url": "https://a/v"},
                {"type": "audio", "url": "https://a/1"},
                {"type": "audio", "url": "https://a/2"},
            ]
        ),
        "require segments",
        id="two-drivers-no-segments",
    ),
    pytest.param(
        url_body(
            input=[
                {"type": "video", "url": "https://a/v"},
                {"type": "audio", "url": "https://a/1", "refId": "a"},
            ],
            segments=[{"startTime": 0, "endTime": 1, "audioInput": {"refId": "zzz"}}],
        ),
        "matches no input refId",
        id="segment-unknown-ref",
    ),
    pytest.param(
        url_body(
            input=[
                {"type": "video", "url": "https://a/v"},
                {"type": "audio", "url": "https://a/1", "refId": "a"},
            ],
            segments=[{"startTime": 2, "endTime": 1, "audioInput": {"refId": "a"}}],
        ),
        "less than or equal",
        id="segment-reversed",
    ),
    pytest.param(
        url_body(
            input=[
                {"type": "video", "url": "https://a/v"},
                {"type": "audio", "url": "https://a/1", "refId": "a"},
            ],
            segments=[{"startTime": 0, "endTime": 1, "audioInput": {"refId": "a", "startTime": 0}}],
        ),
        "together",
        id="segment-half-crop",
    ),
    pytest.param(
        url_body(
            input=[
                {"type": "video", "url": "https://a/v"},
                {"type": "audio", "url": "https://a/1", "refId": "a"},
                {"type": "audio", "url": "https://a/2", "refId": "a"},
            ],
            segments=[{"startTime": 0, "endTime": 1, "audioInput": {"refId": "a"}}],
        ),
        "unique",
        id="duplicate-ref",
    ),
    pytest.param(
        url_body(
            input=[
                {"type": "video", "url": "https://a/v", "segments_frames": [[5, 5]]},
                {"type": "audio", "url": "https://a/1"},
            ]
        ),
        "start < end",
        id="frames-not-strict",
    ),
    pytest.param(
        url_body(
            input=[
                {"type": "video", "url": "https://a/v"},
                {"type": "text", "provider": {"name": "polly"}},
            ]
        ),
        "provider.name",
        id="tts-provider",
    ),
    pytest.param(
        url_body(
            model="sync-3",
            input=[
                {"type": "image", "url": "https://a/i.png"},
                {"type": "audio", "url": "https://a/b"},
            ],
            options={"active_speaker_detection": {"auto_detect": True}},
        ),
        "not supported for image",
        id="image-auto-detect",
    ),
]


@pytest.mark.parametrize(("body", "expected"), BAD_BODIES)
def test_bad_generate_bodies(client: httpx.Client, body: Any, expected: str) -> None:
    body_out = assert_error(client.post("/v2/generate", json=body), 400)
    assert expected in messages(body_out), body_out
    # The cost estimator shares the validation.
    assert_error(client.post("/v2/analyze/cost", json=body), 400)


def test_every_violation_is_reported_with_first_code(client: httpx.Client) -> None:
    body = assert_error(client.post("/v2/generate", json={"model": "nope"}), 400)
    assert body["errorCode"] == "generation_unsupported_model"
    assert isinstance(body["message"], list) and len(body["message"]) >= 2


def test_missing_video_code(client: httpx.Client) -> None:
    body = {"model": "lipsync-2", "input": [{"type": "audio", "url": "https://a/b"}]}
    assert_error(client.post("/v2/generate", json=body), 400, "generation_video_missing")


def test_nulls_are_absent_and_unknown_keys_ignored(client: httpx.Client) -> None:
    body = url_body(
        options={"sync_mode": None, "pads": [0, 5], "reasoning_enabled": True},
        segments=None,
        webhookUrl=None,
        outputFileName=None,
        dubParams={"x": 1},
    )
    body["input"][0]["assetId"] = None
    response = client.post("/v2/generate", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["options"]["sync_mode"] == "loop"  # the default, echoed
    assert created["options"]["pads"] == [0, 5]  # legacy keys echoed, not rejected
    assert created["segments"] is None and created["webhookUrl"] is None
    assert created["error_code"] is None and "errorCode" in created
    assert created["createdAt"].endswith("Z")


def test_unknown_and_foreign_asset_ids(live: LiveServer, client: httpx.Client) -> None:
    body = url_body()
    body["input"][0] = {"type": "video", "assetId": "does-not-exist"}
    assert "not found" in messages(assert_error(client.post("/v2/generate", json=body), 400))
    # An asset of organisation B is invisible to A.
    with live.client(live.other_key) as other:
        files = {"video": ("v.mpg", media("video/grid_bbaf2n.mpg").read_bytes())}
        created = other.post(
            "/v2/generate",
            data={
                "model": "lipsync-2",
                "input": json.dumps({"type": "audio", "url": "https://a/b"}),
            },
            files=files,
        )
        assert created.status_code == 201, created.text
        foreign = next(i["assetId"] for i in created.json()["input"] if i["type"] == "video")
    body["input"][0] = {"type": "video", "assetId": foreign}
    assert_error(client.post("/v2/generate", json=body), 400)
    assert_error(client.get(f"/v2/assets/{foreign}"), 404, "asset_not_found")
    assert_error(client.delete(f"/v2/assets/{foreign}"), 404)


def test_unknown_ids_are_404(client: httpx.Client) -> None:
    for path in (
        "/v2/generate/nope",
        "/v2/assets/nope",
        "/v2/batch/nope",
        "/v2/generations/nope/download",
    ):
        assert_error(client.get(path), 404)
    assert_error(client.delete("/v2/generations/nope"), 404)
    assert_error(client.get("/v2/generate/a/b"), 404)  # Python SDK does not encode ids
    assert_error(client.get("/v2/no-such-route"), 404)


@pytest.mark.parametrize(
    "query",
    [
        "limit=-1",
        "limit=0",
        "limit=101",
        "limit=abc",
        "limit=1e3",
        "cursor=garbage",
        "status=[bogus",
        'status=["BOGUS"]',
        "status=PENDING,NOPE",
        "status=[1,2]",
    ],
)
def test_hostile_generation_queries(client: httpx.Client, query: str) -> None:
    assert_error(client.get(f"/v2/generations?{query}"), 400)


@pytest.mark.parametrize(
    "query",
    [
        "limit=-1",
        "limit=abc",
        "limit=1000",
        "cursor=%%%",
        "cursor=bzo5OTk5OTk5OTk5",
        "sortBy=random",
        "types=[bogus",
        "types=SMELL",
    ],
)
def test_hostile_asset_queries(client: httpx.Client, query: str) -> None:
    assert_error(client.get(f"/v2/assets?{query}"), 400)


@pytest.mark.parametrize(
    "query",
    ["status=NOPE", "created_after=yesterday", "created_before=2024-13-45T00:00:00Z"],
)
def test_hostile_batch_queries(client: httpx.Client, query: str) -> None:
    assert_error(client.get(f"/v2/batch?{query}"), 400)


@pytest.mark.parametrize(
    "query",
    [
        "wait=maybe",
        "wait=true&timeout=0",
        "wait=true&timeout=99",
        "include=everything",
        "wait=true&include=progress",
        "timeout=30",
    ],
)
def test_hostile_get_queries(client: httpx.Client, query: str) -> None:
    created = client.post("/v2/generate", json=url_body()).json()
    assert_error(client.get(f"/v2/generate/{created['id']}?{query}"), 400)


def test_all_three_list_encodings(client: httpx.Client) -> None:
    created = client.post("/v2/generate", json=url_body()).json()
    expected = created["id"]
    for params in (
        [("status", "PENDING"), ("status", "COMPLETED")],
        [("status", "PENDING,COMPLETED")],
        [("status", '["PENDING","COMPLETED"]')],
    ):
        ids = {g["id"] for g in client.get("/v2/generations", params=params).json()}
        assert expected in ids
    for params in (
        [("ids", expected), ("ids", "x")],
        [("ids", f"{expected},x")],
        [("ids", json.dumps([expected]))],
    ):
        assert [g["id"] for g in client.get("/v2/generations", params=params).json()] == [expected]


def test_generation_paging_with_cursor(client: httpx.Client) -> None:
    made = [client.post("/v2/generate", json=url_body()).json()["id"] for _ in range(3)]
    first = client.get("/v2/generations", params={"limit": 2}).json()
    second = client.get("/v2/generations", params={"limit": 2, "cursor": first[-1]["id"]}).json()
    assert [g["id"] for g in first] == made[::-1][:2]
    assert second[0]["id"] == made[0]


def test_multipart_bad_inputs(live: LiveServer, client: httpx.Client) -> None:
    video = media("video/grid_bbaf2n.mpg").read_bytes()
    text_as_mp4 = {"video": ("clip.mp4", b"this is plain text, not a video\n" * 10, "video/mp4")}
    audio_url = {"input": json.dumps([{"type": "audio", "url": "https://a/b.wav"}])}
    body = assert_error(
        client.post("/v2/generate", data={"model": "lipsync-2", **audio_url}, files=text_as_mp4),
        400,
        "invalid_media",
    )
    assert "not a readable media file" in messages(body)
    # missing model (e.g. a Python SDK retry that dropped the text parts)
    assert_error(
        client.post("/v2/generate", files={"video": ("v", video)}),
        400,
        "generation_unsupported_model",
    )
    # options part that is not JSON
    assert_error(
        client.post(
            "/v2/generate",
            data={"model": "lipsync-2", "options": "{", **audio_url},
            files={"video": ("v", video)},
        ),
        400,
    )
    # an image where the video goes
    photo = media("photo/obama.jpg").read_bytes()
    assert_error(
        client.post(
            "/v2/generate",
            data={"model": "lipsync-2", **audio_url},
            files={"video": ("v.jpg", photo)},
        ),
        400,
    )
    # a video with no audio stream as audio: the GRID clip has audio, the photo does not
    assert_error(
        client.post(
            "/v2/generate",
            data={"model": "lipsync-2"},
            files={"video": ("v", video), "audio": ("a", photo)},
        ),
        400,
    )
    # empty file
    assert_error(
        client.post(
            "/v2/generate", data={"model": "lipsync-2", **audio_url}, files={"video": ("v", b"")}
        ),
        400,
    )
    # broken multipart framing
    response = client.post(
        "/v2/generate",
        content=b'--xyz\r\nContent-Disposition: form-data; name="model"\r\n\r\nlipsync-2'
        b"\r\n--xyz--garbage",
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert 400 <= response.status_code < 500
    assert_error(
        client.post("/v2/generate", content=b"x", headers={"content-type": "multipart/form-data"}),
        400,
    )


def test_ts_style_repeated_input_parts_and_sync3_image(client: httpx.Client) -> None:
    photo = media("photo/astronaut.png").read_bytes()
    data = {
        "model": "sync-3",
        "input": [json.dumps({"type": "audio", "url": "https://a/b.wav", "refId": "a"})],
        "options": json.dumps({"sync_mode": "cut_off", "occlusion_detection_enabled": "true"}),
    }
    response = client.post(
        "/v2/generate", data=data, files={"image": ("blob", photo, "application/octet-stream")}
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert [item["type"] for item in created["input"]] == ["audio", "image"]
    assert created["options"]["occlusion_detection_enabled"] is True


def test_oversized_upload_is_413(server_factory) -> None:
    tiny = server_factory(max_upload_bytes=10_000)
    video = media("video/grid_bbaf2n.mpg").read_bytes()
    assert len(video) > 10_000
    with tiny.client() as http:
        response = http.post(
            "/v2/generate", data={"model": "lipsync-2"}, files={"video": ("v", video)}
        )
        assert_error(response, 413, "generation_input_validation_failed")
        # nothing was left behind and the server still answers
        assert http.get("/v2/assets").json()["totalCount"] == 0
        assert not list((tiny.settings.data_dir / "tmp").glob("upload-*"))


def _jsonl(count: int, mutate=None) -> bytes:  # type: ignore[no-untyped-def]
    lines = []
    for i in range(count):
        record: dict[str, Any] = {
            "request_id": f"r{i}",
            "endpoint": "/v2/generate",
            "payload": url_body(),
        }
        if mutate:
            mutate(i, record)
        lines.append(json.dumps(record))
    return "\n".join(lines).encode()


def _batch(client: httpx.Client, content: bytes, **data: str) -> httpx.Response:
    return client.post(
        "/v2/batch", data=data, files={"input": ("upload", content, "application/octet-stream")}
    )


def test_batch_validation(client: httpx.Client) -> None:
    assert "between 20 and 500" in messages(assert_error(_batch(client, _jsonl(19)), 400))
    assert "found 10000" in messages(
        assert_error(_batch(client, _jsonl(10_000)[: 5 * 1024 * 1024 - 1]), 400)
    )

    def duplicate(i: int, record: dict) -> None:
        if i == 7:
            record["request_id"] = "r3"

    body = assert_error(_batch(client, _jsonl(20, duplicate)), 400, "batch_validation_failed")
    assert "line 8: duplicate request_id 'r3'" in messages(body)

    def broken(i: int, record: dict) -> None:
        if i == 4:
            record["endpoint"] = "/v2/other"
        if i == 11:
            record["payload"]["model"] = "nope"

    text = messages(assert_error(_batch(client, _jsonl(20, broken)), 400))
    assert "line 5: endpoint" in text and "line 12: payload: model" in text
    garbage = _jsonl(20) + b"\n{oops"
    assert "line 21: not valid JSON" in messages(assert_error(_batch(client, garbage), 400))
    assert_error(_batch(client, b"\xff\xfe" * 100), 400)
    assert_error(_batch(client, _jsonl(20), dry_run="perhaps"), 400)
    assert_error(_batch(client, _jsonl(20), webhook_url="ftp://x"), 400)
    assert_error(client.post("/v2/batch", data={"dry_run": "true"}), 400)  # no file
    # a dry run creates nothing
    before = len(client.get("/v2/batch").json())
    assert _batch(client, _jsonl(20), dry_run="true").json() == {"status": "VALIDATED"}
    assert len(client.get("/v2/batch").json()) == before


def test_batch_over_5mb_is_400(client: httpx.Client) -> None:
    huge = b"{}\n" * (2 * 1024 * 1024)
    body = assert_error(_batch(client, huge), 400, "batch_validation_failed")
    assert "exceeds" in messages(body)


def test_auth_errors(live: LiveServer) -> None:
    for key in ("", "sk-ols-nope", "x" * 5000):
        with live.client(key) as http:
            assert_error(http.get("/v2/models"), 401, "unauthorized")
            assert_error(http.post("/v2/generate", json=url_body()), 401)
    with httpx.Client(base_url=live.base_url) as anonymous:
        assert_error(anonymous.get("/v2/generations"), 401)
        assert anonymous.get("/health").json() == {"status": "ok"}
        assert anonymous.get("/v2/health").json() == {"status": "ok"}
        assert anonymous.get("/openapi.json").json()["openapi"].startswith("3.")
        assert anonymous.get("/api-json").status_code == 200
        assert anonymous.get("/docs").status_code == 200


def test_revoked_key_is_401(live: LiveServer) -> None:
    from openlipsync.store.keys import create_key, revoke_key

    with live.app.state.sessions() as session:
        plaintext, key = create_key(session, "temp")
    with live.client(plaintext) as http:
        assert http.get("/v2/models").status_code == 200
        with live.app.state.sessions() as session:
            assert revoke_key(session, key.id)
        assert_error(http.get("/v2/models"), 401)


def test_idempotency_key(client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "order-42.attempt_1~x"}
    first = client.post("/v2/generate", json=url_body(), headers=headers)
    again = client.post("/v2/generate", json=url_body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    conflict = assert_error(
        client.post("/v2/generate", json=url_body(model="sync-3"), headers=headers),
        409,
        "IDEMPOTENCY_KEY_REUSED",
    )
    assert conflict["generationId"] == first.json()["id"]
    for bad in ("", "has space", "x" * 129, "ünï".encode()):
        assert_error(
            client.post("/v2/generate", json=url_body(), headers={"Idempotency-Key": bad}),
            400,
            "INVALID_IDEMPOTENCY_KEY",
        )
    duplicate = [("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    assert_error(
        client.post("/v2/generate", json=url_body(), headers=duplicate),
        400,
        "INVALID_IDEMPOTENCY_KEY",
    )


def test_delete_running_generation_is_409(client: httpx.Client) -> None:
    created = client.post("/v2/generate", json=url_body()).json()
    assert_error(
        client.delete(f"/v2/generations/{created['id']}"),
        409,
        "generation_not_deletable_while_processing",
    )
    assert_error(client.get(f"/v2/generations/{created['id']}/download"), 404)


@pytest.mark.parametrize(
    "path",
    [
        "/v2/generate/%00",
        "/v2/generations?cursor=%00",
        "/v2/generations?ids=a%00",
        "/v2/assets?searchQuery=%00",
        "/v2/assets/x%00y",
        "/v2/batch/%00",
    ],
)
def test_nul_bytes_in_paths_and_queries(client: httpx.Client, path: str) -> None:
    """PostgreSQL cannot store or compare U+0000; it must be a 400, not a DataError 500."""
    assert_error(client.get(path), 400)


def test_nul_and_nan_in_bodies(client: httpx.Client) -> None:
    nul = url_body(webhookUrl="https://h/\x00")
    assert_error(client.post("/v2/generate", json=nul), 400)
    nul_name = {"url": "https://a/b.mp4", "type": "VIDEO", "name": "a\x00"}
    assert_error(client.post("/v2/assets", json=nul_name), 400)
    for constant in ("NaN", "Infinity", "-Infinity"):
        raw = json.dumps(url_body()).replace('"input"', f'"extra": {constant}, "input"')
        response = client.post(
            "/v2/generate", content=raw, headers={"content-type": "application/json"}
        )
        assert_error(response, 400)
    files = {"video": ("v", media("video/grid_bbaf2n.mpg").read_bytes())}
    assert_error(client.post("/v2/generate", data={"model": "lipsync-2\x00"}, files=files), 400)


def test_normalization_is_idempotent() -> None:
    """The batch worker re-validates stored (normalized) payloads; that must be a no-op."""
    from openlipsync.api.validation import validate_generation

    body = url_body(
        input=[
            {"type": "video", "url": "https://x/v.mp4", "segments_frames": [[1.0, 5]]},
            {"type": "audio", "url": "https://x/a", "refId": "a"},
            {
                "type": "text",
                "refId": "t",
                "provider": {"name": "elevenlabs", "voiceId": "v", "script": "hi"},
            },
        ],
        segments=[
            {"startTime": 0, "endTime": 1, "audioInput": {"refId": "a"}},
            {
                "startTime": 1,
                "endTime": 2,
                "audioInput": {"refId": "t", "startTime": 0, "endTime": 1},
            },
        ],
        outputFileName="my file.mp4",
        options={"active_speaker_detection": {"auto_detect": "true"}, "pads": [1]},
    )
    once = validate_generation(body)
    assert validate_generation(once) == once
    assert once["outputFileName"] == "my_file"
    assert once["input"][0]["segments_frames"] == [[1, 5]]
    assert once["options"]["active_speaker_detection"] == {"auto_detect": True}


def test_file_wins_over_url_for_the_same_slot(client: httpx.Client) -> None:
    inputs = [
        {"type": "video", "url": "https://a/ignored.mp4", "segments_secs": [[0, 1.5]]},
        {"type": "audio", "url": "https://a/b.wav"},
    ]
    files = {"video": ("clip.mpg", media("video/grid_bbaf2n.mpg").read_bytes())}
    response = client.post(
        "/v2/generate",
        data={"model": "lipsync-2", "input": json.dumps(inputs)},
        files=files,
    )
    assert response.status_code == 201, response.text
    video = response.json()["input"][0]
    assert video["type"] == "video" and "url" not in video and video["assetId"]
    assert video["segments_secs"] == [[0, 1.5]]  # the rest of the item is kept
    asset = client.get(f"/v2/assets/{video['assetId']}").json()
    assert asset["name"] == "clip.mpg" and asset["format"] == "mpg"


def test_duration_estimator_and_counts(client: httpx.Client) -> None:
    for path in ("/v2/generations/estimate", "/v2/generate/estimate-cost"):
        response = client.post(path, json={"model": "lipsync-2", "duration": 10, "fps": 25})
        assert response.status_code == 200, response.text
        assert response.json() == {
            "estimatedFrameCount": 250,
            "estimatedGenerationCost": 0.4,
            "estimatedCredits": None,
        }
    default_fps = client.post("/v2/generations/estimate", json={"model": "sync-3", "duration": 2})
    assert default_fps.json()["estimatedFrameCount"] == 60
    for bad in (
        {"model": "x", "duration": 1},
        {"model": "lipsync-2", "duration": 0},
        {"model": "lipsync-2", "duration": "long"},
        {"model": "lipsync-2", "duration": 1, "fps": -1},
        {"model": "lipsync-2", "duration": 1, "reasoningEnabled": "maybe"},
    ):
        assert_error(client.post("/v2/generations/estimate", json=bad), 400)

    before = client.get("/v2/generations/count", params={"status": "PENDING"}).json()["count"]
    client.post("/v2/generate", json=url_body())
    after = client.get("/v2/generations/count", params={"status": "PENDING"}).json()["count"]
    assert after == before + 1
    assert_error(client.get("/v2/generations/count", params={"status": "NOPE"}), 400)
    total = client.get("/v2/assets/count").json()
    assert isinstance(total, int) and total == client.get("/v2/assets").json()["totalCount"]
    assert_error(client.get("/v2/assets/count", params={"types": "NOPE"}), 400)
