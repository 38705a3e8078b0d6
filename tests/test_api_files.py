"""Signed links, the upload → PUT → register flow, outputs, long-poll and asset paging.

The worker's part (writing an output and marking the row COMPLETED) is done here directly
through the storage and the database, exactly as the worker does it.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import test_api_support as support
from sqlalchemy import update
from test_api_support import LiveServer, media, url_body

from openlipsync.api import probe as api_probe
from openlipsync.store.models import Asset, Generation
from tests.media_helpers import (
    heic_photo,
    recorded_webm,
    transcode,
    vbr_mp3,
    with_cover_art,
)

database_url = support.database_url  # fixture
live = support.live  # fixture


@pytest.fixture(scope="module")
def client(live: LiveServer):
    with live.client() as http:
        yield http


def complete(live: LiveServer, generation_id: str, output_key: str, **values) -> None:  # type: ignore[no-untyped-def]
    with live.app.state.sessions() as session:
        session.execute(
            update(Generation)
            .where(Generation.id == generation_id)
            .values(status="COMPLETED", output_key=output_key, output_duration=19.7, **values)
        )
        session.commit()


def test_output_url_works_without_key_and_supports_range(
    live: LiveServer, client: httpx.Client
) -> None:
    source = media("video/pexels_woman_expressions.mp4")
    created = client.post("/v2/generate", json=url_body(outputFileName="final cut")).json()
    key = f"outputs/{created['id']}/output.mp4"
    live.app.state.storage.put_file(key, source)
    complete(live, created["id"], key)

    done = client.get(f"/v2/generate/{created['id']}", params={"include": "progress"}).json()
    assert done["status"] == "COMPLETED" and done["progress_percent"] == 100
    assert done["outputDuration"] == 19.7
    url = done["outputUrl"]
    assert url.startswith(live.base_url + "/v2/files/")
    assert done["outputUrl"] == client.get(f"/v2/generate/{created['id']}").json()["outputUrl"]

    with httpx.Client() as browser:  # no x-api-key
        full = browser.get(url)
        assert full.status_code == 200 and full.content == source.read_bytes()
        assert full.headers["content-type"] == "video/mp4"
        assert "final_cut.mp4" in full.headers["content-disposition"]
        part = browser.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == source.read_bytes()[100:200]
        assert part.headers["content-range"].startswith("bytes 100-199/")
        assert browser.head(url).status_code == 200

        tampered = url.replace("sig=", "sig=0")
        assert browser.get(tampered).status_code == 403
        assert browser.get(tampered).json()["errorCode"] == "invalid_signature"
        query = parse_qs(urlparse(url).query)
        expired = url.replace(f"exp={query['exp'][0]}", "exp=1000")
        assert browser.get(expired).status_code == 403
        traversal = f"{live.base_url}/v2/files/..%2F..%2Fsigning.key?exp=9999999999&sig=x"
        assert browser.get(traversal).status_code in (403, 404)

    text = client.get(f"/v2/generations/{created['id']}/download")
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert text.text.startswith(live.base_url + "/v2/files/")

    deleted = client.delete(f"/v2/generations/{created['id']}")
    assert deleted.status_code == 200 and deleted.json()["id"] == created["id"]
    assert not live.app.state.storage.exists(key)
    assert client.get(f"/v2/generate/{created['id']}").status_code == 404
    with httpx.Client() as browser:
        assert browser.get(url).status_code == 404


def test_deleting_survives_a_file_that_will_not_go(live: LiveServer, client: httpx.Client) -> None:
    """The row is committed gone first; a stored file that cannot be removed (here a directory
    where the file was) is left as a harmless orphan, not answered with a 500."""
    storage = live.app.state.storage
    created = client.post("/v2/generate", json=url_body()).json()
    stuck = f"outputs/{created['id']}/stuck.mp4"
    (storage.path(stuck) / "inside").mkdir(parents=True)
    complete(live, created["id"], stuck)
    deleted = client.delete(f"/v2/generations/{created['id']}")
    assert deleted.status_code == 200 and deleted.json()["id"] == created["id"]
    assert client.get(f"/v2/generate/{created['id']}").status_code == 404

    audio = media("speech/arctic_a0009.wav").read_bytes()
    ticket = client.post(
        "/v2/assets/upload",
        json={"fileName": "v.wav", "contentType": "audio/wav", "size": len(audio)},
    ).json()
    with httpx.Client() as anonymous:
        anonymous.put(ticket["uploadUrl"], content=audio, headers={"Content-Type": "audio/wav"})
    asset = client.post("/v2/assets", json={"url": ticket["url"], "type": "AUDIO"}).json()
    with live.app.state.sessions() as session:
        key = session.get(Asset, asset["id"]).storage_key
    storage.path(key).unlink()
    (storage.path(key) / "inside").mkdir(parents=True)
    assert client.delete(f"/v2/assets/{asset['id']}").status_code == 200
    assert client.get(f"/v2/assets/{asset['id']}").status_code == 404


def test_long_poll_returns_when_the_generation_finishes(
    live: LiveServer, client: httpx.Client
) -> None:
    created = client.post("/v2/generate", json=url_body()).json()
    timer = threading.Timer(0.6, complete, args=(live, created["id"], "outputs/x.mp4"))
    timer.start()
    started = time.monotonic()
    response = client.get(f"/v2/generate/{created['id']}", params={"wait": "true", "timeout": 5})
    elapsed = time.monotonic() - started
    timer.join()
    assert response.status_code == 200 and response.json()["status"] == "COMPLETED"
    assert 0.5 < elapsed < 4
    assert response.headers["X-Sync-Wait-Mode"] == "long_poll"
    assert response.headers["X-Sync-Wait-Timeout-Seconds"] == "5"

    pending = client.post("/v2/generate", json=url_body()).json()
    started = time.monotonic()
    response = client.get(f"/v2/generate/{pending['id']}", params={"wait": "true", "timeout": 1})
    assert response.json()["status"] == "PENDING" and 0.9 < time.monotonic() - started < 3


def test_upload_put_register_flow(live: LiveServer, client: httpx.Client) -> None:
    audio = media("speech/arctic_a0009.wav").read_bytes()
    ticket = client.post(
        "/v2/assets/upload",
        json={"fileName": "my voice.wav", "contentType": "audio/wav", "size": len(audio)},
    )
    assert ticket.status_code == 201, ticket.text
    ticket_body = ticket.json()
    assert ticket_body["expiresIn"] > 0
    with httpx.Client() as anonymous:
        assert anonymous.put(ticket_body["uploadUrl"] + "0", content=audio).status_code == 403
        put = anonymous.put(
            ticket_body["uploadUrl"], content=audio, headers={"Content-Type": "audio/wav"}
        )
        assert put.status_code == 200 and put.json()["size"] == len(audio)

    asset = client.post(
        "/v2/assets", json={"url": ticket_body["url"], "type": "AUDIO", "name": "Voice"}
    )
    assert asset.status_code == 201, asset.text
    registered = asset.json()
    assert registered["inputType"] == "UPLOAD" and registered["size"] == len(audio)
    assert registered["durationSeconds"] == pytest.approx(3.0, abs=0.6)
    with httpx.Client() as anonymous:
        assert anonymous.get(registered["url"]).content == audio

    # Usable as a generation input right away.
    body = url_body()
    body["input"][1] = {"type": "audio", "assetId": registered["id"]}
    assert client.post("/v2/generate", json=body).status_code == 201
    # A VIDEO slot refuses an AUDIO asset.
    body["input"] = [
        {"type": "video", "assetId": registered["id"]},
        {"type": "audio", "url": "https://a/b"},
    ]
    assert client.post("/v2/generate", json=body).status_code == 400

    # Another organisation cannot register (or see) this upload.
    with live.client(live.other_key) as other:
        assert (
            other.post("/v2/assets", json={"url": ticket_body["url"], "type": "AUDIO"}).status_code
            == 400
        )
        assert other.get(f"/v2/assets/{registered['id']}").status_code == 404

    deleted = client.delete(f"/v2/assets/{registered['id']}")
    assert deleted.status_code == 200
    assert client.get(f"/v2/assets/{registered['id']}").status_code == 404


def _uploaded(client: httpx.Client, path, content_type: str) -> str:  # type: ignore[no-untyped-def]
    """The `url` to register of the file at `path`, put through the upload flow."""
    data = path.read_bytes()
    ticket = client.post(
        "/v2/assets/upload",
        json={"fileName": path.name, "contentType": content_type, "size": len(data)},
    ).json()
    with httpx.Client() as anonymous:
        assert anonymous.put(ticket["uploadUrl"], content=data).status_code == 200
    return ticket["url"]


def test_a_phone_photo_registers_as_an_image(
    live: LiveServer, client: httpx.Client, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    photo = heic_photo(media("photo/obama.jpg"), tmp_path / "IMG_0001.HEIC", tile=512)
    url = _uploaded(client, photo, "image/heic")
    as_video = client.post("/v2/assets", json={"url": url, "type": "VIDEO"})
    assert as_video.status_code == 400 and "IMAGE" in as_video.json()["message"]
    asset = client.post("/v2/assets", json={"url": url, "type": "IMAGE"})
    assert asset.status_code == 201, asset.text
    body = asset.json()
    assert (body["type"], body["format"], body["width"], body["height"]) == (
        "IMAGE",
        "heic",
        910,
        1137,
    )
    assert body["id"] in live.enqueued.thumbnails and body["thumbnailUrl"] is None  # not yet


def test_a_phone_video_held_upright_registers_with_its_shown_size(
    client: httpx.Client, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Stored landscape with a quarter-turn matrix, as phones record it: 288 x 360 as shown."""
    clip = transcode(
        media("video/grid_bbaf2n.mpg"), tmp_path / "IMG_0002.MOV", "libx264", "aac", rotation=90
    )
    url = _uploaded(client, clip, "video/quicktime")
    asset = client.post("/v2/assets", json={"url": url, "type": "VIDEO"})
    assert asset.status_code == 201, asset.text
    assert (asset.json()["width"], asset.json()["height"]) == (288, 360)


