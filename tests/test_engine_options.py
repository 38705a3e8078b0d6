"""Generation options through the whole engine, on real media: each test fails if the option
did nothing."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from openlipsync.engine import GenerateRequest, generate
from openlipsync.engine.tracking import FaceTracker
from tests.conftest import media_path
from tests.media_helpers import write_frames

pytestmark = pytest.mark.slow


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def side_by_side(left: Path, right: Path, out: Path) -> Path:
    """Two real talking clips next to each other, with the LEFT clip's own audio only."""
    frames = np.concatenate([decode(left), decode(right)], axis=2)
    with av.open(str(left)) as src, av.open(str(out), "w") as dst:
        video = dst.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        video.options = {"crf": "12"}
        sound = dst.add_stream("aac", rate=src.streams.audio[0].rate)
        for index, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts, picture.time_base = index, Fraction(1, 25)
            dst.mux(video.encode(picture))
        for block in src.decode(audio=0):
            block.pts = None
            dst.mux(sound.encode(block))
        dst.mux(video.encode())
        dst.mux(sound.encode())
    return out


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("speaker")
    return side_by_side(
        media_path("video/grid_bbaf2n.mpg"),
        media_path("video/grid_swiz3n.mpg"),
        folder / "two.mp4",
    )


def mouth_box(frame: np.ndarray) -> tuple[slice, slice]:
    with FaceTracker() as tracker:
        points = tracker.process(frame)
    assert points is not None
    lips = points[[61, 291, 0, 17]]
    (x0, y0), (x1, y1) = lips.min(axis=0) - 8, lips.max(axis=0) + 8
    return slice(int(y0), int(y1)), slice(int(x0), int(x1))


@pytest.mark.parametrize(
    ("option", "changed_half"),
    [({"auto_detect": True}, 0), ({"frame_number": 10, "coordinates": [540, 140]}, 1)],
)
def test_only_the_chosen_face_is_lip_synced(
    tmp_path: Path, two_faces: Path, option: dict, changed_half: int
) -> None:
    out = tmp_path / "out.mp4"
    generate(
        GenerateRequest(
            two_faces,
            media_path("video/grid_lbax4n.mpg"),
            out,
            sync_mode="cut_off",
            options={"active_speaker_detection": option},
        )
    )
    source, output = decode(two_faces), decode(out)
    count = min(len(source), len(output))
    mouth_psnr = []
    for half in (0, 1):
        rows, cols = mouth_box(source[0, :, half * 360 : (half + 1) * 360])
        cols = slice(cols.start + half * 360, cols.stop + half * 360)
        mouth_psnr.append(psnr(source[:count, rows, cols], output[:count, rows, cols]))
    changed, kept = mouth_psnr[changed_half], mouth_psnr[1 - changed_half]
    assert kept > 36, mouth_psnr  # only the encoder touched the other face
    assert changed < kept - 4, mouth_psnr  # the chosen face's mouth was redrawn


def test_a_photo_blinks_and_moves(tmp_path: Path) -> None:
    out = tmp_path / "photo.mp4"
    result = generate(
        GenerateRequest(
            media_path("photo/obama.jpg"),
            media_path("speech/librivox_austen_0870.wav"),
            out,
            model="sync-3",
        )
    )
    frames = decode(out)
    with FaceTracker() as tracker:
        first = tracker.process(frames[0])
    assert first is not None
    # Eye region: the right eye's box around landmarks 33..133, with a margin.
    eye = first[[33, 133, 159, 145]]
    x0, y0 = (eye.min(axis=0) - 6).astype(int)
    x1, y1 = (eye.max(axis=0) + 6).astype(int)
    eye_pixels = frames[:, y0:y1, x0:x1].astype(np.float32)
    darkest = eye_pixels.mean(axis=(1, 2, 3))
    assert darkest.max() - darkest.min() > 3, "the eyes never changed: no blink"
    assert result.frame_count == len(frames)


