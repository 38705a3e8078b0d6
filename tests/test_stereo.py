"""A stereo driving track stays stereo in the output.

A dub's sound is a mix: dialogue in the middle, music and effects spread wide. The output once
carried it as mono, an audible loss on every stereo mix. Here the left channel is one real
recording (ARCTIC a0009) and the right another (LibriVox), so a swap, a downmix or a lost
channel all show: each output channel must follow its own recording and not the other; in
the single pass, the chunked join and a segments mix. A 5.1 mix is folded down to stereo;
mono, and a layout FFmpeg cannot fold (64 channels), stay mono; the lip model hears mono.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from openlipsync.engine import GenerateRequest, generate
from openlipsync.engine.chunks import (
    _save_sound,
    chunk_bounds,
    join,
    load_plan,
    render_chunk,
    write_plan,
)
from openlipsync.engine.request import SegmentAudio
from openlipsync.media.audio import AudioClip, FileAudioClip, load_audio, load_audio_to_file
from openlipsync.media.encode import VideoWriter
from tests.conftest import media_path
from tests.poison_media import many_channels_wav, pcm_wav

RATE = 16000
SECONDS = 3.0


def _speech(name: str) -> np.ndarray:
    return load_audio(media_path(f"speech/{name}"), RATE).samples[: int(SECONDS * RATE)]


@pytest.fixture(scope="module")
def sides() -> np.ndarray:
    """(n, 2): ARCTIC on the left, LibriVox on the right, 3 s at 16 kHz."""
    left, right = _speech("arctic_a0009.wav"), _speech("librivox_austen_0870.wav")
    return np.column_stack([left, right]).astype(np.float32)


@pytest.fixture(scope="module")
def stereo_wav(tmp_path_factory: pytest.TempPathFactory, sides: np.ndarray) -> Path:
    return _wav(tmp_path_factory.mktemp("stereo") / "two_voices.wav", sides)


def _wav(path: Path, samples: np.ndarray) -> Path:
    """16-bit PCM of float (frames, channels) samples at RATE."""
    return pcm_wav(path, (np.clip(samples, -1, 1) * 32767).astype(np.int16), RATE)


def _follows(heard: np.ndarray, sides: np.ndarray, rate: int) -> None:
    """Each channel of `heard` (at `rate`) tracks its own side's envelope, not the other's."""

    def envelope(x: np.ndarray, r: int) -> np.ndarray:
        hop = r // 50  # 20 ms
        n = len(x) // hop
        return np.sqrt((x[: n * hop].reshape(n, hop) ** 2).mean(axis=1))

    assert heard.ndim == 2 and heard.shape[1] == 2, heard.shape
    for channel in (0, 1):
        got = envelope(heard[:, channel], rate)
        own, other = (envelope(sides[:, c], RATE) for c in (channel, 1 - channel))
        n = min(len(got), len(own))
        same = np.corrcoef(got[:n], own[:n])[0, 1]
        swapped = np.corrcoef(got[:n], other[:n])[0, 1]
        assert same > 0.95 and swapped < 0.5, (channel, same, swapped)


def _output_sound(path: Path) -> tuple[int, np.ndarray, int]:
    """(channels, (n, channels) samples, rate) of the first audio stream."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        channels, rate = stream.codec_context.channels, stream.codec_context.sample_rate
        planes = [f.to_ndarray() for f in container.decode(stream)]
    return channels, np.concatenate(planes, axis=1).T, rate


def test_a_stereo_file_loads_as_two_channels_and_anything_else_as_one(
    tmp_path: Path, stereo_wav: Path, sides: np.ndarray
) -> None:
    clip = load_audio_to_file(stereo_wav, tmp_path / "s.f32", 48000, stereo=True)
    assert clip.channels == 2 and clip.duration == pytest.approx(SECONDS, abs=1e-3)
    _follows(np.asarray(clip.samples), sides, 48000)
    mixed = load_audio_to_file(stereo_wav, tmp_path / "m.f32", RATE)  # analysis: the mix
    assert mixed.channels == 1
    np.testing.assert_allclose(mixed.samples, sides.mean(axis=1), atol=2e-4)
    mono = load_audio_to_file(
        media_path("speech/arctic_a0009.wav"), tmp_path / "1.f32", 48000, stereo=True
    )
    assert mono.channels == 1 and mono.samples.ndim == 1
    wide = load_audio_to_file(many_channels_wav(tmp_path), tmp_path / "64.f32", 48000, True)
    assert wide.channels == 1  # FFmpeg cannot rematrix 64 channels to stereo: their mean


