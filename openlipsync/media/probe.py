"""What a media file holds, measured rather than trusted.

Container headers lie often enough (MPEG-PS estimates its duration from the bit rate, WebM and
Matroska carry no frame counts, variable-frame-rate phone clips report a nominal rate) that
`probe` demuxes every packet once (no decoding: milliseconds for short clips, about a second
for ten minutes of 1080p) and derives durations from the packet timestamps. It also decodes the
first video frame, which proves the codec really works and yields the display rotation.

Conventions shared by the whole media layer:

* `VideoInfo.fps` is the constant rate every decoder of this package outputs: the stream's
  average rate when it is sane (1..240 fps), else its guessed rate, else packets/duration, else
  25; an average within 0.6 % of a standard rate (a recording's 25.08) is that rate.
* `VideoInfo.frame_count` is the number of frames at that rate: ``round_half_up(duration * fps)``,
  at least 1. For constant-rate input it is exactly the number of coded frames.
* `VideoInfo.rotation` is the counter-clockwise display rotation in degrees (0/90/180/270), the
  convention of FFmpeg's display matrix and `av.VideoFrame.rotation`; width/height are the size
  after that rotation. A photo's EXIF or an MP4/MOV track's matrix may also mirror it
  (`VideoInfo.mirrored`, applied before the rotation). Decoders return upright pictures, so
  outputs need no rotation tag.
* Still images (PNG/JPEG/WebP/BMP/TIFF files; HEIC and AVIF photos, media/heif.py; any video
  stream of a single frame, such as a GIF that does not move) have ``is_still=True``, 25 fps,
  one frame, and a duration of one frame (1/25 s); width and height are those they are read
  at, within PHOTO_SIDE (readers scale larger photos down).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av

from openlipsync.engine.errors import MediaMetadataMissing, MediaUnreadable, UnsupportedSize
from openlipsync.media.damage import pictures
from openlipsync.media.heif import HEIF_CODEC, heif_size, photo_kind
from openlipsync.media.orientation import Orientation, exif_orientation, track_orientation

DEFAULT_FPS = 25.0
STANDARD_RATES = tuple(
    Fraction(n, d)
    for n, d in ((24000, 1001), (24, 1), (25, 1), (30000, 1001), (30, 1), (48, 1), (50, 1))
    + ((60000, 1001), (60, 1), (120, 1))
)
STANDARD_NEAR = 0.006  # 25.083 -> 25, 29.88 -> 29.97; 29.97 and 30 stay apart (0.1 %)
MIN_FPS, MAX_FPS = 1.0, 240.0
MAX_SIDE = 8192
"""Largest accepted picture side: bigger frames are decompression bombs, not portraits."""
PHOTO_SIDE = 4096
"""A photo's longest side as read: larger ones (a current phone's 24 or 48 MP photo, 5712 or
8064 px wide) are scaled down to fit, as the engine takes pictures up to this size."""

TRUNCATION_TOLERANCE_S = 1.0
"""How far the packets may end before the declared container duration before we call it cut."""

_STILL_FORMATS = frozenset(
    {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "jpegls_pipe"}
)
_EXACT_HEADER_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2"})
"""MP4/MOV edit lists give exact stream durations (AAC priming excluded); packets overshoot."""
_INDEXED_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "flac", "ogg", "wav"})
"""Formats whose declared duration is written, not estimated from the bit rate (a VBR MP3
without a Xing header can claim twice its length), so packets ending early mean truncation."""
_NON_MEDIA_FORMATS = frozenset({"tty", "bin", "xbin", "adf", "idf"})
"""FFmpeg's ANSI-art demuxers happily 'decode' any text file; a text file is not a video."""


class Colour(NamedTuple):
    """How a video's YUV values are to be shown: FFmpeg's AVColorSpace (the matrix),
    AVColorPrimaries and AVColorTransferCharacteristic; 2 is unspecified (players guess,
    BT.709 for HD and BT.601 below)."""

    matrix: int = 2
    primaries: int = 2
    transfer: int = 2


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frame_count: int
    duration: float
    rotation: int
    codec: str
    is_still: bool
    colour: Colour = Colour()
    aspect: Fraction = Fraction(1)  # of a pixel, width / height, as shown (anamorphic: not 1)
    mirrored: bool = False  # flipped left-right before the rotation (media/orientation.py)
    start: float = 0.0  # s: the first frame's time, where the picture's own sound is read from
    scale: float = 1.0  # of the size shown: a large photo is read smaller (PHOTO_SIDE)


