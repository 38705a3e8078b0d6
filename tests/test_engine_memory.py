"""Memory that does not grow with the input's length (issue #2: under 2 GiB for 3 hours).

The output audio lives in a scratch file (FileAudioClip) instead of memory: it must give the
same samples, the same timelines and the same encoded file as the in-memory clip, and its
scratch folder must go away however the run ends. The track is smoothed in place by blocks:
the same values as one whole-run pass, with working memory that does not scale with the run.
"""

from __future__ import annotations

import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from openlipsync.engine import GenerateRequest, generate
from openlipsync.engine.errors import Cancelled, NoFaceFound
from openlipsync.engine.request import SYNC_MODES
from openlipsync.engine.tracking import FaceTrack, smooth_in_place, smooth_track
from openlipsync.media.audio import AudioClip, FileAudioClip, load_audio, load_audio_to_file
from openlipsync.media.encode import VideoWriter
from openlipsync.media.timeline import plan_timeline
from tests.conftest import media_path
from tests.media_helpers import coded_packets, write_vfr

SPEECH = media_path("speech/librivox_austen_0870.wav")


@pytest.mark.parametrize("rate", [16_000, 48_000])
def test_audio_decoded_to_a_file_is_the_same_as_in_memory(tmp_path: Path, rate: int) -> None:
    memory = load_audio(media_path("video/grid_bbaf2n.mpg"), rate)
    on_disk = load_audio_to_file(media_path("video/grid_bbaf2n.mpg"), tmp_path / "a.f32", rate)
    assert isinstance(on_disk, FileAudioClip) and on_disk.sample_rate == rate
    assert np.array_equal(np.asarray(on_disk.samples), memory.samples)
    for start, count in [(0, 1024), (len(memory.samples) - 100, 1024), (10**9, 16)]:
        assert np.array_equal(on_disk.window(start, count), memory.window(start, count))