def test_a_file_backed_stereo_clip_pads_cuts_reads_and_saves_whole_frames(
    tmp_path: Path, stereo_wav: Path
) -> None:
    clip = load_audio_to_file(stereo_wav, tmp_path / "s.f32", RATE, stereo=True)
    whole = np.array(clip.samples)
    longer = clip.padded_to(SECONDS + 1.0)
    assert longer.samples.shape == (int((SECONDS + 1) * RATE), 2)
    assert np.array_equal(longer.samples[: len(whole)], whole)
    assert not np.asarray(longer.samples[len(whole) :]).any()  # silence on both sides
    shorter = clip.padded_to(1.0)
    assert np.array_equal(shorter.samples, whole[:RATE])
    window = shorter.window(RATE - 10, 20)  # runs past the end: silence there
    assert window.shape == (20, 2)
    assert np.array_equal(window[:10], whole[RATE - 10 : RATE]) and not window[10:].any()
    in_memory = AudioClip(whole, RATE)
    assert np.array_equal(in_memory.padded_to(4.0).samples[: len(whole)], whole)
    assert in_memory.window(len(whole) - 1, 3).shape == (3, 2)
    _save_sound(clip, tmp_path / "sound.npy")  # the chunk plan's sound, read by the join
    saved = FileAudioClip.open_npy(tmp_path / "sound.npy", RATE)
    assert saved.channels == 2 and np.array_equal(saved.samples, whole)
    np.save(tmp_path / "three.npy", np.zeros((5, 3, 2), np.float32))
    with pytest.raises(ValueError, match="expected float32 samples"):
        FileAudioClip.open_npy(tmp_path / "three.npy", RATE)


def test_the_writer_encodes_each_channel_as_its_own(tmp_path: Path, sides: np.ndarray) -> None:
    out = tmp_path / "stereo.mp4"
    frame = np.full((64, 64, 3), 128, np.uint8)
    with VideoWriter(out, 64, 64, 25.0, AudioClip(sides, RATE)) as writer:
        for _ in range(int(SECONDS * 25)):
            writer.write(frame)
    channels, heard, rate = _output_sound(out)
    assert channels == 2 and rate == RATE
    _follows(heard, sides, rate)


def test_a_stereo_dub_comes_out_stereo_from_the_single_pass_and_the_chunked_join(
    tmp_path: Path, stereo_wav: Path, sides: np.ndarray
) -> None:
    video = media_path("video/grid_bbaf2n.mpg")
    request = GenerateRequest(video, stereo_wav, tmp_path / "single.mp4", sync_mode="cut_off")
    result = generate(request)
    channels, heard, rate = _output_sound(result.output)
    assert channels == 2 and len(heard) / rate == pytest.approx(result.duration, abs=0.03)
    _follows(heard, sides, rate)

    plan_path = tmp_path / "plan.npz"
    summary = write_plan(request, plan_path)
    plan, parts = load_plan(plan_path), []
    for index, (start, stop) in enumerate(chunk_bounds(summary.frame_count, summary.fps, 1.0)):
        parts.append(tmp_path / f"chunk-{index}.mp4")
        render_chunk(plan, video, start, stop, parts[-1])
    joined = join(load_plan(plan_path, sound=True), parts, tmp_path / "joined.mp4")
    channels, heard, rate = _output_sound(joined.output)
    assert channels == 2
    _follows(heard, sides, rate)

    mono = GenerateRequest(
        video, media_path("speech/arctic_a0009.wav"), tmp_path / "mono.mp4", sync_mode="cut_off"
    )
    assert _output_sound(generate(mono).output)[0] == 1


