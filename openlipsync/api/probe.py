"""Sniff uploaded files with PyAV: is it media at all, what kind, how long, how many fps.

Kept on the API side (not the engine) because the API only needs container metadata, and
this must stay fast and safe on hostile input: headers only, no decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import av

from openlipsync.engine.errors import MediaUnreadable
from openlipsync.media.heif import heif_size, photo_kind
from openlipsync.media.orientation import exif_orientation, track_orientation
from openlipsync.media.probe import picture_stream, sound_stream, stream_rate

IMAGE_FORMAT_SUFFIXES = ("_pipe",)
IMAGE_FORMATS = ("image2", "png", "mjpeg")
ISOBMFF_FORMATS = ("mov", "mp4")  # MediaInfo.container: the first of FFmpeg's names
# Raw MP3 and ADTS AAC: FFmpeg guesses their duration from the first frames' bitrate unless
# an MP3 has a VBR header (without one, a VBR MP3 of 7.10 s read 6.25), so their packets are
# read too. The header wins when within this fraction of the packets (a VBR header also counts
# the encoder's padding out, which the packets' times keep); ADTS never has one.
ESTIMATED_FORMATS = {"mp3": 0.02, "aac": 0.0}
SCAN_PACKETS = 1_000_000  # over 5 hours of 25 fps video; a duration beyond is left unknown


class NotMediaError(ValueError):
    """The bytes are not an audio, video or image container PyAV can read."""


@dataclass(frozen=True)
class MediaInfo:
    kind: str  # VIDEO | AUDIO | IMAGE (AssetType)
    container: str
    duration: float | None
    fps: float | None
    width: int | None
    height: int | None
    has_audio: bool


def probe(path: Path) -> MediaInfo:
    photo = photo_kind(path)
    if photo == "heif":
        return _heif_photo(path)
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            info = _describe(container)
    except NotMediaError:
        raise
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise NotMediaError(
            f"not a readable audio/video/image file ({exc.__class__.__name__})"
        ) from None
    if photo == "avif" and info.kind != "AUDIO":  # FFmpeg reads it as a one-frame video
        return replace(info, kind="IMAGE", container="avif", duration=None, fps=None)
    return _as_shown(info, path)


def _as_shown(info: MediaInfo, path: Path) -> MediaInfo:
    """Width and height of the picture as shown: a phone's upright video or photo is stored
    on its side, with a track matrix or EXIF orientation that says how to turn it."""
    if info.kind == "IMAGE":
        turn = exif_orientation(path)
        turned = turn is not None and turn.turned
    else:
        track = track_orientation(path) if info.container in ISOBMFF_FORMATS else None
        turned = track is not None and track.shown.turned
    return replace(info, width=info.height, height=info.width) if turned else info


def _heif_photo(path: Path) -> MediaInfo:
    """A HEIC photo, from its headers by libheif (FFmpeg sees a tile of a phone's photo)."""
    try:
        width, height = heif_size(path)
    except MediaUnreadable as exc:
        raise NotMediaError(exc.message) from None
    return MediaInfo("IMAGE", "heic", None, None, width, height, has_audio=False)


def _describe(container: av.container.InputContainer) -> MediaInfo:
    name = container.format.name or ""
    video = picture_stream(container)  # an MP3's or FLAC's album cover is not a video
    audio = sound_stream(container)
    if video is None and audio is None:
        raise NotMediaError("the file has no audio or video stream")
    is_image = (
        video is not None
        and audio is None
        and (
            name.endswith(IMAGE_FORMAT_SUFFIXES)
            or name in IMAGE_FORMATS
            or video.frames == 1  # a GIF that does not move (the engine takes it as a photo)
        )
    )
    duration = None if is_image else _duration(container, video or audio)
    fps = stream_rate(video) if video is not None and not is_image else None
    width = video.codec_context.width if video is not None else None
    height = video.codec_context.height if video is not None else None
    kind = "IMAGE" if is_image else ("VIDEO" if video is not None else "AUDIO")
    return MediaInfo(
        kind=kind,
        container=name.split(",")[0],
        duration=duration,
        fps=fps,
        width=width or None,
        height=height or None,
        has_audio=audio is not None,
    )


def _duration(container: av.container.InputContainer, stream: av.stream.Stream) -> float | None:
    trust = ESTIMATED_FORMATS.get(container.format.name)
    scanned = None if trust is None else _scanned_duration(container, stream)
    header = container.duration / av.time_base if container.duration else None
    if scanned is not None and (header is None or abs(header - scanned) > trust * scanned):
        return scanned
    if header is not None:
        return header
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return scanned if trust is not None else _scanned_duration(container, stream)


def _scanned_duration(
    container: av.container.InputContainer, stream: av.stream.Stream
) -> float | None:
    """From the packets' own times, for files whose headers carry no duration: a browser's
    MediaRecorder WebM, a live stream's capture. Demuxing only (no decoding), and at most
    SCAN_PACKETS of them, so a file of a billion tiny packets cannot hold the request."""
    first, last = None, None
    try:
        for count, packet in enumerate(container.demux(stream)):
            if count >= SCAN_PACKETS:
                return None
            if packet.pts is None or packet.time_base is None:
                continue
            start = float(packet.pts * packet.time_base)
            end = start + float((packet.duration or 0) * packet.time_base)
            first = start if first is None else min(first, start)
            last = end if last is None else max(last, end)
    except av.FFmpegError:
        return None
    return last - first if first is not None and last > first else None
