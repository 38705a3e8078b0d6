"""Decoding every promised input format (made from the real GRID clip), stills, rotation, VFR."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from conftest import media_path
from media_helpers import (
    damaged,
    psnr,
    transcode,
    with_audio_tracks,
    with_sound_gap,
    write_vfr,
)
from PIL import Image

from openlipsync.api.probe import probe as api_probe
from openlipsync.engine.errors import AudioMissing, MediaUnreadable, VideoMissing
from openlipsync.media.audio import AudioClip, load_audio, load_audio_to_file
from openlipsync.media.picture import YuvPicture
from openlipsync.media.probe import probe
from openlipsync.media.timeline import plan_timeline
from openlipsync.media.video import FrameSource, VideoReader

VIDEO_VARIANTS = {
    "h264.mp4": ("libx264", "aac", {"preset": "ultrafast"}, "yuv420p"),
    "h264.mov": ("libx264", "aac", {"preset": "ultrafast"}, "yuv420p"),
    "h264.mkv": ("libx264", "libopus", {"preset": "ultrafast"}, "yuv420p"),
    "vp9.webm": ("libvpx-vp9", "libopus", {"deadline": "realtime", "cpu-used": "8"}, "yuv420p"),
    "mpeg1.mpg": ("mpeg1video", "mp2", {"qscale": "2"}, "yuv420p"),
    "mpeg2.mpg": ("mpeg2video", "mp2", {}, "yuv420p"),
    "mpeg4.avi": ("mpeg4", "libmp3lame", {}, "yuv420p"),
    "hevc.mp4": ("libx265", "aac", {"preset": "ultrafast", "x265-params": "log-level=error"}, ""),
    "prores.mov": ("prores_ks", "pcm_s16le", {}, "yuv422p10le"),
    "h264.ts": ("libx264", "aac", {"preset": "ultrafast"}, "yuv420p"),  # broadcast, camcorders
    "h264.flv": ("libx264", "aac", {"preset": "ultrafast"}, "yuv420p"),  # old web video
    "h264.3gp": ("libx264", "aac", {"preset": "ultrafast"}, "yuv420p"),  # old phones
    "mjpeg.avi": ("mjpeg", "pcm_s16le", {}, "yuvj420p"),  # webcams, cheap cameras
}
AUDIO_VARIANTS = {
    "speech.wav": "pcm_s16le",
    "speech.mp3": "libmp3lame",
    "speech.flac": "flac",
    "speech.m4a": "aac",
    "speech.ogg": "libopus",
    "speech.opus": "libopus",
    "speech.aiff": "pcm_s16be",  # Logic, GarageBand
    "speech.caf": "alac",  # Apple's recording apps
    "speech_alac.m4a": "alac",
    "speech_24bit.wav": "pcm_s24le",  # studio recorders
    "speech_float.wav": "pcm_f32le",  # DAW exports
    "speech_ulaw.wav": "pcm_mulaw",  # telephony
    "speech.ac3": "ac3",  # a film's dialogue stem
    "speech.wv": "wavpack",
}


@pytest.fixture(scope="module")
def grid() -> Path:
    return media_path("video/grid_bbaf2n.mpg")


@pytest.fixture(scope="module")
def variants(grid: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("variants")
    made = {}
    for name, (vcodec, acodec, options, pix_fmt) in VIDEO_VARIANTS.items():
        made[name] = transcode(grid, folder / name, vcodec, acodec, options, pix_fmt or "yuv420p")
    for name, acodec in AUDIO_VARIANTS.items():
        made[name] = transcode(grid, folder / name, None, acodec)
    made["rot90.mp4"] = transcode(
        grid, folder / "rot90.mp4", "libx264", None, {"qp": "0"}, rotation=90
    )
    made["rot270.mov"] = transcode(
        grid, folder / "rot270.mov", "libx264", None, {"qp": "0"}, rotation=270
    )
    made["silent.mp4"] = transcode(grid, folder / "silent.mp4", "libx264", None, {})
    return made


@pytest.fixture(scope="module")
def reference(grid: Path) -> list[np.ndarray]:
    with VideoReader(grid) as reader:
        return list(reader)


def test_reference_decode_is_exact_and_contiguous(reference: list[np.ndarray]) -> None:
    assert len(reference) == 75
    for frame in reference:
        assert frame.shape == (288, 360, 3) and frame.dtype == np.uint8
        assert frame.flags.c_contiguous


@pytest.mark.parametrize("name", sorted(VIDEO_VARIANTS))
def test_every_video_format_decodes_to_the_same_pictures(
    name: str, variants: dict[str, Path], reference: list[np.ndarray]
) -> None:
    info = probe(variants[name]).video
    assert info is not None and (info.width, info.height, info.fps) == (360, 288, 25.0)
    assert info.frame_count == 75
    with VideoReader(variants[name]) as reader:
        frames = list(reader)
    assert len(frames) == 75
    quality = [psnr(a, b) for a, b in zip(frames[::10], reference[::10], strict=True)]
    assert min(quality) > 28, quality


@pytest.mark.parametrize("name", sorted(AUDIO_VARIANTS))
def test_every_audio_format_loads_the_same_speech(name: str, variants, grid: Path) -> None:
    reference = load_audio(grid)
    clip = load_audio(variants[name])
    assert clip.sample_rate == 16000 and clip.samples.dtype == np.float32
    assert abs(clip.duration - reference.duration) < 0.05
    assert np.abs(clip.samples).max() <= 1.0
    assert _envelope_match(clip.samples, reference.samples) > 0.9


def _envelope_match(a: np.ndarray, b: np.ndarray) -> float:
    """Best correlation of 10 ms RMS envelopes within +-100 ms (codecs add priming delay)."""
    n = min(len(a), len(b)) // 160 * 160
    env_a, env_b = (np.sqrt((x[:n].reshape(-1, 160) ** 2).mean(1)) for x in (a, b))
    best = -1.0
    for lag in range(-10, 11):
        x, y = (env_a[lag:], env_b[: len(env_b) - lag]) if lag >= 0 else (env_a[:lag], env_b[-lag:])
        best = max(best, float(np.corrcoef(x, y)[0, 1]))
    return best


def test_audio_of_a_video_and_resampling(grid: Path) -> None:
    clip = load_audio(grid, sample_rate=48000)
    assert clip.sample_rate == 48000
    assert clip.duration == pytest.approx(2.978, abs=0.01)
    assert np.abs(clip.samples).mean() > 0.01  # real speech, not silence


DEFAULT, COMMENT = av.stream.Disposition.default, av.stream.Disposition.comment


@pytest.mark.parametrize(
    "flags,played",
    [
        ((0, DEFAULT), 1),  # another language first; the default one is played
        ((DEFAULT | COMMENT, DEFAULT), 1),  # the director's commentary is never the main sound
        ((DEFAULT, DEFAULT), 0),  # nothing to tell them apart: FFmpeg's order
        ((0, 0), 0),
    ],
)
def test_the_audio_track_a_player_plays_is_the_one_heard(
    tmp_path: Path, grid: Path, flags: tuple[int, int], played: int
) -> None:
    """A master or delivery file holds several tracks; the first one was always taken."""
    sounds = [media_path("speech/jfk_inaugural.flac"), media_path("speech/arctic_a0009.wav")]
    path = with_audio_tracks(grid, list(zip(sounds, flags, strict=True)), tmp_path / "two.mkv")
    expected = load_audio(sounds[played])
    info = probe(path).audio
    assert info is not None and info.duration == pytest.approx(expected.duration, abs=0.02)
    clip = load_audio(path)
    assert clip.duration == pytest.approx(expected.duration, abs=0.02)
    assert _envelope_match(clip.samples, expected.samples) > 0.99


@pytest.mark.parametrize("photo", ["photo/astronaut.png", "photo/obama.jpg"])
def test_stills_yield_one_frame(photo: str) -> None:
    with VideoReader(media_path(photo)) as reader:
        frames = list(reader)
        assert reader.info.is_still and reader.info.frame_count == 1
    assert len(frames) == 1
    assert frames[0].shape == (reader.info.height, reader.info.width, 3)


def test_webp_still(tmp_path: Path) -> None:
    src = media_path("photo/obama.jpg")
    with VideoReader(src) as reader:
        rgb = next(iter(reader))
    webp = tmp_path / "obama.webp"
    av.VideoFrame.from_ndarray(rgb, format="rgb24").to_image().save(webp, quality=95)
    info = probe(webp).video
    assert info is not None and info.is_still and info.frame_count == 1
    with VideoReader(webp) as reader:
        (frame,) = list(reader)
    assert frame.shape == rgb.shape and psnr(frame, rgb) > 30


def test_a_gif_that_does_not_move_is_a_photo_and_one_that_moves_a_video(tmp_path: Path) -> None:
    """FFmpeg gave a one-frame GIF 100 fps and ten frames: the output ran at 100 fps."""
    photo = Image.open(media_path("photo/obama.jpg")).convert("RGB")
    still, moving = tmp_path / "still.gif", tmp_path / "moving.gif"
    photo.convert("P").save(still)
    turns = [photo.rotate(angle).convert("P") for angle in range(6)]
    turns[0].save(moving, save_all=True, append_images=turns[1:], duration=100, loop=0)
    info = probe(still).video
    assert info is not None and (info.is_still, info.frame_count, info.fps) == (True, 1, 25.0)
    with VideoReader(still) as reader:
        (frame,) = list(reader)
    assert psnr(frame, np.asarray(Image.open(still).convert("RGB"))) > 40  # as Pillow reads it
    assert api_probe(still).kind == "IMAGE"
    info = probe(moving).video
    assert info is not None and not info.is_still
    assert (info.frame_count, info.fps) == (6, 10.0)
    assert api_probe(moving).kind == "VIDEO"


@pytest.mark.parametrize("name,rotation", [("rot90.mp4", 90), ("rot270.mov", 270)])
def test_rotation_metadata_is_honoured(name: str, rotation: int, variants, reference) -> None:
    info = probe(variants[name]).video
    assert info is not None and info.rotation == rotation
    assert (info.width, info.height) == (288, 360)
    with VideoReader(variants[name]) as reader:
        frames = list(reader)
    assert frames[0].shape == (360, 288, 3) and frames[0].flags.c_contiguous
    upright = np.rot90(reference[0], k=rotation // 90)  # counter-clockwise, like FFmpeg
    assert psnr(frames[0], upright) > 35
    assert psnr(frames[0], np.rot90(reference[0], k=-rotation // 90)) < 20


def test_jpeg_exif_orientation_is_honoured(tmp_path: Path) -> None:
    rgb = np.zeros((40, 80, 3), np.uint8)
    rgb[:10, :20] = 255  # a mark in the top-left corner of the stored picture
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display", as phones write portraits
    image.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    info = probe(tmp_path / "phone.jpg").video
    assert info is not None and (info.width, info.height, info.rotation) == (40, 80, 270)
    with VideoReader(tmp_path / "phone.jpg") as reader:
        (frame,) = list(reader)
    marked = np.argwhere(frame[..., 0] > 128)
    assert marked.min(0).tolist() == [0, 30] and marked.max(0).tolist() == [19, 39]  # top-right


def test_variable_frame_rate_is_normalised_by_timestamps(tmp_path: Path) -> None:
    starts = [0, 30, 80, 110, 160, 190, 240, 270, 320, 350, 400, 410, 420, 500]
    path = write_vfr(tmp_path / "vfr.mp4", starts)
    with VideoReader(path, fps=25) as reader:
        frames = list(reader)
    assert len(frames) == reader.info.frame_count == round(0.54 * 25)  # 540 ms at 25 fps
    shown = [int(round((f[..., 0].mean() - 10) / 4)) for f in frames]
    expected = [max(k for k, s in enumerate(starts) if s <= (i + 0.5) * 40) for i in range(14)]
    assert shown == expected[: len(frames)]


@pytest.mark.parametrize(
    ("step_ms", "rate"),
    [(39.87, 25.0), (33.47, 30000 / 1001), (33.33, 30.0), (80.0, 12.5), (42.55, 23.5)],
)
def test_a_recordings_averaged_rate_is_the_standard_one_near_it(
    tmp_path: Path, step_ms: float, rate: float
) -> None:
    """A browser's or phone's recording times each frame as it came: its average is 25.08
    fps for a 25 fps camera, and the output ran at that. Rates far from a standard one stay."""
    starts = [round(k * step_ms) for k in range(150)]
    info = probe(write_vfr(tmp_path / "recording.mp4", starts)).video
    assert info.fps == pytest.approx(rate, abs=1e-6)
    assert info.frame_count == round(info.duration * rate)


def test_reader_at_another_rate_drops_evenly(grid: Path, reference) -> None:
    with VideoReader(grid, fps=10) as reader:
        frames = list(reader)
    assert len(frames) == 30
    for i in (0, 7, 29):  # slot i shows source frame floor((i + 0.5) * 2.5)
        assert psnr(frames[i], reference[int((i + 0.5) * 2.5)]) == 99.0


def test_readers_given_the_probe_do_not_read_the_file_again(
    grid: Path, reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine probes its source once (every packet) and hands the result to its readers."""
    from openlipsync.media import seek, video

    source = probe(grid).video

    def no_second_probe(path: object) -> None:
        raise AssertionError(f"{path} probed again")

    monkeypatch.setattr(video, "probe", no_second_probe)
    with VideoReader(grid, fps=25, source=source) as reader:
        frames = list(reader)
    assert len(frames) == len(reference)
    assert all(np.array_equal(a, b) for a, b in zip(frames, reference, strict=True))
    with FrameSource(grid, fps=25, source=source) as frames_at:
        assert np.array_equal(frames_at.get(40), reference[40])
    seeking = seek.SeekingSource(grid, 25, source)
    try:
        assert np.array_equal(seeking.get(60), reference[60])
    finally:
        seeking.close()


