"""The output timeline: which source frame is shown at each output frame, and the output audio.

This is spec §7 (`sync_mode`) made exact. Rules:

* Frame counts. The video lasts ``V = video_frames`` frames. The audio lasts
  ``A = round_half_up(audio.duration * fps)`` frames, at least 1 (1.74 s at 25 fps -> 44).
  The output has ``T`` frames chosen by mode, ``duration = T / fps`` exactly, and the output audio
  is the input audio cut or silence-padded to exactly that duration (so a half-frame rounding
  surplus becomes at most half a frame of trailing silence, or a cut of at most half a frame).
* "Audio longer" means ``A > V``, "video longer" means ``A < V``; ``A == V`` is the identity in
  every mode.

Per mode, output frame ``i`` shows source frame ``src_index[i]``:

* loop:    T = A. Audio longer: ``i % V``. Video longer: ``i`` (trimmed).
* bounce:  T = A. Audio longer: 0..V-1, V-2..1, 0, 1.. (turning frames not doubled, so no
  frame freezes). Video longer: ``i`` (trimmed).
* cut_off: T = min(A, V), ``i``; the audio is cut to the video when it is longer.
* silence: T = max(A, V). Video longer: ``i``, audio silence-padded, ``lipsync`` False from
  frame A on. Audio longer: the picture loops (``i % V``), the same extension as the default
  mode, so users see one familiar behaviour; lipsync everywhere.
* remap:   T = A, ``min(V - 1, floor((i + 0.5) * V / T))``: slowed down or sped up evenly.

Still images ignore the mode: ``T = A``, every output frame shows frame 0.
Worked examples at 25 fps: 4.00 s video (100 frames) + 8.64 s audio (216): every mode gives
216 frames except cut_off (100). 10.00 s video (250) + 1.74 s audio (44): 44 frames, except
silence (250 frames, lipsync on the first 44 only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openlipsync.engine.request import SYNC_MODES
from openlipsync.media.audio import AudioClip
from openlipsync.media.probe import round_half_up


@dataclass
class Timeline:
    src_index: np.ndarray  # int32 (T,): source frame shown at each output frame
    fps: float
    frame_count: int
    duration: float  # == frame_count / fps
    audio: AudioClip  # the output's audio, exactly `duration` long
    lipsync: np.ndarray  # bool (T,): False where no new lip motion is allowed (silence padding)
    mode: str = "loop"


def audio_frames(audio: AudioClip, fps: float) -> int:
    """Output frames the audio spans: round_half_up(duration * fps), computed on sample counts."""
    return max(1, round_half_up(len(audio.samples) * fps / audio.sample_rate))


def plan_timeline(
    video_frames: int, fps: float, audio: AudioClip, mode: str, is_still: bool = False
) -> Timeline:
    """Reconcile a video of `video_frames` frames at `fps` with `audio` according to `mode`."""
    if mode not in SYNC_MODES:
        raise ValueError(f"unknown sync_mode {mode!r}; expected one of {', '.join(SYNC_MODES)}")
    if video_frames < 1:
        raise ValueError(f"video_frames must be >= 1, got {video_frames}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    a = audio_frames(audio, fps)
    if is_still:
        return _build(np.zeros(a, np.int64), fps, audio, a, mode)
    v = video_frames
    if mode == "cut_off":
        index = np.arange(min(a, v))
    elif mode == "silence":
        index = np.arange(max(a, v)) % v
    elif mode == "bounce":
        index = _bounce(a, v)
    elif mode == "remap":
        index = np.minimum((np.arange(a) + 0.5) * v // a, v - 1)
    else:  # loop
        index = np.arange(a) % v
    return _build(index, fps, audio, a, mode)


def _bounce(count: int, v: int) -> np.ndarray:
    if v == 1:
        return np.zeros(count, np.int64)
    period = 2 * (v - 1)
    phase = np.arange(count) % period
    return np.where(phase < v, phase, period - phase)


def _build(index: np.ndarray, fps: float, audio: AudioClip, a: int, mode: str) -> Timeline:
    count = len(index)
    duration = count / fps
    lipsync = np.arange(count) < a  # frames past the audio's end only ever occur in `silence`
    return Timeline(
        src_index=index.astype(np.int32),
        fps=fps,
        frame_count=count,
        duration=duration,
        audio=audio.padded_to(duration),
        lipsync=lipsync,
        mode=mode,
    )