def test_react_1_emotion_moves_the_mouth_corners(tmp_path: Path, grid_video: Path) -> None:
    heights = {}
    for emotion in ("happy", "sad"):
        out = tmp_path / f"{emotion}.mp4"
        generate(
            GenerateRequest(
                grid_video,
                media_path("video/grid_swiz3n.mpg"),
                out,
                sync_mode="cut_off",
                model="react-1",
                options={"prompt": emotion},
            )
        )
        frames = decode(out)[::8]
        with FaceTracker() as tracker:
            points = [tracker.process(f) for f in frames]
        corners = [
            (p[61, 1] + p[291, 1]) / 2 - (p[13, 1] + p[14, 1]) / 2 for p in points if p is not None
        ]
        heights[emotion] = float(np.median(corners))
    # Image y grows downwards: happy corners sit higher (smaller y) than sad ones.
    assert heights["happy"] < heights["sad"] - 1.0, heights


def clip(source: Path, start: float, seconds: float, out: Path) -> Path:
    """A few seconds of a real clip (re-encoded, no audio) so engine tests stay short."""
    with av.open(str(source)) as src, av.open(str(out), "w") as dst:
        stream = src.streams.video[0]
        fps = float(stream.average_rate)
        video = dst.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = stream.width, stream.height, "yuv420p"
        video.options = {"crf": "14"}
        index = 0
        for frame in src.decode(video=0):
            t = frame.pts * frame.time_base if frame.pts is not None else index / fps
            if t < start:
                continue
            if t >= start + seconds:
                break
            picture = frame.reformat(format="yuv420p")
            picture.pts, picture.time_base = index, Fraction(1, 25)
            dst.mux(video.encode(picture))
            index += 1
        dst.mux(video.encode())
    return out


def test_a_hand_over_the_mouth_stays_intact(tmp_path: Path) -> None:
    # pexels_woman_expressions: a hand covers the mouth from about 2.6 s to 9.4 s.
    source = clip(media_path("video/pexels_woman_expressions.mp4"), 4.0, 3.0, tmp_path / "h.mp4")
    out = tmp_path / "out.mp4"
    generate(
        GenerateRequest(
            source,
            media_path("speech/librivox_austen_0870.wav"),
            out,
            sync_mode="cut_off",
            options={"occlusion_detection_enabled": True},
        )
    )
    before, after = decode(source), decode(out)
    count = min(len(before), len(after))
    lower_half = (slice(0, count), slice(before.shape[1] // 2, None))
    # Measured: 41.2 dB here (only the encoder touched it), 37.5 dB on the same woman's clear
    # frames (0-2 s), where the mouth is redrawn: painting over the hand would fall as low.
    assert psnr(before[lower_half], after[lower_half]) > 39.5


def test_a_scene_cut_is_found_and_both_shots_are_lip_synced(tmp_path: Path) -> None:
    from openlipsync.engine.analysis import analyse
    from openlipsync.engine.render import MouthRenderer
    from openlipsync.engine.run_state import RunState
    from openlipsync.media.probe import probe

    first, second = (
        decode(media_path("video/grid_bbaf2n.mpg")),
        decode(media_path("video/grid_lbax4n.mpg")),
    )
    spliced = write_frames(tmp_path / "spliced.mp4", np.concatenate([first[:50], second[:50]]))
    info = probe(spliced).video
    assert info is not None
    analysis = analyse(spliced, info, MouthRenderer(360, 288, 25.0), RunState())
    assert analysis.cuts == [50]
    assert analysis.track.present.all()

    out = tmp_path / "out.mp4"
    generate(GenerateRequest(spliced, media_path("video/grid_swiz3n.mpg"), out, "cut_off"))
    source, output = decode(spliced), decode(out)
    for shot in (slice(5, 45), slice(55, 70)):
        rows, cols = mouth_box(source[shot.start])
        changed = psnr(source[shot, rows, cols], output[shot, rows, cols])
        assert changed < 36, (shot, changed)  # each shot's own mouth was redrawn