def test_repeated_frames_are_independent_arrays(grid: Path, reference) -> None:
    with VideoReader(grid, fps=50) as reader:
        frames = []
        for frame in reader:
            frames.append(frame.copy())
            frame[:] = 0  # a renderer painting on its frame must not change the next one
    assert len(frames) == 150
    assert psnr(frames[0], reference[0]) == 99.0 and psnr(frames[1], reference[0]) == 99.0


def test_audio_only_file_as_video_and_silent_video_as_audio(variants) -> None:
    with pytest.raises(VideoMissing):
        VideoReader(variants["speech.wav"])
    with pytest.raises(AudioMissing):
        load_audio(variants["silent.mp4"])


@pytest.mark.parametrize("name", sorted(VIDEO_VARIANTS) + sorted(AUDIO_VARIANTS))
def test_truncated_files_fail_cleanly_or_decode_consistently(
    name: str, variants, tmp_path: Path
) -> None:
    """Cut at 30 % / 70 %: a precise error, or a shorter file whose every path agrees."""
    data = variants[name].read_bytes()
    for fraction in (0.3, 0.7):
        cut = tmp_path / f"cut{fraction}{variants[name].suffix}"
        cut.write_bytes(data[: int(len(data) * fraction)])
        try:
            info = probe(cut)
        except MediaUnreadable:
            with pytest.raises(MediaUnreadable):
                load_audio(cut)
            continue
        if info.video is not None:
            with VideoReader(cut) as reader:
                assert sum(1 for _ in reader) == info.video.frame_count
        if info.audio is not None:
            # a cut through the last packet loses it: up to one packet (~0.1 s of FLAC) shorter
            assert load_audio(cut).duration == pytest.approx(info.audio.duration, abs=0.15)


