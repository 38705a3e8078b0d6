"""Segments (spec §8): lip-sync chosen video ranges, each to its own audio, and keep the rest.

Rules, exact to the output frame and sample:

* The output is the whole input video, played once: the same frame count, frame ``i`` shows
  source frame ``i`` (a still photo is shown for ``round_half_up(max end * fps)`` frames).
  ``sync_mode`` does not change the output length when segments are used.
* Segment ``k`` covers video seconds ``[startTime, endTime)``, snapped to whole output frames
  ``[round_half_up(start * fps), round_half_up(end * fps))`` and clipped to the video. A
  zero-length segment (or one entirely past the video end) covers no frame and does nothing.
* Audio outside every segment is the video's own audio (silence when it has none). Inside
  segment ``k`` it is the referenced audio, cropped to ``audioInput.startTime/endTime`` when
  given, then fitted to the window: cut when longer, silence-padded when shorter. Per-segment
  retiming (``optionsOverride.sync_mode`` loop/bounce/remap) is not done: the video window is
  fixed, so every mode behaves as cut_off (longer audio) or silence (shorter audio) there.
  A 5 ms cross-fade at each window edge avoids clicks where the two sounds meet.
* Overlapping segments: a later segment overrides an earlier one where they overlap.
* Lip motion is only planned inside segments (the timeline's ``lipsync`` mask); the renderer
  already cross-fades back to the original mouth at the edges of inactive runs.
* Deprecated ``segments_secs`` / ``segments_frames`` on the video input use the single driver
  laid on the video timeline (audio time = video time), so each range takes the driver's audio
  from the same seconds; outside the ranges picture and sound stay original.
* The segment output (``segmentOutputUrl``) is the covered frames only, in time order, each run
  with the output audio of the same frames; overlapping segments appear once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from openlipsync.engine.request import SegmentAudio
from openlipsync.media.audio import AudioClip, FileAudioClip
from openlipsync.media.mapped import release, scratch_array
from openlipsync.media.probe import round_half_up
from openlipsync.media.timeline import Timeline

EDGE_FADE_SECONDS = 0.005
MIX_BLOCK = 1 << 20  # samples copied at once into a file-backed mix (4 MB)


def from_seconds(ranges: Sequence[Sequence[float]], audio: Path) -> list[SegmentAudio]:
    """`segments_secs`: the driver's own seconds [s, e) play at video seconds [s, e)."""
    return [SegmentAudio(float(s), float(e), audio, float(s), float(e)) for s, e in ranges]


def from_frames(ranges: Sequence[Sequence[int]], fps: float, audio: Path) -> list[SegmentAudio]:
    """`segments_frames`: frames [f0, f1) of the video at `fps`, as `from_seconds`."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return from_seconds([(f0 / fps, f1 / fps) for f0, f1 in ranges], audio)


def frame_window(segment: SegmentAudio, fps: float, frame_count: int) -> tuple[int, int]:
    """Output frames [first, stop) the segment covers, clipped to the video."""
    first = min(max(round_half_up(segment.start * fps), 0), frame_count)
    stop = min(max(round_half_up(segment.end * fps), first), frame_count)
    return first, stop


def output_frames(
    segments: Sequence[SegmentAudio], fps: float, video_frames: int, still: bool
) -> int:
    """Frames of the output: the video's own, or for a still photo up to the last segment end."""
    if not still:
        return video_frames
    return max(1, max((round_half_up(s.end * fps) for s in segments), default=1))


def lipsync_mask(segments: Sequence[SegmentAudio], fps: float, frame_count: int) -> np.ndarray:
    """True on every output frame some segment covers."""
    mask = np.zeros(frame_count, bool)
    for segment in segments:
        first, stop = frame_window(segment, fps, frame_count)
        mask[first:stop] = True
    return mask


def fit_audio(
    segment: SegmentAudio, clip: AudioClip, samples: int, channels: int = 1
) -> np.ndarray:
    """The segment's audio cropped to its audioInput window, then cut/padded to `samples`
    (with `channels` 2, a mono clip is heard on both sides)."""
    if segment.audio_start is not None and segment.audio_end is not None:
        clip = clip.slice(segment.audio_start, segment.audio_end)
    out = np.zeros((samples,) if channels == 1 else (samples, channels), np.float32)
    take = clip.samples[:samples]
    out[: len(take)] = take if take.ndim == out.ndim else take[:, None]
    return out


