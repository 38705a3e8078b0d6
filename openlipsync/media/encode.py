"""The deliverable: an MP4 every player accepts, with sound exactly as long as the picture.

Choices and why:

* H.264 High, yuv420p, CRF 18 ``veryfast`` by default (the spec's reference uses CRF 17 slow;
  callers may ask for that), ``+faststart`` so browsers start playing before the download ends.
* 4:2:0 needs even sides. Odd-sized frames are padded by one replicated edge column/row on the
  right/bottom (no black line, no lost pixel); the output is then ``width + width % 2`` by
  ``height + height % 2``. `VideoWriter.width`/`height` report the encoded size.
* RGB -> YUV 4:2:0 is OpenCV's BT.601 limited-range conversion (6x faster than swscale at 720p,
  identical values), and the stream is tagged BT.601 so players invert it exactly, also for HD
  (players honour the tag; they only guess BT.709 for untagged HD). A stream whose planes are
  copied from a 4:2:0 source instead carries the source's colour tags (`_tag_colour`); an HDR
  source's pictures are SDR BT.709 (the reader tone-maps them, media/hdr.py) and tagged so.
* Audio is AAC-LC, mono or stereo as the clip is, interleaved with the video as frames
  arrive. The clip's sample rate is kept when AAC supports it (16 kHz speech stays 16 kHz),
  otherwise resampled to 48 kHz. On `close` the audio is cut or padded with silence to
  exactly ``frames / fps`` seconds.
* A 4:2:0 source picture with a patch (the new mouth) is copied plane by plane and only the
  patch's box goes through RGB (`encodable`): the rest of the frame is the decoder's own pixels
  (a whole-frame RGB round trip moves a few by up to 4 levels) at a fraction of the cost.
* The audio is encoded on a thread of its own (`_AudioFeed`), up to the picture written so
  far: reading and encoding it costs the writing thread about half a millisecond per video
  frame, which held back every hand-over to x264 (a 720p render pass with no sound at all
  was a fifth shorter). Encoding and muxing hold one lock (`_encode`): the threads only
  overlap in preparing what they encode.
"""

from __future__ import annotations

import contextlib
import threading
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from scipy.signal import resample_poly

from openlipsync.engine.errors import EngineError
from openlipsync.media.audio import AudioClip
from openlipsync.media.hdr import shown_colour
from openlipsync.media.picture import Patch, Picture, even_box, plane_array
from openlipsync.media.probe import Colour, round_half_up

BT601 = 6  # AVColorSpace smpte170m: the matrix of cv2's RGB <-> YUV conversions
AAC_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000})
FALLBACK_AUDIO_RATE = 48000
# How far (seconds of picture) the audio thread may fall behind before `write` waits for it:
# the muxer holds the picture's packets until the sound's catch up, and flushes them out of
# order past 10 s (its max_interleave_delta).
MAX_AUDIO_LAG = 2.0