@pytest.mark.parametrize(
    "name,kind,at",
    [
        ("mjpeg.avi", "video", 0.5),
        ("mjpeg.avi", "video", 0.0),  # the first picture: the probe decodes it
        ("h264.mkv", "video", 0.5),
        ("speech.m4a", "audio", 0.5),
        ("mpeg4.avi", "audio", 0.5),
    ],
)
def test_a_few_damaged_packets_are_read_past_as_players_do(
    name: str, kind: str, at: float, variants, reference, tmp_path: Path
) -> None:
    """The decoder refuses a broken packet: one failed the whole generation."""
    path = damaged(variants[name], tmp_path / f"damaged{variants[name].suffix}", kind, at=at)
    info = probe(path)
    if info.video is not None:
        with VideoReader(path) as reader:
            frames = list(reader)
        assert len(frames) == info.video.frame_count == 75
        assert psnr(frames[-1], reference[-1]) > 28  # the picture after the damage is whole
    if info.audio is not None:
        clip, clean = load_audio(path), load_audio(variants[name])
        assert clip.duration == pytest.approx(info.audio.duration, abs=0.05)
        # silence where the packets were, so what follows them is where it was
        last = slice(-16000, None)
        assert (
            np.corrcoef(_envelope(clip.samples[last]), _envelope(clean.samples[last]))[0, 1] > 0.95
        )