def compose_audio(
    base: AudioClip,
    parts: Sequence[tuple[SegmentAudio, AudioClip]],
    fps: float,
    frame_count: int,
    into: Path | None = None,
) -> AudioClip:
    """The output audio: `base` (the video's own sound) with each segment's audio laid over it,
    in stereo when any of them is (a mono one is heard on both sides).

    With `into`, the mix is written to that scratch file and read back as a FileAudioClip: the
    whole video's length of 48 kHz sound is 0.7 GB per hour."""
    rate = base.sample_rate
    channels = max([base.channels, *(clip.channels for _, clip in parts)])
    out = _canvas(base, frame_count / fps, into, channels)
    ramp = max(1, round_half_up(EDGE_FADE_SECONDS * rate))
    for segment, clip in parts:
        if clip.sample_rate != rate:
            raise ValueError(f"segment audio at {clip.sample_rate} Hz, expected {rate} Hz")
        first, stop = frame_window(segment, fps, frame_count)
        if stop <= first:
            continue
        a, b = _sample(first, fps, rate), min(_sample(stop, fps, rate), len(out))
        new = fit_audio(segment, clip, b - a, channels)
        weight = _edge_weights(b - a, ramp)
        weight = weight if channels == 1 else weight[:, None]
        out[a:b] = out[a:b] * (1 - weight) + new * weight
        release(clip.samples)
        release(out)
    if into is None or not isinstance(out, np.memmap):
        return AudioClip(out, rate)
    out.flush()
    return FileAudioClip.open(into, rate, len(out), channels=channels)


def _canvas(base: AudioClip, seconds: float, into: Path | None, channels: int) -> np.ndarray:
    """`base` cut or silence-padded to `seconds`, in `channels`: a copy in memory, or in the
    file `into`."""
    count = max(0, round_half_up(seconds * base.sample_rate))
    shape = (count,) if channels == 1 else (count, channels)
    if into is None or count == 0:  # np.memmap cannot map nothing
        out = np.zeros(shape, np.float32)
    else:
        out = scratch_array(into, shape, np.float32)
    for start in range(0, count, MIX_BLOCK):
        stop = min(start + MIX_BLOCK, count)
        block = base.window(start, stop - start)
        out[start:stop] = block if block.ndim == out.ndim else block[:, None]
        release(out)
    return out


def segment_timeline(
    segments: Sequence[SegmentAudio],
    fps: float,
    frame_count: int,
    audio: AudioClip,
    still: bool = False,
) -> Timeline:
    """The timeline with segments: identity frames, composite `audio`, lipsync inside segments."""
    index = np.zeros(frame_count, np.int32) if still else np.arange(frame_count, dtype=np.int32)
    duration = frame_count / fps
    return Timeline(
        src_index=index,
        fps=fps,
        frame_count=frame_count,
        duration=duration,
        audio=audio.padded_to(duration),
        lipsync=lipsync_mask(segments, fps, frame_count),
        mode="segments",
    )


def segment_only_audio(audio: AudioClip, runs: Sequence[tuple[int, int]], fps: float) -> AudioClip:
    """The output audio of the covered frames only, runs concatenated in time order."""
    rate = audio.sample_rate
    pieces = [audio.samples[_sample(a, fps, rate) : _sample(b, fps, rate)] for a, b in runs]
    samples = np.concatenate(pieces) if pieces else audio.samples[:0]
    return AudioClip(samples.astype(np.float32, copy=False), rate)


def _sample(frame: int, fps: float, rate: int) -> int:
    return round_half_up(frame / fps * rate)


def _edge_weights(count: int, ramp: int) -> np.ndarray:
    """1 inside the window, ramping linearly at both ends (shorter ramps for tiny windows)."""
    ramp = min(ramp, max(1, count // 2))
    weight = np.ones(count, np.float32)
    rise = (np.arange(ramp, dtype=np.float32) + 1) / (ramp + 1)
    weight[:ramp] = rise
    weight[count - ramp :] = np.minimum(weight[count - ramp :], rise[::-1])
    return weight