@dataclass(frozen=True)
class AudioInfo:
    duration: float
    sample_rate: int
    channels: int
    codec: str


@dataclass(frozen=True)
class MediaInfo:
    format: str
    size_bytes: int
    video: VideoInfo | None
    audio: AudioInfo | None


def round_half_up(value: float) -> int:
    """Python's round() is banker's rounding; frame counts must not flip on .5 ties."""
    return int(math.floor(value + 0.5 + 1e-9))


def open_container(path: str | Path) -> av.container.InputContainer:
    """Open for reading, mapping every way a file can fail to open onto MediaUnreadable."""
    path = Path(path)
    if not path.is_file():
        raise MediaUnreadable(f"{path.name}: no such file")
    if path.stat().st_size == 0:
        raise MediaUnreadable(f"{path.name}: file is empty")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, OSError) as exc:
        raise MediaUnreadable(f"{path.name}: not a readable media file ({exc})") from exc
    if container.format.name in _NON_MEDIA_FORMATS:
        container.close()
        raise MediaUnreadable(f"{path.name}: not a media file (looks like text)")
    return container


_ASIDE = (
    av.stream.Disposition.comment
    | av.stream.Disposition.descriptions
    | av.stream.Disposition.visual_impaired
    | av.stream.Disposition.hearing_impaired
    | av.stream.Disposition.karaoke
)
"""Tracks a player does not pick by itself: a director's commentary, audio description for the
blind, a karaoke backing track."""


def picture_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    """The video track a player would show: cover art in MP3/M4A files is a 'video' stream
    too, and is never it."""
    shown = [
        stream
        for stream in container.streams.video
        if not stream.disposition & av.stream.Disposition.attached_pic
    ]
    return _played(shown)


def sound_stream(container: av.container.InputContainer) -> av.AudioStream | None:
    """The audio track a player would play. A film's master or a dub's delivery file often has
    several (languages, commentary, music and effects), and the first is not always the one
    its maker flagged default."""
    return _played(list(container.streams.audio))


def _played(streams: list):  # noqa: ANN202 - av.VideoStream | av.AudioStream | None
    """The first default track that is not an aside, else the first that is not an aside,
    else the first: FFmpeg's own order when no track says more (MP4 marks every enabled track
    default, so there the first enabled one wins)."""
    main = [s for s in streams if not s.disposition & _ASIDE] or streams
    chosen = [s for s in main if s.disposition & av.stream.Disposition.default] or main
    return chosen[0] if chosen else None


def probe(path: str | Path) -> MediaInfo:
    """Describe `path`; raise MediaUnreadable / MediaMetadataMissing instead of guessing."""
    path = Path(path)
    photo = photo_kind(path)
    if photo == "heif":
        return _heif_photo(path)
    with open_container(path) as container:
        video_stream = picture_stream(container)
        audio_stream = sound_stream(container)
        if video_stream is None and audio_stream is None:
            raise MediaUnreadable(f"{path.name}: no audio or video stream")
        if photo == "avif" and len(container.streams.video) > 1:
            raise MediaUnreadable(f"{path.name}: a tiled AVIF photo; save it as JPEG or PNG")
        # every track: the file's declared length is its longest's (_reject_truncated)
        spans = _scan_packets(
            container, path.name, [*container.streams.video, *container.streams.audio]
        )
        _reject_truncated(container, path.name, spans)
        is_still = (
            container.format.name in _STILL_FORMATS
            or photo == "avif"
            or (video_stream is not None and spans[video_stream.index].packets == 1)
        )
        video = None
        if video_stream is not None:
            video = _video_info(path, container, video_stream, spans, is_still)
        audio = None
        if audio_stream is not None:
            exact = container.format.name in _EXACT_HEADER_FORMATS
            audio = _audio_info(audio_stream, spans, exact, path.name)
        return MediaInfo(
            format=container.format.name,
            size_bytes=path.stat().st_size,
            video=video,
            audio=audio,
        )


