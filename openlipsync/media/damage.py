"""Reading past damaged packets, as players do.

A recording cut off mid-write (a camcorder's battery, an interrupted download) ends in half a
packet; a scratched disc or a lossy link leaves a few broken ones inside. FFmpeg's decoders
refuse such a packet with an error, and PyAV's `container.decode` passes the error on, so one
bad packet failed the whole generation (a cut MPEG-TS: "audio cannot be decoded") where every
player plays on. Here a refused packet is skipped and reported as `Lost` (how long it played),
so audio can put silence in its place and keep the rest in sync, and video can show the frame
before it. A stream the decoder refuses wholesale is not damaged but undecodable:
MediaUnreadable, as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import av

from openlipsync.engine.errors import MediaUnreadable

REFUSED_SHARE = 0.5  # more than this share of a stream's packets refused: undecodable
REFUSED_BEFORE_JUDGING = 25  # refusals tolerated before the share is judged (a bad start)


@dataclass(frozen=True)
class Lost:
    """A packet the decoder refused, and the seconds of the stream it held."""

    seconds: float


def decoded(
    container: av.container.InputContainer, stream: av.stream.Stream, name: str
) -> Iterator[av.AudioFrame | av.VideoFrame | Lost]:
    """`stream`'s frames in decoding order, with a `Lost` where the decoder refused a packet.
    Errors reading the file itself (not a packet) pass as FFmpeg raises them."""
    packets = refused = 0
    seconds = 0.0  # a packet's length, for one that does not say its own
    for packet in container.demux(stream):
        if packet.size:
            packets += 1
            if packet.duration and packet.time_base is not None:
                seconds = float(packet.duration * packet.time_base)
        try:
            frames = stream.decode(packet)
        except (av.error.InvalidDataError, av.error.ArgumentError) as exc:
            refused += 1
            if refused > REFUSED_BEFORE_JUDGING and refused > REFUSED_SHARE * packets:
                raise MediaUnreadable(f"{name}: {stream.type} cannot be decoded ({exc})") from exc
            yield Lost(seconds)
            continue
        yield from frames
    if refused and refused >= max(1, REFUSED_SHARE * packets):
        raise MediaUnreadable(
            f"{name}: {stream.type} cannot be decoded ({refused} of {packets} packets refused)"
        )


def pictures(
    container: av.container.InputContainer, stream: av.VideoStream, name: str
) -> Iterator[av.VideoFrame]:
    """`decoded` for a picture: a refused packet is left out, and the readers, which place
    frames by their times, show the frame before it in its slots."""
    return (frame for frame in decoded(container, stream, name) if not isinstance(frame, Lost))
