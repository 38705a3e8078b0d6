"""Decoded pictures at a constant frame rate, upright, one at a time.

`VideoReader` streams: it never holds more than the frame being shown. It turns any input
timing into a constant rate by timestamps, the way FFmpeg's ``fps`` filter does: output slot
``i`` shows the last decoded frame that starts at or before ``(i + 0.5) / fps`` (relative to the
first frame), so jitter of under half a frame never duplicates or drops anything and variable
frame rate input is duplicated/dropped evenly. It yields exactly ``info.frame_count`` frames.

`FrameSource` adds random access for the render pass. Forward access (cut_off, remap, the
first pass of everything) streams. Jumping back to frame 0 (loop) restarts the decoder, which
costs the same as reading a cache. Any other backward jump (bounce) is served from a small ring
of recent frames or, beyond it, from a disk cache of JPEG q95 4:4:4 stills (about 45 dB PSNR,
invisible after the H.264 re-encode); memory stays bounded by the ring (<= 64 MB).
"""

from __future__ import annotations

import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import av
import cv2
import numpy as np

from openlipsync.engine.errors import MediaUnreadable, VideoMissing
from openlipsync.media.damage import pictures
from openlipsync.media.deinterlace import progressive
from openlipsync.media.hdr import ToneMapper, is_hdr
from openlipsync.media.heif import HEIF_CODEC, heif_profile, read_heif
from openlipsync.media.icc import embedded_profile, srgb_converter
from openlipsync.media.picture import Picture, RgbPicture, YuvPicture, plane_array
from openlipsync.media.probe import (
    VideoInfo,
    open_container,
    picture_stream,
    probe,
    round_half_up,
)
from openlipsync.media.transparency import PHOTO_BACKGROUND, VIDEO_BACKGROUND, flattened

T = TypeVar("T")

EARLY_END_TOLERANCE_S = 1.0
"""A stream may stop this much before its measured end (the last frame is then repeated)."""

RING_BYTES = 64 * 1024 * 1024
JPEG_PARAMS = [
    cv2.IMWRITE_JPEG_QUALITY,
    95,
    cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
    cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
]