def test_a_song_with_its_album_cover_registers_as_audio(client: httpx.Client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """FFmpeg lists an MP3's cover as a video stream: the API took the song for a 64x64 video
    at 90000 fps (a VIDEO asset if asked, and the cover's size on an AUDIO one)."""
    song = with_cover_art(media("speech/arctic_a0009.wav"), tmp_path / "episode.mp3")
    url = _uploaded(client, song, "audio/mpeg")
    as_video = client.post("/v2/assets", json={"url": url, "type": "VIDEO"})
    assert as_video.status_code == 400 and "AUDIO, not VIDEO" in as_video.json()["message"]
    asset = client.post("/v2/assets", json={"url": url, "type": "AUDIO"})
    assert asset.status_code == 201, asset.text
    body = asset.json()
    assert (body["type"], body["format"], body["width"], body["height"]) == (
        "AUDIO",
        "mp3",
        None,
        None,
    )
    assert body["durationSeconds"] == pytest.approx(3.1, abs=0.1)


@pytest.mark.parametrize("kind", ["VIDEO", "AUDIO"])
def test_a_browser_recording_registers_with_its_duration(
    client: httpx.Client, tmp_path, kind: str
) -> None:  # type: ignore[no-untyped-def]
    """A MediaRecorder WebM (a web app's webcam or voice recording) has no duration in its
    header: it was registered with durationSeconds null, and estimated at 0 USD."""
    recording = recorded_webm(
        media("video/grid_bbaf2n.mpg"), tmp_path / "recording.webm", picture=kind == "VIDEO"
    )
    url = _uploaded(client, recording, "video/webm" if kind == "VIDEO" else "audio/webm")
    asset = client.post("/v2/assets", json={"url": url, "type": kind})
    assert asset.status_code == 201, asset.text
    assert asset.json()["durationSeconds"] == pytest.approx(3.0, abs=0.05)


def test_a_duration_is_left_unknown_past_the_packet_budget(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Finding it reads packets: a file of endless tiny ones must not hold the request."""
    recording = recorded_webm(media("video/grid_bbaf2n.mpg"), tmp_path / "recording.webm")
    assert api_probe.probe(recording).duration == pytest.approx(3.0, abs=0.05)
    monkeypatch.setattr(api_probe, "SCAN_PACKETS", 50)  # the clip has 75 frames
    assert api_probe.probe(recording).duration is None


@pytest.mark.parametrize("kind", ["mp3", "mp3 without its VBR header", "adts"])
def test_an_audio_files_duration_is_its_own_not_a_bitrate_guess(tmp_path, kind: str) -> None:  # type: ignore[no-untyped-def]
    """FFmpeg guesses a raw MP3's or AAC's length from its first frames' bitrate: a VBR MP3
    without its header was 6.25 s for 7.10, an ADTS file 6.86."""
    speech = media("speech/librivox_austen_0870.wav")
    if kind == "adts":
        path = transcode(speech, tmp_path / "voice.aac", None, "aac", container_format="adts")
    else:
        path = vbr_mp3(speech, tmp_path / "voice.mp3", vbr_header=kind == "mp3")
    assert api_probe.probe(path).duration == pytest.approx(7.10, abs=0.08)  # + priming


def test_upload_flow_refuses_bad_input(client: httpx.Client) -> None:
    for bad in (
        {"fileName": "", "contentType": "x", "size": 1},
        {"fileName": "a", "contentType": "x", "size": -1},
        [1],
    ):
        assert client.post("/v2/assets/upload", json=bad).status_code == 400
    huge = client.post(
        "/v2/assets/upload", json={"fileName": "a", "contentType": "x", "size": 10**15}
    )
    assert huge.status_code == 422 and huge.json()["errorCode"] == "file_size_exceeds_plan_limit"

    ticket = client.post(
        "/v2/assets/upload", json={"fileName": "t.mp4", "contentType": "video/mp4", "size": 40}
    ).json()
    not_yet = client.post("/v2/assets", json={"url": ticket["url"], "type": "VIDEO"})
    assert not_yet.status_code == 400 and "PUT" in not_yet.json()["message"]
    httpx.put(ticket["uploadUrl"], content=b"plain text pretending to be a video")
    fake = client.post("/v2/assets", json={"url": ticket["url"], "type": "VIDEO"})
    assert fake.status_code == 400 and fake.json()["errorCode"] == "invalid_media"
    for bad in (
        {"url": "file:///etc/passwd", "type": "VIDEO"},
        {"url": "https://a/b", "type": "SMELL"},
        {"type": "VIDEO"},
    ):
        assert client.post("/v2/assets", json=bad).status_code == 400


def test_register_public_url_and_page_through_assets(live: LiveServer) -> None:
    with live.client(live.other_key) as http:  # a fresh organisation's library
        names = ["b-clip.mp4", "a-song.wav", "c-photo.png", "d-take.mp4", "e-voice.mp3"]
        kinds = ["VIDEO", "AUDIO", "IMAGE", "VIDEO", "AUDIO"]
        for name, kind in zip(names, kinds, strict=True):
            response = http.post(
                "/v2/assets", json={"url": f"https://cdn.example/{name}", "type": kind}
            )
            assert response.status_code == 201 and response.json()["inputType"] == "URL"
            assert response.json()["id"] in live.enqueued.thumbnails  # to be fetched and read
        before = http.get("/v2/assets", params={"limit": 100}).json()["totalCount"]
        seen, cursor = [], None
        while True:
            params = {"limit": 2, "sortBy": "nameAsc", "searchQuery": "-"}
            if cursor:
                params["cursor"] = cursor
            page = http.get("/v2/assets", params=params).json()
            seen += [item["name"] for item in page["items"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert seen == sorted(seen) and set(names) <= set(seen)
        assert page["totalCount"] == len(seen) <= before
        videos = http.get("/v2/assets", params=[("types", "VIDEO"), ("types", "IMAGE")]).json()
        assert {item["type"] for item in videos["items"]} == {"VIDEO", "IMAGE"}
        search = http.get("/v2/assets", params={"searchQuery": "SONG"}).json()
        assert [item["name"] for item in search["items"]] == ["a-song.wav"]
        assert http.get("/v2/assets", params={"searchQuery": "%"}).json()["totalCount"] == 0
