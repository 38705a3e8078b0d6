"""Frames from the middle of a video without decoding everything before them.

A chunk of a long generation starts deep into its source: `FrameSource` would decode (and
convert to RGB) every frame before it. `SeekingSource` seeks the demuxer to a keyframe shortly
before the wanted frame and applies `VideoReader`'s constant-rate rule on the frames' own
timestamps (slot ``i`` shows the last frame starting at or before ``(i + 0.5) / fps`` after the
first frame), so it hands out exactly the pictures a sequential read would. The seek lands
`PRE_ROLL` seconds early, so frames that an open GOP leaves undecodable after a seek are never
the ones shown. Forward access streams; any jump backwards seeks again, so sources with many
backward jumps (bounce) should use `FrameSource`.

Anything unusual (no timestamps, a seek that lands after its target, a stream that ends early)
falls back to a sequential `FrameSource`, which is exact by definition.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from openlipsync.media.damage import pictures
from openlipsync.media.deinterlace import progressive
from openlipsync.media.picture import Picture
from openlipsync.media.probe import VideoInfo, open_container, picture_stream
from openlipsync.media.video import FrameSource, VideoReader

PRE_ROLL = 1.0  # seconds before the wanted frame the seek aims at


class _Unusual(Exception):
    """Seeking cannot promise the sequential read's pictures here."""


class SeekingSource:
    """`get(index)` like FrameSource, cheap for forward runs that start anywhere."""

    def __init__(self, path: str | Path, fps: float, source: VideoInfo | None = None) -> None:
        self.path = Path(path)
        self._reader = VideoReader(self.path, fps, source)
        self.info = self._reader.info
        self._origin = self._first_time()
        self._frames: Iterator[Picture] | None = None
        self._next = -1
        self._fallback: FrameSource | None = None
        self.seeks = 0

    def __enter__(self) -> SeekingSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop()
        if self._fallback is not None:
            self._fallback.close()
        self._reader.close()

    def get(self, index: int) -> np.ndarray:
        return self.picture(index).fresh_rgb()

    def picture(self, index: int) -> Picture:
        """Frame `index` as decoded (read only), or as the sequential reader serves it."""
        if not 0 <= index < self.info.frame_count:
            raise IndexError(f"frame {index} outside 0..{self.info.frame_count - 1}")
        if self._fallback is not None or self._origin is None or self.info.is_still:
            return self._sequential().picture(index)
        try:
            if self._frames is None or index < self._next:
                self._stop()
                self._frames = self._slots_from(index)
                self._next = index
                self.seeks += 1
            picture = None
            while self._next <= index:
                picture = next(self._frames)
                self._next += 1
            assert picture is not None
            return picture
        except (_Unusual, StopIteration):
            self._stop()
            return self._sequential().picture(index)

    def _sequential(self) -> FrameSource:
        if self._fallback is None:
            self._fallback = FrameSource(
                self.path, fps=self.info.fps, source=self._reader.source_info
            )
        return self._fallback

    def _stop(self) -> None:
        if self._frames is not None:
            self._frames.close()  # type: ignore[attr-defined]
            self._frames = None
        self._next = -1

    def _first_time(self) -> float | None:
        if self.info.is_still:
            return None  # one picture, served by the sequential reader
        with open_container(self.path) as container:
            stream = picture_stream(container)
            if stream is None:
                return None
            for frame in container.decode(stream):
                return frame.time
        return None

    def _slots_from(self, first: int) -> Iterator[Picture]:
        """Pictures of slots first, first + 1, ... (to the end of the video)."""
        fps, count = self.info.fps, self.info.frame_count
        assert self._origin is not None
        with open_container(self.path) as container:
            stream = picture_stream(container)
            if stream is None or stream.time_base is None:
                raise _Unusual
            stream.thread_type = "AUTO"
            aim = self._origin + max(0.0, (first + 0.5) / fps - PRE_ROLL)
            container.seek(int(aim / stream.time_base), backward=True, stream=stream)
            slot, pending, converted = first, None, None
            for frame in progressive(pictures(container, stream, self.path.name)):
                if frame.time is None:
                    raise _Unusual
                start = frame.time - self._origin
                if pending is None and start > (first + 0.5) / fps:
                    raise _Unusual  # landed after the wanted frame
                while pending is not None and slot < count and (slot + 0.5) / fps < start:
                    if converted is None:
                        converted = self._reader._to_picture(pending)
                    yield converted
                    slot += 1
                if slot >= count:
                    return
                pending, converted = frame, None
            if pending is None or (count - slot) / fps > 1.0 + 1 / fps:
                raise _Unusual  # ends early: let the sequential reader judge the file
            last = self._reader._to_picture(pending)
            while slot < count:
                yield last
                slot += 1


def backward_jumps(indices: np.ndarray) -> int:
    """How often a run of source indices goes back (each costs a seek)."""
    steps = np.diff(np.asarray(indices, np.int64))
    return int((steps < 0).sum())
