"""Plain data in and out of the engine, so callers never touch engine internals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from openlipsync.tts.base import PhonemeTiming

ProgressCallback = Callable[[str, float], None]
"""Called with (stage name, overall fraction done in 0..1)."""

SYNC_MODES = ("loop", "bounce", "cut_off", "silence", "remap")
DEFAULT_SYNC_MODE = "loop"


@dataclass(frozen=True)
class SegmentAudio:
    """One segment: video seconds [start, end) driven by `audio` (cropped when both bounds given).

    Semantics live in `openlipsync.engine.segments`.
    """

    start: float  # video seconds
    end: float
    audio: Path  # any file with an audio stream
    audio_start: float | None = None  # crop window inside `audio`, seconds
    audio_end: float | None = None


@dataclass
class GenerateRequest:
    video: Path  # a video or a still photo
    audio: Path  # any file with an audio stream
    output: Path
    sync_mode: str = DEFAULT_SYNC_MODE
    temperature: float = 0.5
    model: str = "lipsync-2"
    options: dict = field(default_factory=dict)  # the remaining spec options, passed through
    # Longest accepted input (video or audio), in seconds; longer ones fail with a clear code.
    max_seconds: float = 3 * 3600.0
    # Known phone timings of the driving audio (from TTS): they drive the mouth directly.
    phonemes: list[PhonemeTiming] | None = None
    # An English transcript of the driving audio: force-aligned into phone timings.
    transcript: str | None = None
    # Spec §8: lip-sync only these video ranges, each to its own audio; `audio` is then unused.
    segments: list[SegmentAudio] | None = None
    # With segments: also write the segment parts alone (in time order) to this MP4.
    segment_output: Path | None = None


@dataclass
class GenerateResult:
    output: Path
    duration: float
    frame_count: int
    fps: float
    width: int
    height: int
    stage_seconds: dict[str, float] = field(default_factory=dict)
    segment_output: Path | None = None  # None when no segment covers a frame
    segment_duration: float | None = None
