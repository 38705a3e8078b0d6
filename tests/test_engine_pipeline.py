"""The whole engine on real media: output shape, progress, cancellation, photos, identity."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from openlipsync.engine import EngineError, GenerateRequest, generate
from openlipsync.engine.errors import Cancelled
from tests.conftest import media_path

pytestmark = pytest.mark.slow


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def test_grid_clip_driven_by_other_speech(tmp_path: Path, grid_video: Path) -> None:
    audio = media_path("video/grid_swiz3n.mpg")  # another speaker's real speech (its audio track)
    stages: list[tuple[str, float]] = []
    result = generate(
        GenerateRequest(grid_video, audio, tmp_path / "out.mp4", sync_mode="cut_off"),
        progress=lambda stage, fraction: stages.append((stage, fraction)),
    )
    # cut_off: the shorter of the two (the driving speech lasts 2.96 s, the video 3.00 s).
    assert result.frame_count == 74 and result.fps == pytest.approx(25.0)
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    source, output = decode(grid_video)[:74], decode(result.output)
    assert output.shape == source.shape
    # Everything above the nose stays the person's own pixels.
    top = slice(0, int(0.45 * source.shape[1]))
    assert psnr(source[:, top], output[:, top]) >= 40
    # The mouth region does change.
    assert psnr(source, output) < 60


def test_still_photo_becomes_a_video_of_the_audio_length(tmp_path: Path) -> None:
    audio = media_path("speech/librivox_austen_0870.wav")
    result = generate(GenerateRequest(media_path("photo/obama.jpg"), audio, tmp_path / "photo.mp4"))
    with av.open(str(audio)) as container:
        seconds = container.duration / 1e6
    assert abs(result.duration - seconds) <= 1 / result.fps + 1e-6
    # Every frame counted, every fourth's luma kept: the whole 1 MP video as RGB and its
    # float64 std took 15 s of CI.
    count, sample = 0, []
    with av.open(str(result.output)) as container:
        for frame in container.decode(video=0):
            if count % 4 == 0:
                sample.append(frame.to_ndarray(format="gray"))
            count += 1
    assert count == result.frame_count
    assert np.stack(sample).std(axis=0).max() > 10  # the mouth moves


def test_cancellation_stops_the_run_and_leaves_no_output(tmp_path: Path, grid_video: Path) -> None:
    calls = {"n": 0}

    def cancel_after_a_while() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    out = tmp_path / "never.mp4"
    with pytest.raises(Cancelled):
        generate(
            GenerateRequest(grid_video, media_path("speech/librivox_austen_0870.wav"), out),
            should_cancel=cancel_after_a_while,
        )
    assert not out.exists()


def test_engine_errors_carry_codes(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mov"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    with pytest.raises(EngineError) as info:
        generate(GenerateRequest(junk, media_path("speech/arctic_a0009.wav"), tmp_path / "o.mp4"))
    assert info.value.code in {"generation_media_unreadable", "generation_media_metadata_missing"}


@pytest.mark.parametrize("model, options", [("lipsync-2", {}), ("react-1", {"prompt": "happy"})])
def test_drawn_pictures_are_the_frames_the_look_renders(
    tmp_path: Path, grid_video: Path, model: str, options: dict
) -> None:
    """The render pass paints the new mouth on the kept 4:2:0 pictures (Look.draw); what it
    draws is the frame the whole-RGB path renders, occlusion fades included; face effects are
    drawn in a crop of the head (their warps' arithmetic in its coordinates: a few levels)."""
    from openlipsync.engine.pipeline import planned
    from openlipsync.engine.run_state import RunState

    request = GenerateRequest(
        grid_video,
        media_path("speech/jfk_inaugural.flac"),
        tmp_path / "out.mp4",
        model=model,
        options=options,
    )
    with planned(request, RunState(), keep_frames=True) as plan:
        look, kept = plan.look, plan.kept
        assert kept is not None and len(kept) > 0
        look.visibility = np.linspace(0.0, 1.0, len(kept), dtype=np.float32)  # fades throughout
        patched = 0
        for index in range(0, plan.timeline.frame_count, 3):
            picture = kept.picture(int(look.src_index[index]))
            drawn, patch = look.draw(index, picture)
            patched += patch is not None
            got = drawn.rgb() if patch is None else patch.onto(drawn.rgb())
            want = look.frame(index, picture.fresh_rgb())
            if look.effects is None:
                assert np.array_equal(got, want), index
            else:
                difference = np.abs(got.astype(np.int16) - want)
                # OpenCV's vector paths round by the CPU: within 2 levels on earlier machines,
                # 3 on 3 pixels of a frame on an AMD EPYC; a wrong warp is tens of levels
                # over many pixels
                assert difference.max() <= 4 and (difference > 1).sum() <= 20, index
        assert patched > 0
