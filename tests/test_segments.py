"""Segments without the engine: the exact frame/sample arithmetic, and how the worker turns a
generation's `segments` (or the deprecated ranges) into local files, on real media over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from openlipsync.engine.request import SegmentAudio
from openlipsync.engine.scenes import frame_runs
from openlipsync.engine.segments import (
    compose_audio,
    fit_audio,
    frame_window,
    from_frames,
    from_seconds,
    lipsync_mask,
    output_frames,
    segment_only_audio,
    segment_timeline,
)
from openlipsync.jobs.inputs import InputError, fetch_inputs, plan_inputs
from openlipsync.media.audio import AudioClip, FileAudioClip
from openlipsync.store.files import open_storage
from openlipsync.store.models import Generation
from tests.conftest import media_path
from tests.http_media import serve_directory
from tests.test_jobs_helpers import add_generation, job_settings, new_organization, open_db

RATE = 1000  # 40 samples per frame at 25 fps: easy to reason about
FPS = 25.0
A = Path("a.wav")


def ramp_clip(seconds: float, offset: float = 0.0) -> AudioClip:
    """Sample value = its own time in seconds (+ offset): shows exactly which samples moved."""
    count = round(seconds * RATE)
    return AudioClip((np.arange(count, dtype=np.float32) / RATE + offset), RATE)


def test_windows_snap_to_frames_and_clip_to_the_video() -> None:
    def window(start: float, end: float) -> tuple[int, int]:
        return frame_window(SegmentAudio(start, end, A), FPS, 75)

    assert window(1.0, 2.0) == (25, 50)
    assert window(1.01, 1.03) == (25, 26)  # snapped to whole frames
    assert window(1.0, 1.0) == (25, 25)  # zero length: nothing
    assert window(2.5, 9.0) == (63, 75)  # 62.5 rounds half up; past the end: clipped
    assert window(4.0, 5.0) == (75, 75)  # entirely past the end: nothing
    assert window(1e12, 1e12 + 1) == (75, 75)  # hostile numbers stay harmless


def test_mask_runs_and_still_length() -> None:
    segments = [SegmentAudio(0.2, 0.4, A), SegmentAudio(0.3, 0.6, A), SegmentAudio(2.0, 2.0, A)]
    mask = lipsync_mask(segments, FPS, 75)
    assert mask.sum() == 10 and frame_runs(mask) == [(5, 15)]  # overlap merged, empty ignored
    assert frame_runs(np.zeros(5, bool)) == [] and frame_runs(np.ones(3, bool)) == [(0, 3)]
    assert output_frames(segments, FPS, 75, still=False) == 75
    assert output_frames(segments, FPS, 1, still=True) == 50  # a photo lasts to the last end
    assert output_frames([], FPS, 1, still=True) == 1


@pytest.mark.parametrize("on_disk", [False, True])
def test_composite_keeps_the_base_outside_and_fits_each_segment_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_disk: bool
) -> None:
    """In memory, and mixed into a scratch file (as the pipeline does) by small blocks."""
    monkeypatch.setattr("openlipsync.engine.segments.MIX_BLOCK", 777)
    base = AudioClip(np.full(3 * RATE, -0.5, np.float32), RATE)  # the video's own sound
    long_driver = ramp_clip(5.0)  # longer than its window: cut
    short_driver = ramp_clip(0.1, offset=0.25)  # shorter: silence-padded
    parts = [
        (SegmentAudio(0.4, 1.0, long_driver_path := Path("long.wav"), 2.0, 4.0), long_driver),
        (SegmentAudio(1.6, 2.0, Path("short.wav")), short_driver),
        (SegmentAudio(2.6, 9.0, long_driver_path), long_driver),  # clipped at the video end
    ]
    mixed = compose_audio(base, parts, FPS, 75, into=tmp_path / "mix.f32" if on_disk else None)
    assert isinstance(mixed, FileAudioClip) == on_disk
    out = mixed.samples
    assert len(out) == 3 * RATE
    assert np.all(out[:400] == -0.5) and np.all(out[1000:1600] == -0.5)
    assert np.all(out[2000:2600] == -0.5)
    # [0.4, 1.0) plays the driver's seconds [2.0, 4.0) from 2.0 on, cut at the window end.
    np.testing.assert_allclose(out[410:990], np.arange(410, 990) / RATE - 0.4 + 2.0, atol=1e-6)
    # [1.6, 2.0): 0.1 s of the short driver then silence (the 5 ms edge fade aside).
    np.testing.assert_allclose(out[1605:1700], np.arange(5, 100) / RATE + 0.25, atol=1e-6)
    assert np.all(out[1700:1995] == 0)
    np.testing.assert_allclose(out[2610:2995], np.arange(10, 395) / RATE, atol=1e-6)
    # The edges fade instead of jumping (no click).
    assert -0.5 < out[400] < 2.0 and abs(out[401] - out[400]) < 0.5


def test_a_later_segment_overrides_an_earlier_overlapping_one() -> None:
    base = AudioClip(np.zeros(RATE, np.float32), RATE)
    one, two = ramp_clip(1.0, 10.0), ramp_clip(1.0, 20.0)
    parts = [(SegmentAudio(0.0, 0.8, A), one), (SegmentAudio(0.4, 0.8, A), two)]
    out = compose_audio(base, parts, FPS, 25).samples
    assert 10 <= out[300] < 11 and 20 <= out[500] < 21


def test_crop_needs_both_bounds_and_rates_must_match() -> None:
    clip = ramp_clip(2.0)
    assert fit_audio(SegmentAudio(0, 1, A, 1.5, 1.7), clip, 400)[199] == pytest.approx(1.699)
    assert fit_audio(SegmentAudio(0, 1, A, 1.5, 1.7), clip, 400)[200:].max() == 0
    assert fit_audio(SegmentAudio(0, 1, A, 5.0, 9.0), clip, 10).max() == 0  # crop past the end
    assert fit_audio(SegmentAudio(0, 1, A), clip, 10)[9] == pytest.approx(0.009)
    with pytest.raises(ValueError, match="Hz"):
        compose_audio(clip, [(SegmentAudio(0, 1, A), AudioClip(clip.samples, 8000))], FPS, 25)


def test_timeline_and_segment_only_audio() -> None:
    segments = [SegmentAudio(0.2, 0.4, A), SegmentAudio(1.0, 1.2, A)]
    audio = ramp_clip(2.0)
    timeline = segment_timeline(segments, FPS, 50, audio)
    assert timeline.frame_count == 50 and timeline.duration == 2.0
    assert np.array_equal(timeline.src_index, np.arange(50)) and timeline.lipsync.sum() == 10
    assert segment_timeline(segments, FPS, 50, audio, still=True).src_index.max() == 0
    only = segment_only_audio(timeline.audio, frame_runs(timeline.lipsync), FPS)
    assert only.duration == pytest.approx(0.4)
    assert only.samples[0] == pytest.approx(0.2) and only.samples[200] == pytest.approx(1.0)


def test_deprecated_ranges_lay_the_driver_on_the_video_timeline() -> None:
    assert from_seconds([[1.0, 2.0]], A) == [SegmentAudio(1.0, 2.0, A, 1.0, 2.0)]
    assert from_frames([[25, 50]], 25.0, A) == [SegmentAudio(1.0, 2.0, A, 1.0, 2.0)]
    with pytest.raises(ValueError):
        from_frames([[0, 1]], 0.0, A)


# --- the worker's side: resolving inputs -------------------------------------------------------


@pytest.fixture(scope="module")
def media_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("www")
    for name, source in {
        "grid.mpg": "video/grid_bbaf2n.mpg",
        "other.mpg": "video/grid_swiz3n.mpg",
        "speech.wav": "speech/arctic_a0009.wav",
    }.items():
        (root / name).write_bytes(media_path(source).read_bytes())
    with serve_directory(root) as url:
        yield url


@pytest.fixture
def resolve(tmp_path: Path, media_server: str):  # type: ignore[no-untyped-def]
    """Plan and fetch one generation's inputs exactly as the worker does."""
    settings = job_settings(tmp_path / "data", max_input_seconds=10.0)
    sessions = open_db(settings)
    _key, org_id, _ = new_organization(sessions)
    storage = open_storage(settings)

    def run(inputs: list[dict], segments: list[dict] | None = None):  # type: ignore[no-untyped-def]
        for item in inputs:
            if "url" in item:
                item["url"] = f"{media_server}/{item['url']}"
        generation_id = add_generation(sessions, org_id, input=inputs, segments=segments)
        with sessions() as session:
            generation = session.get(Generation, generation_id)
            assert generation is not None
            plan = plan_inputs(session, generation)
        workdir = tmp_path / generation_id
        workdir.mkdir()
        return fetch_inputs(plan, workdir, storage, settings)

    return run


