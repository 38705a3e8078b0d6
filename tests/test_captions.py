"""Burnt-in captions over the lower face stay readable while the mouth moves under them.

A GRID clip with subtitles drawn into the picture as social video carries them (white letters,
black outline), across the mouth or the chin, two lines one after the other. Before, the
renderer warped the letters there with the jaw and brought the donor frame's letters along as
ghosts: the caption's pixels came out 19-20 dB from the input's.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from openlipsync.engine import GenerateRequest, generate
from openlipsync.engine.captions import caption_mask, reach_for
from openlipsync.engine.mouth import LIPS_OUTER
from openlipsync.engine.tracking import track_video
from openlipsync.media.video import VideoReader
from tests.conftest import media_path
from tests.media_helpers import psnr, write_frames

LINES = ("he said it was fine", "and then he left")


def _caption(frame: np.ndarray, text: str, row: int, colour: int) -> np.ndarray:
    for fill, thickness in (((0, 0, 0), 5), ((colour,) * 3, 2)):
        cv2.putText(
            frame, text, (40, row), cv2.FONT_HERSHEY_SIMPLEX, 0.9, fill, thickness, cv2.LINE_AA
        )
    return frame


def captioned(dst: Path, row: int) -> tuple[Path, list[np.ndarray], list[np.ndarray]]:
    """(the clip, its frames, each frame's caption pixels: letters and outline)."""
    with VideoReader(media_path("video/grid_bbaf2n.mpg")) as reader:
        frames = list(reader)
    shown, masks = [], []
    for index, frame in enumerate(frames):
        text = LINES[index >= 40]
        shown.append(_caption(frame.copy(), text, row, 255))
        masks.append(_caption(np.zeros_like(frame), text, row, 255).max(axis=2) > 0)
    return write_frames(dst, shown), shown, masks


@pytest.mark.parametrize("row", [215, 245], ids=["across the mouth", "across the chin"])
def test_burnt_in_captions_stay_readable_while_the_mouth_moves(tmp_path: Path, row: int) -> None:
    source, frames, masks = captioned(tmp_path / "captioned.mp4", row)
    out = tmp_path / "out.mp4"
    generate(
        GenerateRequest(source, media_path("speech/arctic_a0009.wav"), out, sync_mode="cut_off")
    )
    with VideoReader(out) as reader:
        result = list(reader)
    letters = np.concatenate([r[m] for r, m in zip(result, masks, strict=True)])
    before = np.concatenate([f[m] for f, m in zip(frames, masks, strict=True)])
    assert psnr(letters, before) > 30  # 33 dB (sharp edges re-encoded); the old renderer: 19
    mouth = (slice(195, 245), slice(150, 215))
    moved = [
        np.abs(r[mouth].astype(int) - f[mouth].astype(int))[~m[mouth]].mean()
        for r, f, m in zip(result, frames, masks, strict=True)
    ]
    assert max(moved) > 6  # the lips were redrawn around the letters


@pytest.fixture(scope="module")
def faces() -> list[tuple[np.ndarray, np.ndarray]]:
    """(frame, outer-lip points) of real faces without captions: a talking head, a beard,
    a smile full of teeth above a white collar, a face half behind a hand."""
    picked = []
    for name, index in [
        ("video/grid_bbaf2n.mpg", 30),
        ("video/grid_swiz3n.mpg", 30),
        ("video/pexels_woman_expressions.mp4", 45),
        ("video/pexels_woman_expressions.mp4", 80),
        ("photo/obama.jpg", 0),
        ("photo/astronaut.png", 0),
    ]:
        with VideoReader(media_path(name)) as reader:
            frame = [f for i, f in zip(range(index + 1), reader, strict=False)][-1]
        landmarks = track_video([frame]).landmarks[0]
        picked.append((frame, landmarks[LIPS_OUTER]))
    return picked


def test_faces_without_captions_have_none(faces: list[tuple[np.ndarray, np.ndarray]]) -> None:
    for frame, lips in faces:
        # the renderer's box: the lower face, from under the nose to under the chin
        width = float(np.ptp(lips[:, 0]))
        x0, y0 = np.floor(lips.min(axis=0) - (0.5 * width, 0.4 * width)).clip(0).astype(int)
        x1, y1 = np.ceil(lips.max(axis=0) + (0.5 * width, 0.8 * width)).astype(int)
        box = frame[y0:y1, x0:x1]
        assert caption_mask(box, lips - (x0, y0), reach_for(frame.shape[0])) is None
        if box.shape[1] >= 100:  # room for letters beside the lips (GRID's face is small)
            with_text = _caption(box.copy(), "and then he left", box.shape[0] // 2, 255)
            found = caption_mask(with_text, lips - (x0, y0), reach_for(frame.shape[0]))
            assert found is not None and found.mean() > 0.05