@pytest.mark.parametrize("mode", SYNC_MODES)
def test_file_backed_output_audio_encodes_identically(tmp_path: Path, mode: str) -> None:
    """Every sync_mode cuts or pads the output audio: both clips give one timeline and one file."""
    memory = load_audio(SPEECH, 48_000)
    on_disk = load_audio_to_file(SPEECH, tmp_path / "speech.f32", 48_000)
    audio_frames = round(memory.duration * 25)
    for video_frames in (audio_frames // 2, audio_frames + 30):  # audio longer, video longer
        a = plan_timeline(video_frames, 25.0, memory, mode)
        b = plan_timeline(video_frames, 25.0, on_disk, mode)
        assert np.array_equal(a.src_index, b.src_index) and a.frame_count == b.frame_count
        assert np.array_equal(np.asarray(b.audio.samples), a.audio.samples)
        files = []
        for name, timeline in (("memory", a), ("disk", b)):
            path = tmp_path / f"{mode}_{video_frames}_{name}.mp4"
            with VideoWriter(path, 64, 64, 25.0, timeline.audio, preset="ultrafast") as writer:
                for index in range(timeline.frame_count):
                    writer.write(np.full((64, 64, 3), index % 256, np.uint8))
            files.append(coded_packets(path))
        assert files[0] == files[1]


def _plan_scratch(folder: Path) -> list[Path]:
    return list(folder.glob("openlipsync-plan-*"))


@pytest.mark.slow
def test_plan_scratch_is_removed_on_success_cancel_and_failure(
    tmp_path: Path, grid_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    seen: set[str] = set()

    def watch(stage: str, fraction: float) -> None:
        seen.update(file.name for folder in _plan_scratch(scratch) for file in folder.iterdir())

    generate(GenerateRequest(grid_video, SPEECH, tmp_path / "ok.mp4"), progress=watch)
    # The track and every sound (the GRID clip has its own) were files, not memory.
    assert {"track.f32", "output.f32", "analysis.f32", "source.f32"} <= seen, seen
    assert _plan_scratch(scratch) == []

    calls = {"n": 0}

    def cancel_during_render() -> bool:
        calls["n"] += 1
        return calls["n"] > 12

    with pytest.raises(Cancelled):
        generate(
            GenerateRequest(grid_video, SPEECH, tmp_path / "cancel.mp4"),
            should_cancel=cancel_during_render,
        )
    assert _plan_scratch(scratch) == []

    blank = write_vfr(tmp_path / "blank.mp4", [40 * k for k in range(25)], size=(96, 64))
    with pytest.raises(NoFaceFound):
        generate(GenerateRequest(blank, SPEECH, tmp_path / "noface.mp4"))
    assert _plan_scratch(scratch) == []


def _noisy_track(frames: int) -> FaceTrack:
    rng = np.random.default_rng(1)
    face = rng.uniform(100, 300, (478, 2)).astype(np.float32)
    time = np.arange(frames)[:, None, None]
    landmarks = face + 20 * np.sin(time / 50.0) + rng.normal(0, 1.5, (frames, 478, 2))
    present = np.ones(frames, bool)
    present[[700, 701, 2500]] = False
    landmarks[~present] = np.nan
    return FaceTrack(landmarks.astype(np.float32), present)


def test_smoothing_by_blocks_equals_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    track = _noisy_track(3000)
    whole = smooth_track(track, 25.0).landmarks  # runs of 700, 1799 and 499 frames
    monkeypatch.setattr("openlipsync.engine.tracking.SMOOTH_BLOCK", 97)
    blocks = smooth_track(track, 25.0).landmarks
    assert np.array_equal(whole, blocks, equal_nan=True)


def test_smoothing_memory_does_not_grow_with_the_run() -> None:
    """One 12000-frame run (8 minutes, 46 MB of landmarks) in place: the working memory is a
    few blocks, where a whole-run pass held several float64 copies (hundreds of MB)."""
    track = _noisy_track(12_000)
    tracemalloc.start()
    try:
        smooth_in_place(track.landmarks, track.present, 25.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 96 * 2**20
    assert np.isfinite(track.landmarks[track.present]).all()


def test_plan_sound_is_saved_by_blocks_and_read_back_from_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunked join reads the plan's sound from its .npy file a window at a time."""
    from openlipsync.engine import chunks

    monkeypatch.setattr(chunks, "SOUND_BLOCK", 1000)
    memory = load_audio(SPEECH, 48_000)
    chunks._save_sound(load_audio_to_file(SPEECH, tmp_path / "s.f32", 48_000), tmp_path / "s.npy")
    assert np.array_equal(np.load(tmp_path / "s.npy"), memory.samples)
    back = FileAudioClip.open_npy(tmp_path / "s.npy", 48_000)
    assert np.array_equal(back.window(0, len(memory.samples) + 5)[:-5], memory.samples)
    np.save(tmp_path / "wrong.npy", memory.samples.astype(np.float64))
    with pytest.raises(ValueError):
        FileAudioClip.open_npy(tmp_path / "wrong.npy", 48_000)


def test_audio_features_of_a_file_clip_equal_those_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The analysis sounds live in scratch files; features and loudness read them by chunks."""
    from openlipsync.engine.audio_features import extract
    from openlipsync.engine.speaker import loudness_per_frame

    monkeypatch.setattr("openlipsync.engine.audio_features.CHUNK_HOPS", 37)
    memory = load_audio(SPEECH, 16_000)
    on_disk = load_audio_to_file(SPEECH, tmp_path / "a.f32", 16_000)
    frames = round(memory.duration * 25) + 40  # past the end: silence
    a, b = extract(memory, 25.0, frames, lead=0.04), extract(on_disk, 25.0, frames, lead=0.04)
    for name, values in vars(a).items():
        assert np.array_equal(values, getattr(b, name)), name
    assert np.array_equal(
        loudness_per_frame(memory.samples, 16_000, 25.0, frames),
        loudness_per_frame(on_disk.samples, 16_000, 25.0, frames),
    )
    # A corrupt stretch far into the file (past the first chunk) is silence, as in memory.
    broken = memory.samples.copy()
    broken[100_000:100_050] = np.nan
    broken.tofile(tmp_path / "broken.f32")
    a = extract(AudioClip(broken, 16_000), 25.0, frames)
    b = extract(FileAudioClip.open(tmp_path / "broken.f32", 16_000), 25.0, frames)
    assert np.isfinite(b.mfcc).all() and np.isfinite(b.level).all()
    for name, values in vars(a).items():
        assert np.array_equal(values, getattr(b, name)), name


@pytest.mark.slow
def test_analysis_with_the_track_in_a_file_equals_one_in_memory(
    tmp_path: Path, grid_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline keeps the track in a scratch file; the smoothed track is the same."""
    from openlipsync.engine import analysis, tracking
    from openlipsync.engine.render import MouthRenderer
    from openlipsync.engine.run_state import RunState
    from openlipsync.media.probe import probe

    monkeypatch.setattr(tracking, "RELEASE_ROWS", 5)
    video = probe(grid_video).video
    assert video is not None
    tracks = []
    for path in (None, tmp_path / "track.f32"):
        renderer = MouthRenderer(video.width, video.height, video.fps)
        try:
            result = analysis.analyse(grid_video, video, renderer, RunState(), track_file=path)
        finally:
            renderer.close()
        tracks.append(result.track)
    assert isinstance(tracks[1].landmarks, np.memmap)
    assert np.array_equal(tracks[0].present, tracks[1].present) and tracks[0].present.any()
    assert np.array_equal(tracks[0].landmarks, tracks[1].landmarks, equal_nan=True)