def test_worker_resolves_each_referenced_driver_once(resolve) -> None:  # type: ignore[no-untyped-def]
    local = resolve(
        [
            {"type": "video", "url": "grid.mpg"},
            {"type": "audio", "url": "other.mpg", "refId": "a"},
            {"type": "audio", "url": "speech.wav", "refId": "b"},
            {"type": "audio", "url": "missing.wav", "refId": "unused"},  # never fetched
        ],
        [
            {"startTime": 0.5, "endTime": 1.0, "audioInput": {"refId": "b"}},
            {
                "startTime": 1.5,
                "endTime": 2.5,
                "audioInput": {"refId": "a", "startTime": 1.0, "endTime": 2.0},
            },
            {"startTime": 2.6, "endTime": 2.9, "audioInput": {"refId": "b"}},
        ],
    )
    assert local.segments is not None and len(local.segments) == 3
    first, second, third = local.segments
    assert (first.start, first.end, first.audio_start, first.audio_end) == (0.5, 1.0, None, None)
    assert (second.audio_start, second.audio_end) == (1.0, 2.0)
    assert first.audio == third.audio != second.audio and local.audio == first.audio
    assert first.audio.read_bytes() == media_path("speech/arctic_a0009.wav").read_bytes()


@pytest.mark.parametrize(
    ("video", "expected"),
    [
        ({"segments_secs": [[1.0, 2.0], [2.5, 2.5]]}, [(1.0, 2.0), (2.5, 2.5)]),
        ({"segments_frames": [[25, 50]]}, [(1.0, 2.0)]),  # GRID is 25 fps
    ],
)
def test_worker_turns_deprecated_ranges_into_segments(resolve, video, expected) -> None:  # type: ignore[no-untyped-def]
    local = resolve(
        [{"type": "video", "url": "grid.mpg", **video}, {"type": "audio", "url": "speech.wav"}]
    )
    flat = [x for pair in expected for x in pair]
    assert [x for s in local.segments for x in (s.start, s.end)] == pytest.approx(flat)
    assert [x for s in local.segments for x in (s.audio_start, s.audio_end)] == pytest.approx(flat)
    assert all(s.audio == local.audio for s in local.segments)