def test_a_stream_the_decoder_refuses_throughout_is_unreadable(variants, tmp_path: Path) -> None:
    path = damaged(variants["speech.m4a"], tmp_path / "noise.m4a", "audio", every=True)
    with pytest.raises(MediaUnreadable, match="cannot be decoded"):
        load_audio(path)


@pytest.mark.parametrize(
    "codec,name",
    [("aac", "gap.mkv"), ("aac", "gap.mp4"), ("libopus", "gap.webm"), ("flac", "gap.mkv")],
)
def test_sound_a_recording_dropped_is_silence_where_players_give_it(
    codec: str, name: str, tmp_path: Path
) -> None:
    """A screen recorder's hiccup: no packets for 1 s, then the sound goes on stamped 1 s
    later. Read back to back, the voice after it came 1 s early (3.1 s of sound, not 4.1)."""
    speech = media_path("speech/arctic_a0009.wav")
    path = with_sound_gap(speech, tmp_path / name, codec, at=1.5, gap=1.0)
    source, heard = load_audio(speech).samples, load_audio(path).samples
    assert heard.size / 16000 == pytest.approx(probe(path).audio.duration, abs=0.03)
    assert heard.size / 16000 == pytest.approx(source.size / 16000 + 1.0, abs=0.03)
    assert np.sqrt(np.mean(heard[int(1.6 * 16000) : int(2.4 * 16000)] ** 2)) < 1e-3
    after, before = heard[int(2.6 * 16000) :], source[int(1.6 * 16000) :]
    count = min(after.size, before.size)
    assert np.corrcoef(_envelope(after[:count]), _envelope(before[:count]))[0, 1] > 0.95
    stereo = load_audio_to_file(path, tmp_path / "out.f32", 48_000, stereo=True)
    assert stereo.duration == pytest.approx(source.size / 16000 + 1.0, abs=0.03)


