"""Which whole-face effects a request asks for, and what they do to a real photo."""

from __future__ import annotations

import numpy as np
from PIL import Image

from openlipsync.engine.effects import FaceEffects
from openlipsync.engine.tracking import FaceTracker
from tests.conftest import media_path

LOUDNESS = np.zeros(50)


def effects(model: str, options: dict, still: bool = False) -> FaceEffects | None:
    return FaceEffects.for_request(model, options, still, 50, 25.0, LOUDNESS)


def test_plain_lipsync_of_a_video_has_no_effects() -> None:
    assert effects("lipsync-2", {"prompt": "happy", "model_mode": "head"}) is None


def test_react_1_modes() -> None:
    assert effects("react-1", {"prompt": "happy", "model_mode": "lips"}) is None
    assert effects("react-1", {"prompt": "neutral"}) is None
    face = effects("react-1", {"prompt": "sad"})
    assert face is not None and face.emotion == "sad" and face.motion is None
    head = effects("react-1", {"prompt": "happy", "model_mode": "head"})
    assert head is not None and head.motion is not None and len(head.motion) == 50


def test_a_photo_always_blinks_and_sways() -> None:
    photo = FaceEffects.for_request("sync-3", {}, True, 250, 25.0, np.zeros(250))
    assert photo is not None and photo.motion is not None
    assert max(m.closure for m in photo.motion) > 0.5  # at least one blink in 10 s
    angles = [m.pose.angle for m in photo.motion]
    assert 0.05 < max(angles) - min(angles) < 5  # a sway, in degrees, not a spin


def test_effects_change_the_face_and_nothing_far_from_it() -> None:
    frame = np.asarray(Image.open(media_path("photo/obama.jpg")).convert("RGB"))
    with FaceTracker() as tracker:
        landmarks = tracker.process(frame)
    assert landmarks is not None
    happy = FaceEffects(emotion="happy").frame(0, frame, landmarks)
    assert happy.shape == frame.shape and np.abs(happy.astype(int) - frame).max() > 20
    assert np.array_equal(happy[:10, :10], frame[:10, :10])  # the corner is not the face