@dataclass
class _Span:
    """Presentation interval covered by one stream's packets, in seconds."""

    start: float = math.inf
    end: float = -math.inf
    packets: int = 0

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start) if self.packets else 0.0


def _scan_packets(container, name: str, streams: list) -> dict[int, _Span]:
    wanted = [s for s in streams if s is not None]
    spans = {s.index: _Span() for s in wanted}
    try:
        for packet in container.demux(wanted):
            if packet.size == 0:
                continue
            span = spans[packet.stream.index]
            span.packets += 1
            if packet.pts is None or packet.time_base is None:
                continue
            start = float(packet.pts * packet.time_base)
            length = float((packet.duration or 0) * packet.time_base)
            span.start = min(span.start, start)
            span.end = max(span.end, start + length)
    except av.error.FFmpegError as exc:
        raise MediaUnreadable(f"{name}: corrupt media data ({exc})") from exc
    return spans


def _reject_truncated(container, name: str, spans: dict[int, _Span]) -> None:
    """A file cut short keeps its header (index, duration) but loses the packets."""
    if container.duration is None or not spans or container.format.name not in _INDEXED_FORMATS:
        return
    declared = container.duration / av.time_base
    measured = max((s.end for s in spans.values() if s.packets), default=-math.inf)
    if not math.isfinite(measured):
        return
    start = min(s.start for s in spans.values() if s.packets)
    if declared > 2.0 and measured - start < 0.9 * declared - TRUNCATION_TOLERANCE_S:
        raise MediaUnreadable(
            f"{name}: file is truncated (media ends at {measured - start:.2f} s "
            f"of a declared {declared:.2f} s)"
        )


def _heif_photo(path: Path) -> MediaInfo:
    """A HEIF photo, described by libheif from its headers (media/heif.py)."""
    if path.stat().st_size == 0:
        raise MediaUnreadable(f"{path.name}: file is empty")
    width, height = heif_size(path)
    _check_size(width, height, path.name)
    video = _still_info(width, height, HEIF_CODEC, Orientation())
    return MediaInfo(format="heif", size_bytes=path.stat().st_size, video=video, audio=None)


def _video_info(path: Path, container, stream, spans, is_still: bool) -> VideoInfo:
    name = path.name
    _check_size(stream.codec_context.width, stream.codec_context.height, name)  # before decoding
    first = _first_frame(path)
    turn = (exif_orientation(path) if is_still else None) or _turn_of(
        path, container.format.name, first
    )
    width, height = first.width, first.height
    _check_size(width, height, name)
    if turn.turned:
        width, height = height, width
    codec = stream.codec_context.name
    if is_still:
        return _still_info(width, height, codec, turn)
    colour = Colour(int(first.colorspace), int(first.color_primaries), int(first.color_trc))
    aspect = _pixel_aspect(stream, turn.rotation)
    span = spans[stream.index]
    duration = span.duration if span.packets and math.isfinite(span.start) else 0.0
    if duration <= 0 and stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    if duration <= 0 and container.duration is not None:
        duration = container.duration / av.time_base
    if duration <= 0:
        raise MediaMetadataMissing(f"{name}: video duration is unreadable")
    fps = _frame_rate(stream, span.packets, duration)
    frame_count = max(1, round_half_up(duration * fps))
    return VideoInfo(
        width,
        height,
        fps,
        frame_count,
        duration,
        turn.rotation,
        codec,
        False,
        colour,
        aspect,
        mirrored=turn.mirrored,
        start=first.time or 0.0,
    )


def _still_info(width: int, height: int, codec: str, turn: Orientation) -> VideoInfo:
    """A photo: one frame, shown for one frame at DEFAULT_FPS (the duration comes from the
    audio)."""
    read_width, read_height = _fitted(width, height)
    return VideoInfo(
        read_width,
        read_height,
        DEFAULT_FPS,
        1,
        1 / DEFAULT_FPS,
        turn.rotation,
        codec,
        True,
        mirrored=turn.mirrored,
        scale=read_width / width,
    )


def _fitted(width: int, height: int) -> tuple[int, int]:
    """A photo's size as read: within PHOTO_SIDE, its shape kept, its sides even (no padding
    for 4:2:0 output)."""
    scale = PHOTO_SIDE / max(width, height)
    if scale >= 1:
        return width, height
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