def test_a_timestamp_reset_is_not_a_pause(tmp_path: Path) -> None:
    """Stamps that jump further than any pause (a wrap, a splice) say nothing of time."""
    speech = media_path("speech/arctic_a0009.wav")
    path = with_sound_gap(speech, tmp_path / "reset.mkv", "aac", at=1.5, gap=600.0)
    assert load_audio(path).duration == pytest.approx(load_audio(speech).duration, abs=0.03)


def _envelope(samples: np.ndarray) -> np.ndarray:
    usable = samples[: samples.size // 160 * 160]
    return np.sqrt((usable.reshape(-1, 160) ** 2).mean(1))


def _check_pattern(source: FrameSource, reference: list[np.ndarray], order) -> None:
    for index in order:
        frame = source.get(int(index))
        assert psnr(frame, reference[index]) > 40, index


@pytest.mark.parametrize("mode", ["loop", "bounce", "remap", "cut_off", "silence"])
def test_frame_source_follows_every_timeline(mode: str, grid: Path, reference) -> None:
    long_audio = AudioClip.silence(8.64)
    timeline = plan_timeline(75, 25.0, long_audio, mode)
    with FrameSource(grid) as source:
        _check_pattern(source, reference, timeline.src_index)
        passes = source.decode_passes
    assert passes <= {"loop": 3, "silence": 3, "bounce": 2}.get(mode, 1)  # 8.64 s / 3 s


def test_frame_source_bounce_with_small_ring_uses_the_disk_cache(
    grid: Path, reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import openlipsync.media.video as video

    monkeypatch.setattr(video, "RING_BYTES", 1)  # ring of 2 frames: force the cache path
    order = list(range(75)) + list(range(73, -1, -1)) + list(range(1, 20))
    with FrameSource(grid, cache_dir=tmp_path) as source:
        _check_pattern(source, reference, order)
        assert source.decode_passes == 1  # written through on the first pass
        assert len(list(tmp_path.glob("*/*.jpg"))) == 75
    assert not list(tmp_path.glob("*/*.jpg"))  # cleaned up on close
    with FrameSource(grid) as source:  # no cache_dir: built lazily on the first backward jump
        _check_pattern(source, reference, order)
        assert source.decode_passes == 2


@pytest.mark.parametrize("mode", ["loop", "bounce", "remap", "cut_off"])
@pytest.mark.parametrize("ring", [True, False])
def test_frame_source_pictures_are_its_frames(
    mode: str, ring: bool, grid: Path, reference, tmp_path: Path
) -> None:
    """picture(i) serves frame i for every access pattern: the decoder's planes (exact) when it
    decodes the frame now or holds it in the ring, RGB from the disk cache otherwise."""
    timeline = plan_timeline(75, 25.0, AudioClip.silence(8.64), mode)
    cache = tmp_path if mode == "bounce" else None
    kinds = set()
    with FrameSource(grid, cache_dir=cache, keep_recent=ring) as source:
        for index in timeline.src_index:
            picture = source.picture(int(index))
            kinds.add(type(picture).__name__)
            if isinstance(picture, YuvPicture):
                assert np.array_equal(picture.fresh_rgb(), reference[index]), index
            else:
                assert psnr(picture.fresh_rgb(), reference[index]) > 40, index
    assert "YuvPicture" in kinds
    # Only a bounce (past the ring) and a revisit without a ring need the disk cache.
    assert (kinds == {"YuvPicture"}) == (
        mode in ("loop", "cut_off") or (mode, ring) == ("remap", True)
    )
    with FrameSource(grid) as source, pytest.raises(IndexError):
        source.picture(75)


def test_frame_source_rejects_out_of_range(grid: Path) -> None:
    with FrameSource(grid) as source, pytest.raises(IndexError):
        source.get(75)


def test_disk_cache_only_for_backward_jumps() -> None:
    from openlipsync.media.video import needs_disk_cache

    assert not needs_disk_cache(np.arange(10))  # cut_off, silence
    assert not needs_disk_cache(np.array([0, 1, 2, 3, 0, 1, 2, 3]))  # loop restarts at 0
    assert not needs_disk_cache(np.array([0, 0, 1, 1, 2, 2]))  # remap slows down
    assert needs_disk_cache(np.array([0, 1, 2, 3, 2, 1, 0, 1]))  # bounce


def test_a_source_without_a_ring_hands_frames_over_and_still_serves_revisits(
    grid: Path, reference
) -> None:
    from openlipsync.media.video import revisits

    assert not revisits(np.arange(10))  # cut_off, silence
    assert not revisits(np.array([0, 1, 2, 3, 0, 1, 2, 3]))  # loop restarts at 0
    assert revisits(np.array([0, 0, 1, 1, 2, 2]))  # remap slows down: frames shown twice
    assert revisits(np.array([0, 1, 2, 3, 2, 1, 0, 1]))  # bounce
    with FrameSource(grid, keep_recent=False) as source:
        frames = [source.get(i) for i in range(30)]
        assert all(psnr(f, reference[i]) > 40 for i, f in enumerate(frames))
        frames[5][:] = 0  # the caller owns what it got: nothing else sees this
        _check_pattern(source, reference, [5, 5, 4, 0, 1, 29, 74])  # revisits still correct
