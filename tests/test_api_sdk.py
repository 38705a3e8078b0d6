"""The official Python SDK (syncsdk 0.3.0) against a live uvicorn server, base URL changed only.

Runs on SQLite and on PostgreSQL. No worker is attached, so generations stay PENDING — which
is exactly what the hosted API answers right after a create.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import test_api_support as support
from sync import Sync
from sync.common import (
    ActiveSpeaker,
    Audio,
    BadRequestError,
    ElevenLabs,
    GenerationOptions,
    GenerationSegment,
    NotFoundError,
    SegmentAudioInput,
    UnauthorizedError,
    Video,
)
from sync.common.types.tts import Tts
from test_api_support import LiveServer, media, url_body

database_url = support.database_url  # fixture
live = support.live  # fixture


VIDEO_URL = "https://media.example/v.mp4"
AUDIO_URL = "https://media.example/a.wav"


@pytest.fixture(scope="module")
def sdk(live: LiveServer) -> Sync:
    return Sync(base_url=live.base_url, api_key=live.key, timeout=30)


def test_create_get_and_list(sdk: Sync, live: LiveServer) -> None:
    created = sdk.generations.create(
        model="lipsync-2",
        input=[Video(url=VIDEO_URL), Audio(url=AUDIO_URL)],
        options=GenerationOptions(
            sync_mode="cut_off",
            temperature=0.3,
            active_speaker_detection=ActiveSpeaker(auto_detect=True),
        ),
        output_file_name="my out!",
    )
    assert created.status == "PENDING"
    assert created.model == "lipsync-2"
    assert created.options.sync_mode == "cut_off"
    assert created.created_at.tzinfo is not None  # parsed from "...Z"
    assert created.output_url is None
    assert created.model_extra["outputFileName"] == "my_out"
    assert created.id in live.enqueued.generations

    fetched = sdk.generations.get(created.id)
    assert fetched.id == created.id and fetched.input[0].url == VIDEO_URL

    pending = sdk.generations.list(status=["PENDING"])
    assert created.id in {g.id for g in pending}
    assert sdk.generations.list(status=["COMPLETED", "FAILED"]) == []
    by_id = sdk.generations.list(ids=[created.id])
    assert [g.id for g in by_id] == [created.id]


def test_create_with_segments_and_tts(sdk: Sync) -> None:
    created = sdk.generations.create(
        model="lipsync-2-pro",
        input=[
            Video(url=VIDEO_URL),
            Audio(url=AUDIO_URL, ref_id="a1"),
            Tts(
                provider=ElevenLabs(voice_id="v", script="hello there", stability=0.5),
                ref_id="t1",
            ),
        ],
        segments=[
            GenerationSegment(
                start_time=0.0, end_time=1.5, audio_input=SegmentAudioInput(ref_id="a1")
            ),
            GenerationSegment(
                start_time=1.5, end_time=3.0, audio_input=SegmentAudioInput(ref_id="t1")
            ),
        ],
        webhook_url="https://hooks.example/done",
    )
    assert created.segments is not None and len(created.segments) == 2
    assert created.webhook_url == "https://hooks.example/done"


def test_create_with_files_uses_real_media(sdk: Sync, live: LiveServer) -> None:
    video = media("video/grid_bbaf2n.mpg").read_bytes()
    audio = media("speech/librivox_austen_0870.wav").read_bytes()
    created = sdk.generations.create_with_files(model="lipsync-2", video=video, audio=audio)
    assert created.status == "PENDING"
    asset_ids = [item.asset_id for item in created.input]
    assert all(asset_ids)
    assert asset_ids[0] in live.enqueued.thumbnails  # the video's, not the sound's
    assert asset_ids[1] not in live.enqueued.thumbnails

    asset = sdk.assets.get(asset_ids[0])
    assert asset.type == "VIDEO" and asset.input_type == "UPLOAD"
    assert asset.duration_seconds == pytest.approx(2.98, abs=0.05)
    assert (asset.width, asset.height) == (360, 288)
    page = sdk.assets.list(types=["AUDIO"], limit=5)
    assert asset_ids[1] in {item.id for item in page.items}
    assert all(item.type == "AUDIO" for item in page.items)
    assert page.total_count >= 1

    cost = sdk.generations.estimate_cost(
        model="lipsync-2", input=[Video(asset_id=asset_ids[0]), Audio(asset_id=asset_ids[1])]
    )
    assert len(cost) == 1
    # loop: output follows the 7.1 s audio at the video's 25 fps
    assert cost[0].estimated_frame_count == pytest.approx(7.1 * 25, abs=3)
    assert cost[0].estimated_generation_cost == pytest.approx(
        cost[0].estimated_frame_count * 0.0016
    )


def test_create_with_files_file_wins_over_url(sdk: Sync) -> None:
    """Python cannot send an `input` object in multipart; a pre-serialised string works."""
    video = media("video/grid_lbax4n.mpg")
    with video.open("rb") as handle:
        created = sdk.generations.create_with_files(
            model="lipsync-2",
            video=handle,
            input=[json.dumps({"type": "audio", "url": AUDIO_URL})],  # type: ignore[list-item]
        )
    kinds = {item.type: item for item in created.input}
    assert kinds["video"].asset_id and kinds["audio"].url == AUDIO_URL


def test_models_list(sdk: Sync) -> None:
    models = sdk.models.list()
    assert {m.name for m in models} == {
        "lipsync-2",
        "lipsync-1.9.0-beta",
        "lipsync-2-pro",
        "react-1",
        "sync-3",
    }
    assert {m.type for m in models} == {"lipsync", "react"}
    assert all(m.description for m in models)


def _jsonl(lines: int) -> bytes:
    body = url_body()
    return "\n".join(
        json.dumps({"request_id": f"r-{i}", "endpoint": "/v2/generate", "payload": body})
        for i in range(lines)
    ).encode()


def test_batch_create_get_list(sdk: Sync, live: LiveServer) -> None:
    validated = sdk.batch.create(input=_jsonl(20), dry_run=True)
    assert validated.status == "VALIDATED"

    batch = sdk.batch.create(input=_jsonl(25), webhook_url="https://hooks.example/batch")
    assert batch.status == "PENDING"
    assert batch.metrics.total_generations == 25 and batch.metrics.pending_count == 25
    assert batch.output_url == "" and batch.webhook_url == "https://hooks.example/batch"
    assert batch.id in live.enqueued.batches

    assert sdk.batch.get(batch.id).id == batch.id
    listed = sdk.batch.list(status="PENDING")
    assert batch.id in {b.id for b in listed}
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    assert batch.id in {b.id for b in sdk.batch.list(created_after=past)}
    assert sdk.batch.list(created_before=past) == []


def test_typed_errors(sdk: Sync, live: LiveServer) -> None:
    with pytest.raises(NotFoundError) as missing:
        sdk.generations.get("00000000-0000-0000-0000-000000000000")
    assert missing.value.body.status_code == 404
    with pytest.raises(NotFoundError):
        sdk.assets.get("nope")
    with pytest.raises(NotFoundError):
        sdk.batch.get("nope")
    with pytest.raises(BadRequestError) as bad:
        sdk.generations.create(model="lipsync-2", input=[Video(url=VIDEO_URL)])
    assert "audio" in json.dumps(bad.value.body.message)
    with pytest.raises(BadRequestError):
        sdk.batch.create(input=b"{not json")
    with pytest.raises(UnauthorizedError):
        Sync(base_url=live.base_url, api_key="sk-ols-wrong").models.list()


def test_other_tenant_sees_nothing(sdk: Sync, live: LiveServer) -> None:
    mine = sdk.generations.create(
        model="lipsync-2", input=[Video(url=VIDEO_URL), Audio(url=AUDIO_URL)]
    )
    other = Sync(base_url=live.base_url, api_key=live.other_key)
    with pytest.raises(NotFoundError):
        other.generations.get(mine.id)
    assert mine.id not in {g.id for g in other.generations.list()}


def test_base_url_with_path_prefix_is_not_supported_but_trailing_slash_is(live: LiveServer) -> None:
    client = Sync(base_url=live.base_url + "/", api_key=live.key)
    assert len(client.models.list()) == 5
