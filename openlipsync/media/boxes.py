"""ISOBMFF boxes (MP4, MOV, HEIF) walked from their headers alone.

Enough to read a few fields (a track's matrix, whether a file is whole) without a demuxer,
which the API's probe must not run past the headers on hostile input. Sizes are checked
against the space they claim, so a lying header ends the walk instead of sending it astray.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

MAX_BOXES = 4096  # side by side in one parent: real files have a handful; a hostile one, millions


class BoxOverrun(ValueError):
    """A box claims more bytes than its parent (or the file) holds, or there are more than
    MAX_BOXES side by side: a cut, broken or hostile file."""


@dataclass(frozen=True)
class Box:
    kind: bytes  # the four-character type, e.g. b"moov"
    start: int  # offset of the payload (after the header)
    end: int  # offset just past the box

    @property
    def size(self) -> int:
        return self.end - self.start


def walk(file: BinaryIO, start: int, end: int) -> Iterator[Box]:
    """The boxes that tile `file[start:end]`, in order; BoxOverrun where one runs past `end`."""
    offset = start
    for _ in range(MAX_BOXES):
        if offset >= end:
            return
        file.seek(offset)
        header = file.read(16)
        size, head = int.from_bytes(header[:4], "big"), 8
        if size == 1 and len(header) == 16:  # a 64-bit size follows the type
            size, head = int.from_bytes(header[8:16], "big"), 16
        elif size == 0:  # the box runs to the end of its parent
            size = end - offset
        if len(header) < 8 or size < head or offset + size > end:
            raise BoxOverrun(f"a box at byte {offset} runs past byte {end}")
        yield Box(header[4:8], offset + head, offset + size)
        offset += size
    if offset < end:
        raise BoxOverrun(f"more than {MAX_BOXES} boxes side by side")


def child(file: BinaryIO, parent: Box, kind: bytes) -> Box | None:
    """The first box of type `kind` directly inside `parent`."""
    return next((box for box in walk(file, parent.start, parent.end) if box.kind == kind), None)