def test_a_stereo_segment_over_a_mono_video_makes_a_stereo_mix(
    tmp_path: Path, stereo_wav: Path, sides: np.ndarray
) -> None:
    """GRID's own sound is mono; the segment [1, 2) s lays the stereo track's [1, 2) s over it:
    the mix is stereo, its two sides apart inside the segment and equal (mono) outside."""
    video = media_path("video/grid_bbaf2n.mpg")
    segment = SegmentAudio(1.0, 2.0, stereo_wav, 1.0, 2.0)
    request = GenerateRequest(
        video,
        stereo_wav,
        tmp_path / "out.mp4",
        segments=[segment],
        segment_output=tmp_path / "segments.mp4",
    )
    result = generate(request)
    channels, heard, rate = _output_sound(result.output)
    assert channels == 2
    inside, outside = heard[int(1.1 * rate) : int(1.9 * rate)], heard[: int(0.9 * rate)]
    _follows(inside, sides[int(1.1 * RATE) : int(1.9 * RATE)], rate)
    assert np.abs(outside[:, 0] - outside[:, 1]).max() < 0.02 < np.abs(outside).max()
    channels, heard, rate = _output_sound(tmp_path / "segments.mp4")
    assert channels == 2 and len(heard) / rate == pytest.approx(1.0, abs=0.03)


def test_a_side_with_inverted_polarity_does_not_cancel_the_voice(
    tmp_path: Path, sides: np.ndarray
) -> None:
    """L = speech, R = -speech: their mean is silence, and the lips would never move."""
    voice = sides[:, 0]
    path = _wav(tmp_path / "inverted.wav", np.column_stack([voice, -voice]))
    heard = load_audio(path, RATE).samples
    n = min(len(heard), len(voice))
    assert np.corrcoef(heard[:n], voice[:n])[0, 1] > 0.99
    assert np.sqrt(np.mean(heard**2)) > 0.5 * np.sqrt(np.mean(voice**2))


def _surround(path: Path, planes: np.ndarray) -> Path:
    """A 5.1 AAC file (FL FR FC LFE BL BR) of six planes at RATE."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=RATE, layout="5.1")
        for start in range(0, planes.shape[1], 1024):
            part = np.ascontiguousarray(planes[:, start : start + 1024], np.float32)
            frame = av.AudioFrame.from_ndarray(part, format="fltp", layout="5.1")
            frame.sample_rate, frame.pts = RATE, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def test_a_5_1_mix_folds_down_to_stereo_with_its_centre_dialogue_on_both_sides(
    tmp_path: Path, sides: np.ndarray
) -> None:
    """Dialogue in the centre channel only, as film mixes have it: the mean of six channels
    left it at a sixth (-16 dB); FFmpeg's downmix puts it on both sides at -3 dB."""
    voice = sides[:, 0]
    planes = np.zeros((6, len(voice)), np.float32)
    planes[2] = voice
    clip = load_audio_to_file(
        _surround(tmp_path / "film.m4a", planes), tmp_path / "f.f32", RATE, stereo=True
    )
    assert clip.channels == 2
    level = np.sqrt(np.mean(np.asarray(clip.samples) ** 2, axis=0)) / np.sqrt(np.mean(voice**2))
    assert np.all((level > 0.6) & (level < 0.8)), level


def test_the_lips_hear_a_surround_mixs_dialogue_channel_not_its_music(
    tmp_path: Path, sides: np.ndarray
) -> None:
    """ARCTIC in the centre, LibriVox (standing in for music and effects) on the four other
    full channels: the analysis follows ARCTIC. With the centre unused it takes the mean."""
    dialogue, bed = sides[:, 0], sides[:, 1]
    planes = np.zeros((6, len(dialogue)), np.float32)
    planes[2], planes[[0, 1, 4, 5]] = dialogue, bed
    film = _surround(tmp_path / "film.m4a", planes)
    planes[2] = 0.0
    no_centre = _surround(tmp_path / "music.m4a", planes)
    for heard in (
        load_audio(film, RATE).samples,
        load_audio_to_file(film, tmp_path / "a", RATE).samples,
    ):
        heard = heard[: len(bed)]  # AAC's priming and padding
        _follows(np.column_stack([heard, bed[: len(heard)]]), sides[: len(heard)], RATE)
    for heard in (
        load_audio(no_centre, RATE).samples,
        load_audio_to_file(no_centre, tmp_path / "b", RATE).samples,
    ):
        heard = heard[: len(dialogue)]
        _follows(np.column_stack([dialogue[: len(heard)], heard]), sides[: len(heard)], RATE)
    assert not list(tmp_path.glob("*.centre"))  # the side file is gone either way
