"""A real worker on real (and deliberately wrong) media fetched from a real local HTTP server:
every way a generation can fail must end FAILED with its precise `error_code`, quickly."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from PIL import Image
from sqlalchemy import select

from openlipsync.jobs import dispatch
from openlipsync.jobs.celery_app import configure
from openlipsync.store.models import Asset
from tests.conftest import media_path
from tests.http_media import serve_directory
from tests.test_jobs_helpers import (
    add_generation,
    job_settings,
    load,
    new_organization,
    open_db,
    openlipsync_command,
    process,
    settings_env,
    wait_until,
)


@pytest.fixture(scope="module")
def media_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Serves real media and the bad files under predictable names."""
    root = tmp_path_factory.mktemp("www")
    for name, source in {
        "grid.mpg": "video/grid_bbaf2n.mpg",
        "speech.wav": "speech/librivox_austen_0870.wav",
        "long.flac": "speech/jfk_inaugural.flac",
    }.items():
        (root / name).write_bytes(media_path(source).read_bytes())
    (root / "notes.txt").write_text("this is a text file, not a video\n" * 50)
    (root / "page.html").write_text("<!doctype html><html><body>Sign in</body></html>")
    (root / "garbage.mp4").write_bytes(bytes(range(256)) * 200)
    gray = io.BytesIO()
    Image.new("RGB", (320, 240), (128, 128, 128)).save(gray, format="PNG")
    (root / "gray.png").write_bytes(gray.getvalue())
    with serve_directory(root) as url:
        yield url


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    data = tmp_path_factory.mktemp("deployment")
    # 10 s limit: the 11 s JFK speech is too long, the 3 s GRID clips are fine.
    settings = job_settings(data / "data", max_input_seconds=10.0)
    sessions = open_db(settings)
    configure(settings)
    _key, org_id, _secret = new_organization(sessions)
    command, log = openlipsync_command("worker"), data / "worker.log"
    with process(command, settings_env(settings), log, kill_group=True):
        yield sessions, org_id


def _run(worker, server: str, video: str, audio: str, timeout: float = 240):  # type: ignore[no-untyped-def]
    sessions, org_id = worker
    configure_inputs = [
        {"type": "video", "url": f"{server}/{video}"},
        {"type": "audio", "url": f"{server}/{audio}"},
    ]
    generation_id = add_generation(sessions, org_id, input=configure_inputs)
    dispatch.enqueue_generation(generation_id)

    def terminal():  # type: ignore[no-untyped-def]
        generation = load(sessions, generation_id)
        return generation if generation.status in ("COMPLETED", "FAILED") else None

    return wait_until(terminal, timeout)


@pytest.mark.parametrize(
    ("video", "audio", "code"),
    [
        ("notes.txt", "speech.wav", "generation_media_unreadable"),
        ("page.html", "speech.wav", "generation_input_video_inaccessible"),
        ("missing.mp4", "speech.wav", "generation_input_video_inaccessible"),
        ("grid.mpg", "missing.wav", "generation_input_audio_inaccessible"),
        ("garbage.mp4", "speech.wav", "generation_media_unreadable"),
        ("grid.mpg", "long.flac", "generation_audio_length_exceeded"),
    ],
)
def test_bad_inputs_fail_before_the_engine(worker, media_server, video, audio, code) -> None:  # type: ignore[no-untyped-def]
    generation = _run(worker, media_server, video, audio, timeout=60)
    assert (generation.status, generation.error_code) == ("FAILED", code), generation.error
    assert generation.error and generation.output_key is None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("video", "code"),
    [
        ("speech.wav", "generation_video_missing"),  # an audio file given as the video
        ("gray.png", "generation_no_face_detected"),  # a picture without a face
    ],
)
def test_engine_failures_have_precise_codes(worker, media_server, video, code) -> None:  # type: ignore[no-untyped-def]
    generation = _run(worker, media_server, video, "speech.wav")
    assert (generation.status, generation.error_code) == ("FAILED", code), generation.error


@pytest.mark.slow
def test_url_inputs_complete(worker, media_server) -> None:  # type: ignore[no-untyped-def]
    generation = _run(worker, media_server, "grid.mpg", "speech.wav")
    assert generation.status == "COMPLETED", (generation.error_code, generation.error)
    assert generation.output_key and generation.output_duration > 2.5
    assert generation.progress == 100 and generation.attempts == 1


def test_text_input_without_a_configured_provider_fails_clearly(worker, media_server) -> None:  # type: ignore[no-untyped-def]
    sessions, org_id = worker
    inputs = [
        {"type": "video", "url": f"{media_server}/grid.mpg"},
        {
            "type": "text",
            "provider": {"name": "elevenlabs", "voiceId": "21m00Tcm4TlvDq8ikWAM", "script": "Hi"},
        },
    ]
    generation_id = add_generation(sessions, org_id, input=inputs)
    dispatch.enqueue_generation(generation_id)
    generation = wait_until(
        lambda: (lambda g: g if g.status == "FAILED" else None)(load(sessions, generation_id)), 60
    )
    assert generation.error_code == "tts_provider_not_configured", generation.error


@pytest.mark.slow
def test_text_input_spoken_by_the_local_voice_completes(worker, media_server) -> None:  # type: ignore[no-untyped-def]
    sessions, org_id = worker
    inputs = [
        {"type": "video", "url": f"{media_server}/grid.mpg"},
        {"type": "text", "provider": {"name": "elevenlabs", "voiceId": "joe", "script": "Hello."}},
    ]
    generation_id = add_generation(sessions, org_id, input=inputs)
    dispatch.enqueue_generation(generation_id)

    def terminal():  # type: ignore[no-untyped-def]
        generation = load(sessions, generation_id)
        return generation if generation.status in ("COMPLETED", "FAILED") else None

    generation = wait_until(terminal, 240)
    assert generation.status == "COMPLETED", (generation.error_code, generation.error)
    assert generation.synthesized_audio_key
    with sessions() as session:  # the speech joined the media library
        speech = session.scalars(select(Asset).where(Asset.input_type == "TTS")).all()
    assert [a.storage_key for a in speech] == [generation.synthesized_audio_key]
