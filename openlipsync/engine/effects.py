"""Whole-face motion on top of the source frame, per output frame.

A still photo (sync-3) gets natural blinks and a subtle head sway so it does not look frozen;
react-1 gets its emotion `prompt` and, with `model_mode="head"`, livelier head motion. Effects
run after the mouth is rendered, on the whole face, so the new mouth moves with the face; none of
them changes the gap between the lips, so the lip-sync stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openlipsync.engine.expression import expression_targets, expression_warp, head_motion
from openlipsync.engine.facewarp import face_region
from openlipsync.engine.still_motion import (
    HEAD_MARGIN,
    HeadPose,
    MotionFrame,
    apply_still_motion,
    still_motion,
)
from openlipsync.media.picture import Box

EMOTIONS = ("happy", "sad", "angry", "disgusted", "surprised", "neutral")
EMOTION_STRENGTH = 0.7
REACH_PAD = 8  # px round the effects' region: what they sample stays inside a crop of it


@dataclass
class FaceEffects:
    motion: list[MotionFrame] | None = None  # blinks + head pose per output frame
    emotion: str | None = None

    @classmethod
    def for_request(
        cls,
        model: str,
        options: dict,
        is_still: bool,
        frame_count: int,
        fps: float,
        loudness: np.ndarray,
    ) -> FaceEffects | None:
        """The effects a request asks for, or None when the output is the plain source face."""
        motion: list[MotionFrame] | None = None
        emotion: str | None = None
        if is_still:
            schedule = still_motion(frame_count, fps, seed=0, speech_energy=loudness)
            motion = [schedule[i] for i in range(len(schedule))]
        if model == "react-1":
            prompt = options.get("prompt")
            lips_only = options.get("model_mode") == "lips"
            emotion = None if lips_only or prompt not in EMOTIONS or prompt == "neutral" else prompt
            if options.get("model_mode") == "head":
                poses = head_motion(frame_count, fps, loudness, seed=1)
                closures = [m.closure for m in motion] if motion else [0.0] * frame_count
                motion = [MotionFrame(c, p) for c, p in zip(closures, poses, strict=True)]
        if motion is None and emotion is None:
            return None
        return cls(motion, emotion)

    def frame(self, index: int, frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The source frame with the effects of output frame `index` applied."""
        if not np.isfinite(landmarks).all():
            return frame
        if self.emotion is not None:
            frame = expression_warp(frame, landmarks, self.emotion, EMOTION_STRENGTH)
            landmarks = expression_targets(landmarks, self.emotion, EMOTION_STRENGTH)
        if self.motion is not None:
            frame, _ = apply_still_motion(frame, landmarks, self._motion(index))
        return frame

    def reach(self, landmarks: np.ndarray, width: int, height: int) -> Box | None:
        """The box of a `width` x `height` frame that `frame` may change for a face at
        `landmarks` (the head's move, the widest of the effects), with REACH_PAD pixels
        round it to sample from; None when the face is not there."""
        if not np.isfinite(landmarks).all():
            return None
        x0, y0, x1, y1 = face_region(landmarks, HEAD_MARGIN)
        return (
            max(0, int(np.floor(x0)) - REACH_PAD),
            max(0, int(np.floor(y0)) - REACH_PAD),
            min(width, int(np.ceil(x1)) + REACH_PAD),
            min(height, int(np.ceil(y1)) + REACH_PAD),
        )

    def _motion(self, index: int) -> MotionFrame:
        assert self.motion is not None
        if 0 <= index < len(self.motion):
            return self.motion[index]
        return MotionFrame(0.0, HeadPose())
