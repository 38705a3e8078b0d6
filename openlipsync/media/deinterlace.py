"""Interlaced video (broadcast masters, older camcorders) made progressive as it is decoded.

An interlaced frame holds two fields 1/50 or 1/60 s apart on alternate lines. Players
deinterlace what is flagged so; the output is progressive H.264, so left as it was every
moving edge (the lips most of all) would show combing there, and the face tracker and the
mouth library would see it too. FFmpeg's bwdif weaves each interlaced frame into one
picture (one out per frame in: the frame rate stays) and passes progressive frames as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction

import av
import av.filter

DEINTERLACER = "bwdif"
SETTINGS = "mode=send_frame:parity=auto:deint=interlaced"


def progressive(frames: Iterable[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    """`frames` in order, every interlaced one deinterlaced. Frames before the first
    interlaced one pass untouched; from it on all go through the filter, one frame behind
    (a new filter when the stream changes size or format: a filter is built for one)."""
    graph, shape = None, None
    for frame in frames:
        if graph is None and not frame.interlaced_frame:
            yield frame
            continue
        if graph is not None and _shape(frame) != shape:
            yield from _flushed(graph)
            graph = None
        if graph is None:
            graph, shape = _graph(frame), _shape(frame)
        graph.push(frame)
        yield from _pulled(graph)
    if graph is not None:
        yield from _flushed(graph)


def _shape(frame: av.VideoFrame) -> tuple[int, int, str]:
    return frame.width, frame.height, frame.format.name


def _flushed(graph: av.filter.Graph) -> Iterator[av.VideoFrame]:
    """The frame the filter holds back, and the end of its stream."""
    graph.push(None)
    yield from _pulled(graph)


def _graph(frame: av.VideoFrame) -> av.filter.Graph:
    graph = av.filter.Graph()
    source = graph.add_buffer(
        width=frame.width,
        height=frame.height,
        format=frame.format.name,
        time_base=frame.time_base or Fraction(1, 1000),
    )
    deinterlacer = graph.add(DEINTERLACER, SETTINGS)
    sink = graph.add("buffersink")
    source.link_to(deinterlacer)
    deinterlacer.link_to(sink)
    graph.configure()
    return graph


def _pulled(graph: av.filter.Graph) -> Iterator[av.VideoFrame]:
    while True:
        try:
            yield graph.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return
