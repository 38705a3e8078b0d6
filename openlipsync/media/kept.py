"""Frames of the analysis pass kept for the render pass, so that a short video is decoded once.

The engine reads its source twice: the analysis pass (where the face is, what the mouths look
like) and the render pass. For a short clip the second decode is pure overhead: 4-13 % of the
CPU of a 720p run (`bench/engine.py --decoding-baseline`). So the analysis keeps the pictures
it has decoded, in their 4:2:0 planes (1.5 bytes per pixel), when the whole clip fits in
`KEPT_BYTES`: at 25 fps about 15 s of 720p or 6.5 s of 1080p. Longer clips keep nothing: their
memory grows with length already, and their first seconds would save a small share of the
decoding. The render pass converts kept pictures to RGB, the same pixels a second decode gives;
should a clip hold more than probed (or decode to RGB pictures, 3 bytes per pixel), the keeping
stops at the budget and the render pass decodes the rest, seeking past the kept part.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from openlipsync.media.picture import Picture

KEPT_BYTES = 512 << 20


class Source(Protocol):
    def get(self, index: int) -> np.ndarray: ...

    def picture(self, index: int) -> Picture: ...

    def close(self) -> None: ...


class KeptFrames:
    """The first decoded pictures of a pass, in order, while they fit in `budget` bytes."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = KEPT_BYTES if budget is None else budget
        self._pictures: list[Picture] = []
        self._bytes = 0
        self._full = False

    @classmethod
    def for_clip(cls, frames: int, width: int, height: int) -> KeptFrames | None:
        """A keeper for a clip that fits the budget whole; None for a longer one."""
        kept = cls()
        return kept if kept.would_hold(frames, width, height) else None

    def __len__(self) -> int:
        return len(self._pictures)

    def would_hold(self, frames: int, width: int, height: int) -> bool:
        """Whether a clip of `frames` 4:2:0 pictures of this size fits the budget whole."""
        return frames * (width * height * 3 // 2) <= self.budget

    def keep(self, index: int, picture: Picture) -> None:
        """Keep the picture of frame `index`; frames must come in order, from 0, without gaps
        (the first one that does not, or does not fit, ends the keeping)."""
        if self._full or index != len(self._pictures):
            self._full = True
            return
        if self._bytes + picture.nbytes > self.budget:
            self._full = True
            return
        self._pictures.append(picture.detached())
        self._bytes += picture.nbytes

    def rgb(self, index: int) -> np.ndarray:
        """Frame `index` as a new RGB array the caller may paint on."""
        return self._pictures[index].fresh_rgb()

    def picture(self, index: int) -> Picture:
        """Frame `index` as kept (read only): a renderer that changes only the mouth need not
        convert the rest."""
        return self._pictures[index]

    def clear(self) -> None:
        self._pictures.clear()
        self._bytes = 0
        self._full = True


class KeptSource:
    """`get(index)` from the kept frames where it can, else from the source `beyond` makes
    (on first need: a clip that is kept whole never opens a decoder again)."""

    def __init__(self, kept: KeptFrames, beyond: Callable[[], Source]) -> None:
        self._kept = kept
        self._make_beyond = beyond
        self._beyond: Source | None = None

    def get(self, index: int) -> np.ndarray:
        return self.picture(index).fresh_rgb()

    def picture(self, index: int) -> Picture:
        if 0 <= index < len(self._kept):
            return self._kept.picture(index)
        if self._beyond is None:
            self._beyond = self._make_beyond()
        return self._beyond.picture(index)

    def close(self) -> None:
        if self._beyond is not None:
            self._beyond.close()
            self._beyond = None
