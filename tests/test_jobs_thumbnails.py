"""Asset thumbnails (jobs/thumbnails.py): made from the stored file, on real storage and a
real database; a file that cannot be decoded gets none, and nothing fails. An asset registered
by URL is fetched from a real HTTP server on loopback and described as an upload would be."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from openlipsync.jobs.context import storage as open_storage
from openlipsync.jobs.thumbnails import NONE, WIDTH, make_thumbnail, missing
from openlipsync.media.video import VideoReader
from openlipsync.store.models import Asset, utcnow
from tests.conftest import media_path
from tests.http_media import serve_directory
from tests.media_helpers import heic_photo, psnr, scaled_copy, transcode
from tests.test_jobs_helpers import job_settings, new_organization, open_db

CLIP = media_path("video/pexels_woman_expressions.mp4")  # 640x360, 23.976 fps


def _asset(sessions, store, organization: str, kind: str, source: Path) -> str:  # type: ignore[no-untyped-def]
    key = f"assets/{organization}/{source.name}"
    store.put_file(key, source)
    with sessions() as session, session.begin():
        asset = Asset(organization_id=organization, type=kind, storage_key=key, name=source.name)
        session.add(asset)
        session.flush()
        return asset.id


def _thumbnail(sessions, store, asset_id: str) -> np.ndarray | None:  # type: ignore[no-untyped-def]
    with sessions() as session:
        key = session.get(Asset, asset_id).thumbnail_key
    if not key:
        return None
    data = np.frombuffer(store.path(key).read_bytes(), np.uint8)
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_a_video_and_a_phone_photo_get_thumbnails(tmp_path: Path) -> None:
    settings = job_settings(tmp_path / "data")
    sessions, store = open_db(settings), open_storage(settings)
    _, organization, _ = new_organization(sessions)
    video = _asset(sessions, store, organization, "VIDEO", CLIP)
    photo_file = heic_photo(media_path("photo/obama.jpg"), tmp_path / "IMG_0001.heic", tile=512)
    photo = _asset(sessions, store, organization, "IMAGE", photo_file)

    assert make_thumbnail(sessions, store, settings, video) == "made"
    assert make_thumbnail(sessions, store, settings, photo) == "made"
    assert make_thumbnail(sessions, store, settings, video) == "exists"

    small = _thumbnail(sessions, store, video)
    assert small is not None and small.shape == (270, WIDTH, 3)
    with VideoReader(CLIP) as reader:  # one second in: frame 24 at 23.976 fps
        second = next(f for i, f in enumerate(reader) if i == 24)
    expected = cv2.resize(second, (WIDTH, 270), interpolation=cv2.INTER_AREA)
    assert psnr(small, expected) > 32
    portrait = _thumbnail(sessions, store, photo)
    assert portrait is not None and portrait.shape == (600, WIDTH, 3)  # 910x1137, whole


def test_anamorphic_video_gets_a_thumbnail_of_its_shown_shape(tmp_path: Path) -> None:
    settings = job_settings(tmp_path / "data")
    sessions, store = open_db(settings), open_storage(settings)
    _, organization, _ = new_organization(sessions)

    def wide_pixels(stream) -> None:  # type: ignore[no-untyped-def]
        stream.codec_context.sample_aspect_ratio = Fraction(4, 3)  # 360x288 shown 480x288

    clip = scaled_copy(
        media_path("video/grid_bbaf2n.mpg"), tmp_path / "dv.mp4", (360, 288), 30, {}, wide_pixels
    )
    asset = _asset(sessions, store, organization, "VIDEO", clip)
    assert make_thumbnail(sessions, store, settings, asset) == "made"
    small = _thumbnail(sessions, store, asset)
    assert small is not None and small.shape == (288, 480, 3)


def test_unreadable_files_and_sounds_get_none(tmp_path: Path) -> None:
    settings = job_settings(tmp_path / "data")
    sessions, store = open_db(settings), open_storage(settings)
    _, organization, _ = new_organization(sessions)
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"plain text pretending to be a video" * 50)
    broken = _asset(sessions, store, organization, "VIDEO", fake)
    sound = _asset(sessions, store, organization, "AUDIO", media_path("speech/arctic_a0009.wav"))
    assert make_thumbnail(sessions, store, settings, broken) == "unreadable"
    assert make_thumbnail(sessions, store, settings, sound) == "none needed"
    assert make_thumbnail(sessions, store, settings, "no-such-asset") == "none needed"
    assert _thumbnail(sessions, store, broken) is None
    assert not (store.root / "thumbnails").exists()
    with sessions() as session:  # tried once: the reaper leaves it alone
        assert session.get(Asset, broken).thumbnail_key == NONE
    assert make_thumbnail(sessions, store, settings, broken) == "exists"


def _registered(sessions, organization: str, kind: str, url: str) -> str:  # type: ignore[no-untyped-def]
    with sessions() as session, session.begin():
        asset = Asset(organization_id=organization, type=kind, input_type="URL", source_url=url)
        session.add(asset)
        session.flush()
        return asset.id


def test_assets_registered_by_url_are_described_like_uploads(tmp_path: Path) -> None:
    settings = job_settings(tmp_path / "data")
    sessions, store = open_db(settings), open_storage(settings)
    _, organization, _ = new_organization(sessions)
    served = tmp_path / "served"
    served.mkdir()
    transcode(
        media_path("video/grid_bbaf2n.mpg"), served / "upright.mp4", "libx264", "aac", rotation=90
    )
    (served / "voice.flac").write_bytes(media_path("speech/jfk_inaugural.flac").read_bytes())
    (served / "face.jpg").write_bytes(media_path("photo/obama.jpg").read_bytes())
    (served / "page.mp4").write_text("<!doctype html><html>not a video</html>")
    with serve_directory(served) as base:
        ids = {
            name: _registered(sessions, organization, kind, f"{base}/{name}")
            for name, kind in (
                ("upright.mp4", "VIDEO"),
                ("voice.flac", "AUDIO"),
                ("face.jpg", "IMAGE"),
                ("page.mp4", "VIDEO"),
                ("gone.mp4", "VIDEO"),
            )
        }
        outcomes = {name: make_thumbnail(sessions, store, settings, i) for name, i in ids.items()}
    assert outcomes == {
        "upright.mp4": "made",
        "voice.flac": "described",
        "face.jpg": "made",
        "page.mp4": "unreadable",
        "gone.mp4": "unreadable",  # HTTP 404
    }
    with sessions() as session:
        rows = {name: session.get(Asset, i) for name, i in ids.items()}
        video, voice, face = rows["upright.mp4"], rows["voice.flac"], rows["face.jpg"]
        assert (video.width, video.height, video.fps) == (288, 360, 25.0)  # as shown
        assert abs(video.duration_seconds - 3.0) < 0.05
        assert video.size == (served / "upright.mp4").stat().st_size
        assert abs(voice.duration_seconds - 11.0) < 0.3 and voice.width is None
        assert voice.thumbnail_key == NONE and voice.size > 100_000
        assert (face.width, face.height, face.duration_seconds) == (910, 1137, None)
        for name in ("page.mp4", "gone.mp4"):
            row = rows[name]
            assert row.thumbnail_key == NONE and row.size is None and row.width is None
    portrait = _thumbnail(sessions, store, ids["upright.mp4"])
    assert portrait is not None and portrait.shape == (360, 288, 3)  # upright, not enlarged
    with sessions() as session:  # every one was read (or tried): the reaper leaves them
        assert not set(missing(session)) & set(ids.values())


def test_registered_urls_left_undescribed_are_found_by_the_reaper(tmp_path: Path) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    settings = job_settings(tmp_path / "data")
    sessions, _ = open_db(settings), open_storage(settings)
    _, organization, _ = new_organization(sessions)
    voice = _registered(sessions, organization, "AUDIO", "http://127.0.0.1:9/voice.wav")
    _registered(sessions, organization, "VIDEO", "http://127.0.0.1:9/new.mp4")
    with sessions() as session, session.begin():
        old = utcnow() - timedelta(minutes=5)
        session.execute(update(Asset).where(Asset.id == voice).values(updated_at=old))
    with sessions() as session:
        assert missing(session) == [voice]  # the fresh one may still be in the queue
        assert missing(session) == []  # touched: not again for a minute


def test_a_backlog_of_thumbnails_does_not_hold_a_webhook_up(tmp_path: Path) -> None:
    """The service worker takes from its queues in turn, on the real embedded broker: a
    webhook queued behind eight downloads is among the first two messages it gets (it was the
    ninth when all of them waited in one queue)."""
    from kombu import Consumer, Queue

    from openlipsync.jobs import dispatch
    from openlipsync.jobs.celery_app import configure
    from openlipsync.jobs.runner import _specs

    settings = job_settings(tmp_path / "data")
    app = configure(settings)
    for number in range(8):
        assert dispatch.send_thumbnail(f"asset-{number}")
    assert dispatch.send_delivery("the-webhook")
    (service_queues,) = [queues for name, queues, _, _ in _specs(1) if name == "service"]
    received: list[str] = []

    def take(body, message) -> None:  # type: ignore[no-untyped-def]
        args, _kwargs, _embed = body  # Celery's message protocol 2
        received.append(args[0])
        message.ack()

    with app.connection_for_read() as connection:
        channel = connection.default_channel
        channel.basic_qos(0, 1, False)  # one message at a time, as the worker's threads take them
        queues = [Queue(name) for name in service_queues]
        with Consumer(channel, queues, callbacks=[take], accept=["json"]):
            while len(received) < 9:
                connection.drain_events(timeout=10)
    assert "the-webhook" in received[:2], received
    assert sorted(received) == sorted([f"asset-{n}" for n in range(8)] + ["the-webhook"])