def frame_rate(fps: float) -> Fraction:
    """The exact rational rate behind a float fps (23.976... -> 24000/1001)."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return Fraction(fps).limit_denominator(1001)


class VideoWriter:
    """Write RGB frames (and an optional audio clip) to an H.264 + AAC MP4 file."""

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float,
        audio: AudioClip | None,
        crf: int = 18,
        preset: str = "veryfast",
        colour: Colour | None = None,
        aspect: Fraction = Fraction(1),
    ) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"bad frame size {width}x{height}")
        self.path = Path(path)
        self._aspect = aspect  # the source's pixel shape: anamorphic pictures stay wide
        self._colour = shown_colour(colour or Colour())  # its pictures' (see _tag_colour)
        self.source_width, self.source_height = width, height
        self.width, self.height = width + width % 2, height + height % 2
        self.rate = frame_rate(fps)
        self.frames = 0
        self._closed = False
        self._audio = _audio_for_aac(audio) if audio is not None else None
        self._audio_sent = 0
        self._codec_lock = threading.Lock()
        self._container = av.open(str(self.path), "w", options={"movflags": "+faststart"})
        try:
            self._video = self._add_video(crf, preset)
            self._audio_stream = self._add_audio() if self._audio is not None else None
        except BaseException:
            self._container.close()
            raise
        self._feed = _AudioFeed(self) if self._audio_stream is not None else None

    def _add_video(self, crf: int, preset: str):
        stream = self._container.add_stream("libx264", rate=self.rate)
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
        stream.time_base = 1 / self.rate
        stream.options = {"crf": str(crf), "preset": preset}
        stream.codec_context.color_range = 1  # limited ("tv")
        if self._aspect != 1:
            stream.codec_context.sample_aspect_ratio = self._aspect
        return stream

    def _tag_colour(self, first: av.VideoFrame) -> None:
        """Tag the stream, before its first frame, so players show it as they showed the
        source. The frame says its matrix (`encodable` and `picture` set it; a frame may come
        from another writer of the same source, as the segment output's do): planes copied
        from the source keep the source's, whatever it is (untagged stays untagged: players
        then guess for the output as they did for the source); tagging them BT.601 shifted
        every colour of a BT.709 source (most HD): a cyan backdrop by 15 levels. Frames
        converted from RGB went through cv2's BT.601. Primaries and transfer belong to the
        pictures whichever the matrix: the source's, or sRGB's where the source has none and
        the pixels were converted."""
        ctx = self._video.codec_context
        source = self._colour
        ctx.colorspace = int(first.colorspace)
        if ctx.colorspace == source.matrix:
            ctx.color_primaries, ctx.color_trc = source.primaries, source.transfer
        else:
            ctx.color_primaries = source.primaries if source.primaries != 2 else 1  # bt709
            ctx.color_trc = source.transfer if source.transfer != 2 else 1

    def _add_audio(self):
        assert self._audio is not None
        return add_aac_stream(self._container, self._audio)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()

    def write(self, frame_rgb: np.ndarray) -> None:
        self.write_picture(self.picture(frame_rgb))

    def picture(self, frame_rgb: np.ndarray) -> av.VideoFrame:
        """`frame_rgb` converted for the encoder, for `write_picture`. Safe on any thread: a
        caller that encodes on a thread of its own converts on another, so the encoder's
        thread only feeds x264 (the conversion there held back every hand-over to it)."""
        if self._closed:
            raise ValueError("write() after close()")
        expected = (self.source_height, self.source_width, 3)
        if frame_rgb.shape != expected or frame_rgb.dtype != np.uint8:
            raise ValueError(
                f"frame must be uint8 {expected}, got {frame_rgb.dtype} {frame_rgb.shape}"
            )
        rgb = frame_rgb
        if (self.width, self.height) != (self.source_width, self.source_height):
            rgb = cv2.copyMakeBorder(
                frame_rgb,
                0,
                self.height - self.source_height,
                0,
                self.width - self.source_width,
                cv2.BORDER_REPLICATE,
            )
        yuv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.colorspace = BT601  # cv2's matrix (see _tag_colour)
        return frame

    def encodable(self, picture: Picture, patch: Patch | None = None) -> av.VideoFrame:
        """`picture` with `patch` painted on, converted for `write_picture` (any thread, as
        `picture`): a 4:2:0 picture of the encoded size by its planes, others through RGB."""
        planes = picture.planes()
        if planes is None or (picture.width, picture.height) != (self.width, self.height):
            rgb = picture.fresh_rgb() if patch is None else patch.onto(picture.rgb())
            return self.picture(rgb)
        if self._closed:
            raise ValueError("write() after close()")
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        frame.colorspace = self._colour.matrix  # the source's values, shown as it was shown
        out = [plane_array(plane) for plane in frame.planes]
        for dst, src in zip(out, planes, strict=True):
            dst[...] = src
        if patch is not None:
            _paint_patch(out, picture, patch)
        return frame

    def write_picture(self, frame: av.VideoFrame) -> None:
        """Encode a frame made by `picture` (of this writer or of one of the same size)."""
        if self._closed:
            raise ValueError("write() after close()")
        if (frame.width, frame.height, frame.format.name) != (self.width, self.height, "yuv420p"):
            raise ValueError(
                f"picture must be yuv420p {self.width}x{self.height}, got "
                f"{frame.format.name} {frame.width}x{frame.height}"
            )
        if self.frames == 0:
            self._tag_colour(frame)
        frame.pts = self.frames
        frame.time_base = Fraction(1) / self.rate  # codec units; the muxer has its own
        self._encode(self._video, frame)
        self.frames += 1
        if self._feed is not None:
            self._feed.advance(self.frames, max(1, round(MAX_AUDIO_LAG * float(self.rate))))

    def close(self) -> int:
        """Flush, cut/pad the audio to the picture's length, finish the file; frames written."""
        if self._closed:
            return self.frames
        if self.frames == 0:
            self._abort()
            raise EngineError("no video frames were written")
        try:
            self._encode(self._video, None)
            if self._feed is not None:
                self._feed.finish(self.frames)
        except BaseException:
            self._abort()
            raise
        self._container.close()
        self._closed = True
        return self.frames

    def _abort(self) -> None:
        """Never leave a half-written file that looks like a result."""
        if not self._closed:
            self._closed = True
            if self._feed is not None:
                self._feed.stop()
            with contextlib.suppress(av.error.FFmpegError):
                self._container.close()
            self.path.unlink(missing_ok=True)

    def _encode(self, stream, frame) -> None:  # type: ignore[no-untyped-def]
        """Encode `frame` (None: flush) on `stream` and mux its packets. One lock for both
        threads' encoding and muxing: with the audio thread encoding while the picture's
        packets were muxed, a test run crashed in the AAC encoder (SIGSEGV, once, under CI
        load), and the muxer laid the same packets out differently from run to run. The
        audio thread still prepares its samples in parallel; x264 works on its own threads."""
        with self._codec_lock:
            for packet in stream.encode(frame):
                self._container.mux(packet)

    def _send_audio_until(self, frames: int, final: bool = False) -> None:
        """Encode the audio up to the end of video frame `frames`, in whole AAC frames."""
        if self._audio_stream is None or self._audio is None:
            return
        rate = self._audio.sample_rate
        target = round_half_up(float(frames / self.rate) * rate)
        chunk = self._audio_stream.codec_context.frame_size or 1024
        while target - self._audio_sent >= chunk or (final and target > self._audio_sent):
            count = min(chunk, target - self._audio_sent)
            frame = aac_frame(self._audio.window(self._audio_sent, count), rate, self._audio_sent)
            self._encode(self._audio_stream, frame)
            self._audio_sent += count