def _turn_of(path: Path, container_format: str, frame: av.VideoFrame) -> Orientation:
    """The decoder's display rotation as a quarter turn, and whether it mirrors: the track
    matrix of an MP4/MOV file says, when FFmpeg read the same turn from it (a mirror is a half
    turn to FFmpeg, whose frames are then upside down). A photo's EXIF is read whole
    elsewhere (media/orientation.py)."""
    rotation = (int(round(frame.rotation or 0)) % 360 + 45) // 90 * 90 % 360
    track = track_orientation(path) if "mp4" in container_format.split(",") else None
    if track is not None and track.ffmpeg_rotation == rotation:
        return track.shown
    return Orientation(rotation)


def _pixel_aspect(stream, rotation: int) -> Fraction:  # type: ignore[no-untyped-def]
    """The shape of a pixel as shown (DV, HDV and DVD store wide pictures in narrow pixels),
    turned with the picture; 1 when unset or nonsense."""
    aspect = stream.sample_aspect_ratio
    if not aspect or aspect <= 0 or not 0.1 <= aspect <= 10:
        return Fraction(1)
    return 1 / Fraction(aspect) if rotation in (90, 270) else Fraction(aspect)


def _check_size(width: int, height: int, name: str) -> None:
    if max(width, height) > MAX_SIDE:
        raise UnsupportedSize(f"{name}: {width}x{height} exceeds {MAX_SIDE} pixels per side")


def _first_frame(path: Path) -> av.VideoFrame:
    """Reopen rather than seek: image demuxers and MPEG-PS do not rewind reliably."""
    with open_container(path) as container:
        try:
            for frame in pictures(container, picture_stream(container), path.name):
                return frame
        except av.error.FFmpegError as exc:
            raise MediaUnreadable(f"{path.name}: video cannot be decoded ({exc})") from exc
    raise MediaUnreadable(f"{path.name}: video stream holds no decodable frame")


def _frame_rate(stream, packets: int, duration: float) -> float:
    rate = stream_rate(stream)
    if rate is not None:
        return rate
    if packets > 1 and MIN_FPS <= packets / duration <= MAX_FPS:
        return float(Fraction(packets / duration).limit_denominator(1001))
    return DEFAULT_FPS


def stream_rate(stream: av.VideoStream) -> float | None:
    """The frame rate a video stream's header gives, by this module's conventions, or None
    when it gives no sane one. The API's probe uses it too, so estimates count the frames
    the engine will make."""
    average, guessed = stream.average_rate, stream.guessed_rate
    if average and guessed and abs(guessed / average - 1) <= STANDARD_NEAR:
        # The same rate twice: the base rate FFmpeg guessed from the frames' durations is
        # the clean one (12.5 where the average over a short clip says 12.54).
        average = guessed
    for rate in (average, guessed):
        if rate and MIN_FPS <= float(rate) <= MAX_FPS:
            return _standard(Fraction(rate))
    return None


def _standard(rate: Fraction) -> float:
    """A rate averaged from a variable-rate clip's times (a browser's or a phone's recording:
    301/12 for a 25 fps camera) as the standard rate within STANDARD_NEAR of it, so that
    the output plays at a rate editors and players know; any other rate as it is."""
    nearest = min(STANDARD_RATES, key=lambda standard: abs(rate / standard - 1))
    return float(nearest if abs(rate / nearest - 1) <= STANDARD_NEAR else rate)


def _audio_info(stream, spans, exact_header: bool, name: str) -> AudioInfo:
    span = spans[stream.index]
    duration = span.duration if span.packets and math.isfinite(span.start) else 0.0
    header = 0.0
    if stream.duration is not None and stream.time_base is not None:
        header = float(stream.duration * stream.time_base)
    if duration <= 0 or (exact_header and header > 0):
        duration = header
    if duration <= 0:
        raise MediaMetadataMissing(f"{name}: audio duration is unreadable")
    ctx = stream.codec_context
    if not ctx.sample_rate:
        raise MediaMetadataMissing(f"{name}: audio sample rate is unreadable")
    return AudioInfo(duration, int(ctx.sample_rate), int(ctx.channels or 1), ctx.name)