def test_top_level_segments_win_over_deprecated_ranges(resolve) -> None:  # type: ignore[no-untyped-def]
    local = resolve(
        [
            {"type": "video", "url": "grid.mpg", "segments_secs": [[0.0, 3.0]]},
            {"type": "audio", "url": "speech.wav", "refId": "a"},
        ],
        [{"startTime": 1.0, "endTime": 2.0, "audioInput": {"refId": "a"}}],
    )
    assert [(s.start, s.end) for s in local.segments] == [(1.0, 2.0)]


@pytest.mark.parametrize(
    ("inputs", "segments", "code"),
    [
        (  # a segment naming a refId no input carries (the API refuses it; the worker too)
            [{"type": "video", "url": "grid.mpg"}, {"type": "audio", "url": "speech.wav"}],
            [{"startTime": 0, "endTime": 1, "audioInput": {"refId": "ghost"}}],
            "generation_audio_missing",
        ),
        (  # segments but no driver at all
            [{"type": "video", "url": "grid.mpg"}],
            [{"startTime": 0, "endTime": 1, "audioInput": {"refId": "a"}}],
            "generation_audio_missing",
        ),
        (  # a referenced driver that cannot be fetched
            [
                {"type": "video", "url": "grid.mpg"},
                {"type": "audio", "url": "speech.wav", "refId": "a"},
                {"type": "audio", "url": "gone.wav", "refId": "b"},
            ],
            [
                {"startTime": 0, "endTime": 1, "audioInput": {"refId": "a"}},
                {"startTime": 1, "endTime": 2, "audioInput": {"refId": "b"}},
            ],
            "generation_input_audio_inaccessible",
        ),
    ],
)
def test_bad_segment_inputs_fail_precisely(resolve, inputs, segments, code) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as info:
        resolve(inputs, segments)
    assert info.value.code == code and info.value.message


def test_text_drivers_are_spoken_for_their_segments(resolve) -> None:  # type: ignore[no-untyped-def]
    speak = {"name": "elevenlabs", "voiceId": "joe", "script": "Hello there."}
    local = resolve(
        [
            {"type": "video", "url": "grid.mpg"},
            {"type": "text", "provider": speak, "refId": "t"},
            {"type": "audio", "url": "speech.wav", "refId": "a"},
        ],
        [
            {"startTime": 0.0, "endTime": 1.0, "audioInput": {"refId": "a"}},
            {"startTime": 1.0, "endTime": 2.0, "audioInput": {"refId": "t"}},
        ],
    )
    spoken = local.segments[1].audio
    assert spoken.exists() and spoken != local.segments[0].audio
    assert local.synthesized_audio == spoken and local.phonemes is None