class _AudioFeed:
    """Encodes a writer's audio on a thread of its own, up to the video frames written so far.

    `advance(frames)` lets it go on (and waits while it is more than `lag` frames behind);
    `finish(frames)` has it pad or cut the sound to the picture's length, flush the encoder and
    end; `stop` ends it without finishing (an aborted file). An error ends it, and is raised
    by every call after.
    """

    def __init__(self, writer: VideoWriter) -> None:
        self._writer = writer
        self._changed = threading.Condition()
        self._target = 0  # video frames the audio may be encoded up to
        self._done = 0  # video frames the audio has been encoded up to
        self._final = False
        self._stopped = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="openlipsync-audio", daemon=True)
        self._thread.start()

    def advance(self, frames: int, lag: int) -> None:
        with self._changed:
            self._raise_error()
            self._target = frames
            self._changed.notify_all()
            while frames - self._done > lag and self._error is None and not self._stopped:
                self._changed.wait()
            self._raise_error()

    def finish(self, frames: int) -> None:
        with self._changed:
            self._target, self._final = frames, True
            self._changed.notify_all()
        self._thread.join()
        with self._changed:
            self._raise_error()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _raise_error(self) -> None:
        if self._error is not None:  # the thread has ended: every later call fails too
            raise self._error

    def _run(self) -> None:
        writer = self._writer
        try:
            while True:
                with self._changed:
                    while self._target == self._done and not self._final and not self._stopped:
                        self._changed.wait()
                    if self._stopped:
                        return
                    target, final = self._target, self._final
                writer._send_audio_until(target, final=final)
                if final:
                    writer._encode(writer._audio_stream, None)
                with self._changed:
                    self._done = target
                    self._changed.notify_all()
                if final:
                    return
        except BaseException as exc:  # raised on the writing thread by the next call
            with self._changed:
                self._error = exc
                self._changed.notify_all()


def _audio_for_aac(clip: AudioClip) -> AudioClip:
    if clip.sample_rate in AAC_RATES:
        return clip
    resampled = resample_poly(clip.samples, FALLBACK_AUDIO_RATE, clip.sample_rate, axis=0)
    return AudioClip(np.clip(resampled, -1, 1).astype(np.float32), FALLBACK_AUDIO_RATE)


AAC_LAYOUTS = {1: "mono", 2: "stereo"}


def add_aac_stream(container, clip: AudioClip):  # type: ignore[no-untyped-def]
    """An AAC-LC stream for `clip` (mono or stereo): 64 kb/s per channel up to 24 kHz, 128
    above, a stereo pair at one and a half times that (its channels share most of the sound)."""
    layout = AAC_LAYOUTS.get(clip.channels)
    if layout is None:
        raise ValueError(f"AAC output is mono or stereo, not {clip.channels} channels")
    stream = container.add_stream("aac", rate=clip.sample_rate, layout=layout)
    mono = 64000 if clip.sample_rate <= 24000 else 128000
    stream.bit_rate = mono if clip.channels == 1 else mono * 3 // 2
    return stream


def aac_frame(samples: np.ndarray, rate: int, pts: int) -> av.AudioFrame:
    """(n,) or (n, 2) samples as one planar float frame at sample `pts`."""
    planar = samples[None, :] if samples.ndim == 1 else np.ascontiguousarray(samples.T)
    frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=AAC_LAYOUTS[len(planar)])
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = Fraction(1, rate)
    return frame


def _paint_patch(planes: list[np.ndarray], picture: Picture, patch: Patch) -> None:
    """Write `patch` into 4:2:0 planes: its box widened to even sides (chroma covers 2x2
    pixels) is converted as a whole frame's conversion converts it, the widening's pixels
    taken from `picture`."""
    x0, y0, x1, y1 = patch.box
    ex0, ey0, ex1, ey1 = even_box(patch.box, picture.width, picture.height)
    rgb = np.array(picture.region((ex0, ey0, ex1, ey1)))
    rgb[y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0] = patch.rgb
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    rows, half = ey1 - ey0, (ey1 - ey0) // 2
    chroma = i420[rows:].reshape(2, half, (ex1 - ex0) // 2)
    planes[0][ey0:ey1, ex0:ex1] = i420[:rows]
    planes[1][ey0 // 2 : ey1 // 2, ex0 // 2 : ex1 // 2] = chroma[0]
    planes[2][ey0 // 2 : ey1 // 2, ex0 // 2 : ex1 // 2] = chroma[1]