class VideoReader:
    """Iterate RGB uint8 (H, W, 3) C-contiguous frames at a constant `fps`.

    `source` is the file's probe (`probe(path).video`) when the caller has it already:
    probing reads every packet (about a second for ten minutes of 1080p).
    """

    def __init__(
        self, path: str | Path, fps: float | None = None, source: VideoInfo | None = None
    ) -> None:
        self.path = Path(path)
        if source is None:
            source = probe(self.path).video
        if source is None:
            raise VideoMissing(f"{self.path.name}: no video stream")
        self.source_info = source
        if fps is None or source.is_still:
            self.info = source
        else:
            if fps <= 0:
                raise ValueError(f"fps must be positive, got {fps}")
            count = max(1, round_half_up(source.duration * fps))
            self.info = replace(source, fps=float(fps), frame_count=count)
        self._tone_mapper = ToneMapper(source.colour.transfer) if is_hdr(source.colour) else None
        self._to_srgb = self._photo_colours() if source.is_still else None
        self._open: list[Iterator[np.ndarray]] = []

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for generator in self._open:
            generator.close()  # type: ignore[attr-defined]
        self._open.clear()

    def __len__(self) -> int:
        return self.info.frame_count

    def __iter__(self) -> Iterator[np.ndarray]:
        """Each iteration decodes from the start with its own demuxer."""
        return self._track(self._frames(self._to_rgb, copy=True))

    def pictures(self) -> Iterator[Picture]:
        """The same frames as Pictures: converted to RGB only where a caller looks (see
        media/picture.py), for passes that need the face, not the frame."""
        return self._track(self._frames(self._to_picture, copy=False))

    def _track(self, generator: Iterator[T]) -> Iterator[T]:
        self._open = [g for g in self._open if g.gi_frame is not None]  # type: ignore[attr-defined]
        self._open.append(generator)
        return generator

    def _frames(self, convert: Callable[[av.VideoFrame], T], copy: bool) -> Iterator[T]:
        info = self.info
        with self._decoded() as decoded:
            slot = 0
            pending: av.VideoFrame | None = None
            origin: float | None = None
            last_start = 0.0
            for frame in decoded:
                start = frame.time
                if start is None:
                    start = (origin or 0.0) + last_start + 1 / self.source_info.fps
                if origin is None:
                    origin = start
                last_start = start - origin
                base = None  # converted once even when the rate conversion repeats it
                while pending is not None and self._due(slot, last_start):
                    base = convert(pending) if base is None else base
                    again = self._due(slot + 1, last_start)
                    # callers may paint on the arrays they get
                    yield base.copy() if again and copy else base  # type: ignore[attr-defined]
                    slot += 1
                pending = frame
                if slot >= info.frame_count:
                    return
            if pending is None:
                raise MediaUnreadable(f"{self.path.name}: no decodable video frame")
            missing = info.frame_count - slot
            if missing / info.fps > EARLY_END_TOLERANCE_S + 1 / info.fps:
                raise MediaUnreadable(
                    f"{self.path.name}: video stream ends {missing} frames early (corrupt?)"
                )
            last = convert(pending)
            for _ in range(missing):
                yield last.copy() if copy else last  # type: ignore[attr-defined]

    def _due(self, slot: int, next_start: float) -> bool:
        """Slot `slot` still shows the pending frame: its centre precedes the next frame."""
        return slot < self.info.frame_count and (slot + 0.5) / self.info.fps < next_start

    @contextmanager
    def _decoded(self) -> Iterator[Iterator[av.VideoFrame]]:
        """The source's frames as decoded: FFmpeg's, or a HEIF photo's one picture, which
        libheif puts together (media/heif.py)."""
        if self.source_info.codec == HEIF_CODEC:
            pixels = read_heif(self.path)
            layout = "rgba" if pixels.shape[2] == 4 else "rgb24"
            yield iter([av.VideoFrame.from_ndarray(pixels, format=layout)])
            return
        with open_container(self.path) as container:
            stream = picture_stream(container)
            if stream is None:
                raise VideoMissing(f"{self.path.name}: no video stream")
            stream.thread_type = "AUTO"
            yield self._decode(container, stream)

    def _decode(self, container, stream) -> Iterator[av.VideoFrame]:
        try:
            yield from progressive(pictures(container, stream, self.path.name))
        except av.error.FFmpegError as exc:
            raise MediaUnreadable(f"{self.path.name}: video cannot be decoded ({exc})") from exc

    def _coded_size(self) -> tuple[int, int]:
        """(width, height) as decoded, before the rotation metadata turns the picture."""
        info = self.info
        turned = info.rotation in (90, 270)
        return (info.height, info.width) if turned else (info.width, info.height)

    def _photo_colours(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """A photo's conversion to sRGB, when its ICC profile is another (media/icc.py)."""
        heif = self.source_info.codec == HEIF_CODEC
        return srgb_converter(heif_profile(self.path) if heif else embedded_profile(self.path))

    def _shown(self, frame: av.VideoFrame) -> av.VideoFrame:
        """The decoded frame as this reader's pictures are coded: HDR tone-mapped to SDR
        (media/hdr.py), transparency laid over a background (media/transparency.py), a
        video's other YUV layouts as 8-bit 4:2:0 (`_as_420`)."""
        if self._tone_mapper is not None:
            frame = self._tone_mapper(frame)
        still = self.info.is_still
        frame = flattened(frame, PHOTO_BACKGROUND if still else VIDEO_BACKGROUND)
        return _as_420(frame, still)

    def _to_picture(self, frame: av.VideoFrame) -> Picture:
        """The decoder's planes when the plain conversion applies (rotated like the frame)."""
        frame = self._shown(frame)
        if self._to_srgb is not None or not _plain_yuv420(frame, *self._coded_size()):
            return RgbPicture(self._rgb_of(frame))
        return YuvPicture(*(self._upright(plane_array(plane)) for plane in frame.planes))

    def _upright(self, array: np.ndarray) -> np.ndarray:
        """A decoded plane or picture turned as the file asks (a view, not a copy)."""
        info = self.info
        if info.mirrored:
            array = array[:, ::-1]
        return np.rot90(array, k=info.rotation // 90) if info.rotation else array

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        return self._rgb_of(self._shown(frame))

    def _rgb_of(self, frame: av.VideoFrame) -> np.ndarray:
        """Convert (to the first frame's coded size, should the stream change size) and rotate."""
        width, height = self._coded_size()
        if _plain_yuv420(frame, width, height):
            # OpenCV's BT.601 limited-range conversion, the exact inverse of the encoder's
            # (media/encode.py): about 3x cheaper than swscale and an untouched pixel
            # round-trips to the same YUV. swscale applies the same matrix.
            rgb = cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2RGB_I420)
        else:  # area-averaged where a large photo is read smaller (media/probe.py PHOTO_SIDE)
            smaller = width < frame.width or height < frame.height
            rgb = frame.to_ndarray(
                format="rgb24",
                width=width,
                height=height,
                interpolation="AREA" if smaller else None,
            )
        if self._to_srgb is not None:
            rgb = self._to_srgb(rgb)
        # also packs the rows of odd widths, which come padded to 32 bytes
        return np.ascontiguousarray(self._upright(rgb))


def _as_420(frame: av.VideoFrame, is_still: bool) -> av.VideoFrame:
    """A video's YUV frame of another layout (a master's 10-bit 4:2:2, a webcam's full-range
    MJPEG) as 8-bit limited-range 4:2:0 in the same matrix, which is what the output gets:
    swscale's one conversion, then planes copied as for H.264 sources, where converting the
    whole frame to RGB and back made a 720p ProRes clip 1.3-1.8x as slow as its H.264 twin.
    RGB sources keep their RGB (an untagged matrix would be guessed), photos their chroma."""
    fmt = frame.format
    if is_still or (fmt.name == "yuv420p" and frame.color_range != 2):
        return frame
    if fmt.is_rgb or fmt.has_palette or fmt.is_bayer or frame.width % 2 or frame.height % 2:
        return frame
    full = frame.color_range == 2 or fmt.name.startswith("yuvj")
    return frame.reformat(
        format="yuv420p",
        src_color_range="JPEG" if full else "MPEG",
        dst_color_range="MPEG",
    )


def _plain_yuv420(frame: av.VideoFrame, width: int, height: int) -> bool:
    """8-bit limited-range 4:2:0 at the wanted size, even sides: the common camera/H.264 case."""
    return (
        frame.format.name == "yuv420p"
        and frame.color_range != 2  # AVCOL_RANGE_JPEG: full range needs other coefficients
        and (frame.width, frame.height) == (width, height)
        and width % 2 == 0
        and height % 2 == 0
        and all(plane.line_size >= plane.width for plane in frame.planes)  # not bottom-up
    )


def needs_disk_cache(src_index: np.ndarray) -> bool:
    """Whether reading frames in this order jumps back anywhere but to the start (bounce).

    Only then is a write-through disk cache worth its JPEG encoding of every frame (several
    ms per HD frame): forward reading streams, and a jump to frame 0 restarts the decoder.
    """
    src_index = np.asarray(src_index).reshape(-1)
    steps = np.diff(src_index)
    return bool(np.any((steps < 0) & (src_index[1:] > 0)))


def revisits(src_index: np.ndarray) -> bool:
    """Whether reading frames in this order asks for a frame again, or for an earlier one,
    other than by starting over at frame 0 (loop): only then is a ring of recent frames used."""
    src_index = np.asarray(src_index).reshape(-1)
    steps = np.diff(src_index)
    return bool(np.any((steps <= 0) & (src_index[1:] > 0)))


class FrameSource:
    """Random access to the frames of `path` at `fps`, cheap for the sync-mode access patterns.

    With `cache_dir` given, the first pass also writes every frame to the disk cache (use it
    when backward access is certain, e.g. bounce); without it the cache is built in a private
    temporary directory on the first backward jump that the ring cannot serve. With
    `keep_recent=False` (for a reading order that never revisits a frame, see `revisits`)
    there is no ring: frames are handed over as decoded, without a copy kept back, and any
    revisit is still served, from the disk cache.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | None = None,
        cache_dir: Path | None = None,
        keep_recent: bool = True,
        source: VideoInfo | None = None,
    ) -> None:
        self._reader = VideoReader(path, fps, source)
        self.info: VideoInfo = self._reader.info
        self._write_through = cache_dir is not None
        self._cache_parent = cache_dir
        self._cache_dir: Path | None = None
        self._cached = 0  # frames [0, _cached) are on disk
        self._stream: Iterator[Picture] | None = None
        self._next = 0  # index the stream yields next
        frame_bytes = max(1, self.info.width * self.info.height * 3)
        self._ring_size = max(2, min(64, RING_BYTES // frame_bytes)) if keep_recent else 0
        self._ring: OrderedDict[int, Picture] = OrderedDict()
        self.decode_passes = 0

    def __len__(self) -> int:
        return self.info.frame_count

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop_stream()
        self._reader.close()
        self._ring.clear()
        if self._cache_dir is not None:
            shutil.rmtree(self._cache_dir, ignore_errors=True)
            self._cache_dir = None
            self._cached = 0

    def get(self, index: int) -> np.ndarray:
        """Frame `index` as a fresh RGB array the caller may modify."""
        return self.picture(index).fresh_rgb()

    def picture(self, index: int) -> Picture:
        """Frame `index` as a Picture, read only: as decoded when it is decoded now or held in
        the ring (a renderer that changes only the mouth need not convert the rest), else over
        the RGB frame of the disk cache."""
        if not 0 <= index < self.info.frame_count:
            raise IndexError(f"frame {index} outside 0..{self.info.frame_count - 1}")
        if index in self._ring:
            return self._ring[index]
        if index < self._cached:
            return RgbPicture(self._read_cached(index))
        if index < self._next:
            if index > 0 or self._write_through:
                self._fill_cache()
                return RgbPicture(self._read_cached(index))
            self._stop_stream()  # a loop starts again: decode from the start
        return self._advance_to(index)

    def _advance_to(self, index: int) -> Picture:
        if self._stream is None:
            self._stream = self._reader.pictures()
            self._next = 0
            self.decode_passes += 1
        picture = None
        while self._next <= index:
            picture = next(self._stream)
            self._remember(self._next, picture)
            self._next += 1
        assert picture is not None
        return picture

    def _remember(self, index: int, picture: Picture) -> None:
        if self._ring_size:  # pictures, not RGB: half the memory, converted when asked for
            self._ring[index] = picture
            if len(self._ring) > self._ring_size:
                self._ring.popitem(last=False)
        if self._write_through and index == self._cached:
            self._write_cached(index, picture.fresh_rgb())

    def _fill_cache(self) -> None:
        """Decode to the end, writing every frame not yet on disk."""
        self._write_through = True
        if self._next > self._cached:  # frames already streamed past were not written
            self._stop_stream()
        if self._next < self.info.frame_count:
            self._advance_to(self.info.frame_count - 1)
        self._stop_stream()

    def _stop_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()  # type: ignore[attr-defined]
            self._stream = None
        self._next = 0

    def _cache_path(self, index: int) -> Path:
        if self._cache_dir is None:
            parent = self._cache_parent
            if parent is not None:
                parent.mkdir(parents=True, exist_ok=True)
            self._cache_dir = Path(tempfile.mkdtemp(prefix="frames-", dir=parent))
        return self._cache_dir / f"{index:07d}.jpg"

    def _write_cached(self, index: int, frame: np.ndarray) -> None:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), JPEG_PARAMS)
        if not ok:
            raise MediaUnreadable(f"frame {index} could not be cached")
        self._cache_path(index).write_bytes(data.tobytes())
        self._cached = index + 1

    def _read_cached(self, index: int) -> np.ndarray:
        data = np.frombuffer(self._cache_path(index).read_bytes(), np.uint8)
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
