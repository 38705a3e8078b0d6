"""Robustness bench: the engine on face videos unlike the shared clips, and what breaks.

The product is judged on real clips that are not in ../shared/media, while every other bench
feeds the engine the same few well-lit, frontal, centred faces. This one derives harder
variants from grid_bbaf2n.mpg and the first 5 s of pexels_woman_expressions.mp4 (PyAV +
numpy/cv2, near-lossless H.264 at the source's fps): a small face on a big canvas, a rolled or
rolling head, dark / noisy / black-and-white film, the face at the bottom, left or top edge, two
faces, a face that appears mid-clip, fast camera shake, a mirrored picture, clips of 1 or 3
frames and 0.3 s of speech, a 1920x1080 and a 720x1280 frame. Each is driven by speech it has
never heard (jfk_inaugural.flac, sync_mode cut_off) and gets one row:

- outcome: ok, the EngineError code, CRASH (any other exception: a 500 in the API, with its
  traceback in NAME.log), DIED (the process died) or TIMEOUT (a hang). generate() runs in a
  child process, so neither takes the bench down;
- sec: wall seconds of generate() alone; frames: output frames / expected (the shorter of
  picture and sound);
- psnr: PSNR outside the lower face vs the input (>= 40 dB expected); keep: PSNR of what must
  stay untouched (the smaller second face; the frames before the face appears);
- r, lag: inner-lip opening vs loudness at the best lag (bench/quality.py); sil / loud: mean
  inner-lip opening in silence and in loud speech; jit: landmark jitter; dlib: frames where the
  independent detector found the face, in the input / the output. On pexels variants these are
  measured over the first 2.3 s only: from 2.5 s a hand covers her mouth;
- hand (pexels variants): frames painted on while that hand covers the mouth / such frames.
  The engine must leave them alone (baseline_pexels does): anything else is a mouth on fingers.

Lips are measured with dlib (bench/dlib_landmarks.py), never the engine's own MediaPipe, on a
"view" of each frame that undoes the variant (un-rotate, un-shift, cut out and enlarge the small
face, brighten the dark one), so the detector's limits are not mistaken for the engine's; the
points are mapped back onto the variant's frame for the PSNR mask. For each variant --out gets
NAME.png (bench/contact_sheet.py: lower-face crops of the view above the curves), NAME_frames.png
(whole output frames above |output - input| x4: boxes, seams, a mouth where there is no face),
NAME_in.mp4, NAME_out.mp4 and NAME.log.

    .venv/bin/python -m bench.robustness [--only NAME ...] [--out /tmp/robustness] [--timeout 300]
    .venv/bin/python -m bench.robustness --list
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.contact_sheet import save_contact_sheet
from bench.dlib_landmarks import inner_lip_opening, measure_frames, read_rgb_frames
from bench.quality import (
    MAX_LAG,
    MEDIA,
    REPO,
    Clip,
    best_lag_correlation,
    landmark_jitter,
    loudness,
    psnr_outside_lower_face,
    read_audio,
    silence_vs_speech,
    write_video,
    write_wav,
)

GRID = MEDIA / "video" / "grid_bbaf2n.mpg"
GRID_OTHER = MEDIA / "video" / "grid_lbax4n.mpg"  # a second person, for two faces
PEXELS = MEDIA / "video" / "pexels_woman_expressions.mp4"
DRIVING = MEDIA / "speech" / "jfk_inaugural.flac"  # silence 0-0.35 s and 2.1-3.2 s: both states
SHORT_SPEECH = MEDIA / "speech" / "arctic_a0009.wav"
MARK = "ROBUSTNESS-RESULT "
MIN_SYNC_FRAMES = 2 * MAX_LAG + 4
CHIN, LOWER_LIP, MOUTH_LEFT, MOUTH_RIGHT = 8, 57, 48, 54  # iBUG 68-point indices
EYES = slice(36, 48)
Box = tuple[int, int, int, int]  # x0, y0, x1, y1


# ---------------------------------------------------------------- sources and variants


@dataclass
class Source:
    """A real clip, decoded, with its own sound and the dlib landmarks of every frame."""

    name: str
    frames: list[np.ndarray]
    fps: float
    audio: Clip | None
    points: np.ndarray  # (N, 68, 2)

    @property
    def size(self) -> tuple[int, int]:
        height, width = self.frames[0].shape[:2]
        return width, height


@dataclass
class Variant:
    """One input video. `to_frame[i]` maps the view of frame i (what dlib measures, `view_size`
    big) to the variant's frame; `gain` brightens the view."""

    name: str
    frames: list[np.ndarray]
    fps: float
    own_audio: Clip | None
    to_frame: np.ndarray  # (N, 2, 3)
    view_size: tuple[int, int]  # (width, height)
    driving: Path = DRIVING
    gain: float = 1.0
    keep: tuple[slice, Box] | None = None  # frames and box that must come out unchanged
    grey: bool = False  # report colour in the output (black-and-white film must stay so)
    note: str = ""
    # Frames whose mouth is in plain view (r, sil, loud are measured there), and frames where a
    # hand covers it in the source: nothing may be painted there (None: not applicable).
    clear: slice = field(default_factory=lambda: slice(None))
    covered: slice | None = None


@cache
def load_source(path: Path, seconds: float | None = None) -> Source:
    frames, fps = read_rgb_frames(path)
    if seconds is not None:
        frames = frames[: round(seconds * fps)]
    audio = read_audio(path)
    if audio is not None:
        audio = Clip(
            audio.samples[: round(len(frames) / fps * audio.sample_rate)], audio.sample_rate
        )
    return Source(path.stem, frames, fps, audio, measure_frames(frames))


# pexels_woman_expressions: the mouth is in plain view for the first 2.3 s; from 2.5 s a hand
# covers it (the engine must then leave the mouth alone: baseline_pexels does).
PEXELS_CLEAR, PEXELS_HAND = 2.3, 2.5
HAND_EDIT_PX = 200  # view pixels changed by > HAND_EDIT_DIFF: a frame that was painted on
HAND_EDIT_DIFF = 30


def grid() -> Source:
    return load_source(GRID)


def pexels() -> Source:
    return load_source(PEXELS, 5.0)


def _even(value: float) -> int:
    return int(value) // 2 * 2


def _identity(count: int) -> np.ndarray:
    return np.tile(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), (count, 1, 1))


def _scale_shift(count: int, scale_x: float, scale_y: float, dx: float, dy: float) -> np.ndarray:
    return np.tile(np.array([[scale_x, 0.0, dx], [0.0, scale_y, dy]]), (count, 1, 1))


def _trimmed(audio: Clip | None, count: int, fps: float) -> Clip | None:
    if audio is None:
        return None
    return Clip(audio.samples[: round(count / fps * audio.sample_rate)], audio.sample_rate)


def _same(src: Source, name: str, frames: list[np.ndarray], **extra: Any) -> Variant:
    """A variant with the source's geometry (the view is the frame itself)."""
    count = len(frames)
    return Variant(
        name,
        frames,
        src.fps,
        _trimmed(src.audio, count, src.fps),
        _identity(count),
        src.size,
        **extra,
    )


def _warped(src: Source, name: str, mats: np.ndarray, size: tuple[int, int], note: str) -> Variant:
    """Each frame moved by its own affine map, the border filled by edge replication."""
    frames = [
        cv2.warpAffine(f, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        for f, m in zip(src.frames, mats, strict=True)
    ]
    return Variant(name, frames, src.fps, src.audio, mats, src.size, note=note)


def _on_canvas(
    src: Source, name: str, canvas: tuple[int, int], scale: float, grey: int, note: str
) -> Variant:
    """The whole clip resized by `scale` and centred on a plain canvas of `canvas` (w, h)."""
    width, height = src.size
    w, h = _even(width * scale), _even(height * scale)
    x0, y0 = (canvas[0] - w) // 2, (canvas[1] - h) // 2
    frames = []
    for f in src.frames:
        out = np.full((canvas[1], canvas[0], 3), grey, np.uint8)
        method = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        out[y0 : y0 + h, x0 : x0 + w] = cv2.resize(f, (w, h), interpolation=method)
        frames.append(out)
    mats = _scale_shift(len(frames), w / width, h / height, x0, y0)
    return Variant(name, frames, src.fps, src.audio, mats, src.size, note=note)


def baseline(src: Source) -> Variant:
    return _same(src, f"baseline_{src.name}", list(src.frames), note="unchanged, re-encoded")


def small_face(src: Source, scale: float) -> Variant:
    """The clip shrunk on a 1280x720 grey canvas (1/3: the brief; 1/2: where the limit is)."""
    note = f"1/{round(1 / scale)} size on 1280x720 grey"
    return _on_canvas(src, "small_face", (1280, 720), scale, 60, note)


def rolled(src: Source, sweep: bool) -> Variant:
    width, height = src.size
    count = len(src.frames)
    angles = np.linspace(-20.0, 20.0, count) if sweep else np.full(count, 25.0)
    mats = np.stack([cv2.getRotationMatrix2D((width / 2, height / 2), a, 1.0) for a in angles])
    name = "roll_sweep" if sweep else "roll25"
    note = "roll -20..+20 deg over the clip" if sweep else "rolled +25 deg"
    return _warped(src, name, mats, src.size, note)


def dark(src: Source, noise: bool) -> Variant:
    rng = np.random.default_rng(7)
    frames = []
    for f in src.frames:
        dim = f.astype(np.float32) * 0.35
        if noise:  # sensor noise: mostly luminance, some chroma, new every frame
            dim += rng.normal(0.0, 6.0, f.shape[:2] + (1,)) + rng.normal(0.0, 3.0, f.shape)
        frames.append(np.clip(dim + 0.5, 0, 255).astype(np.uint8))
    name = "dark_noise" if noise else "dark"
    note = "x0.35 + noise sd 6 (luma) / 3 (chroma)" if noise else "x0.35 (dark, low contrast)"
    return _same(src, name, frames, gain=1 / 0.35, note=note)


def greyscale(src: Source) -> Variant:
    frames = [
        np.repeat(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2) for f in src.frames
    ]
    return _same(src, "grey", frames, grey=True, note="black-and-white")


def edge_bottom(src: Source, part: int) -> Variant:
    """Cut the frame off just under the chin (or just under the lower lip, chin gone)."""
    width, height = src.size
    margin = 4 if part == CHIN else 6
    bottom = min(height, _even(np.nanmax(src.points[:, part, 1]) + margin + 1))
    frames = [np.ascontiguousarray(f[:bottom]) for f in src.frames]
    name = "edge_chin" if part == CHIN else "edge_mouth"
    what = "chin" if part == CHIN else "lower lip"
    note = f"{width}x{bottom}: {what} <= {margin} px above the bottom edge"
    return _same(src, name, frames, note=note)


def edge_left(src: Source) -> Variant:
    """Cut the frame so the left mouth corner is outside (by 30% of the mouth's width)."""
    width, height = src.size
    corner = np.nanmedian(src.points[:, MOUTH_LEFT, 0])
    mouth = np.nanmedian(src.points[:, MOUTH_RIGHT, 0]) - corner
    x0 = _even(corner + 0.3 * mouth)
    frames = [np.ascontiguousarray(f[:, x0:]) for f in src.frames]
    mats = _scale_shift(len(frames), 1.0, 1.0, -x0, 0.0)
    note = f"{width - x0}x{height}: left {x0} px cut, mouth corner ~{x0 - corner:.0f} px outside"
    return Variant("edge_left", frames, src.fps, src.audio, mats, src.size, note=note)


def edge_top(src: Source) -> Variant:
    """Cut the frame off just under the eyes: an extreme close-up whose eyes, the anchor of
    every pose and alignment, the face mesh has to infer."""
    width, height = src.size
    eyes = np.nanmedian(src.points[:, EYES, 1].max(axis=1))
    y0 = _even(eyes + 3)
    frames = [np.ascontiguousarray(f[y0:]) for f in src.frames]
    mats = _scale_shift(len(frames), 1.0, 1.0, 0.0, -y0)
    note = f"{width}x{height - y0}: top {y0} px cut, the eyes just above the frame"
    return Variant("edge_top", frames, src.fps, src.audio, mats, src.size, note=note)


def two_faces(src: Source) -> Variant:
    """This clip full size on the left, another person at 0.6x on the right: the big one is
    lip-synced, the small one must come out exactly as it went in."""
    other = load_source(GRID_OTHER)
    width, height = src.size
    canvas_w, canvas_h = 640, 360
    bx, by = 16, (canvas_h - height) // 2
    sw, sh = _even(width * 0.6), _even(height * 0.6)
    sx, sy = 400, (canvas_h - sh) // 2
    frames = []
    for i, f in enumerate(src.frames):
        out = np.full((canvas_h, canvas_w, 3), 90, np.uint8)
        out[by : by + height, bx : bx + width] = f
        small = other.frames[min(i, len(other.frames) - 1)]
        out[sy : sy + sh, sx : sx + sw] = cv2.resize(small, (sw, sh), interpolation=cv2.INTER_AREA)
        frames.append(out)
    mats = _scale_shift(len(frames), 1.0, 1.0, bx, by)
    keep = (slice(0, len(frames)), (sx, sy, sx + sw, sy + sh))
    note = f"{width}x{height} + {other.name} at {sw}x{sh} on 640x360"
    return Variant("two_faces", frames, src.fps, src.audio, mats, src.size, keep=keep, note=note)


def face_appears(src: Source, background: bool) -> Variant:
    """No face for the first 1.5 s (a wall, or the picture blurred beyond recognition)."""
    width, height = src.size
    first = round(1.5 * src.fps)
    frames = list(src.frames)
    if background:  # the wall left of the head, repeated: a shot with nobody in it
        wall = src.frames[0][:, :120]
        plate = np.ascontiguousarray(np.concatenate([wall] * (width // 120 + 1), axis=1)[:, :width])
        frames[:first] = [plate] * first
        note = "first 1.5 s the empty wall, then the face"
    else:
        frames[:first] = [cv2.GaussianBlur(f, (0, 0), 25) for f in frames[:first]]
        note = "first 1.5 s blurred (sigma 25), then the face"
    keep = (slice(0, first), (0, 0, width, height))
    return _same(src, "face_appears", frames, keep=keep, note=note)


def shaken(src: Source) -> Variant:
    """Translated by 40 px (x) and 20 px (y) sinusoids at 1 Hz, edges replicated."""
    t = np.arange(len(src.frames)) / src.fps
    dx, dy = 40 * np.sin(2 * np.pi * t), 20 * np.cos(2 * np.pi * t)
    mats = np.stack([np.array([[1.0, 0.0, x], [0.0, 1.0, y]]) for x, y in zip(dx, dy, strict=True)])
    return _warped(src, "fast_motion", mats, src.size, "shift +-40 px x, +-20 px y at 1 Hz")


def mirrored(src: Source) -> Variant:
    width, _ = src.size
    frames = [np.ascontiguousarray(f[:, ::-1]) for f in src.frames]
    mats = _scale_shift(len(frames), -1.0, 1.0, width - 1, 0.0)
    return Variant("mirror", frames, src.fps, src.audio, mats, src.size, note="horizontal flip")


def _speech_cut(workdir: Path, start: float, end: float | None) -> Path:
    """ARCTIC a0009 from `start` s (speech from the first frame on) to `end`, as a WAV."""
    speech = read_audio(SHORT_SPEECH)
    rate = speech.sample_rate
    stop = None if end is None else round(end * rate)
    cut = Clip(speech.samples[round(start * rate) : stop], rate)
    return write_wav(workdir / f"arctic_{start}_{end}.wav", cut)


def few_frames(src: Source, count: int, workdir: Path) -> Variant:
    name = "one_frame" if count == 1 else f"{count}_frames"
    note = f"{count}-frame video, speech from its first frame"
    driving = _speech_cut(workdir, 0.2, None)
    return _same(src, name, src.frames[:count], driving=driving, note=note)


def short_audio(src: Source, workdir: Path) -> Variant:
    driving = _speech_cut(workdir, 0.2, 0.5)
    return _same(src, "short_audio", list(src.frames), driving=driving, note="0.3 s of speech")


def upscaled(src: Source) -> Variant:
    width, height = src.size
    return _on_canvas(
        src, "1080p", (1920, 1080), 1080 / height, 0, f"{width}x{height} x{1080 / height:.2f}"
    )


def portrait(src: Source) -> Variant:
    width, _ = src.size
    return _on_canvas(src, "portrait", (720, 1280), 720 / width, 0, "720x1280, padded vertically")


def variants(workdir: Path) -> dict[str, Callable[[], Variant]]:
    """Every variant by name (built lazily: --only builds just one)."""

    def named(name: str, build: Callable[[], Variant]) -> Callable[[], Variant]:
        def make() -> Variant:
            variant = build()
            variant.name = name
            if name.endswith("_pexels"):  # every pexels variant keeps the source's timing
                variant.clear = slice(0, round(PEXELS_CLEAR * variant.fps))
                variant.covered = slice(round(PEXELS_HAND * variant.fps), None)
            return variant

        return make

    table: dict[str, Callable[[], Variant]] = {}
    for tag, src in (("grid", grid), ("pexels", pexels)):
        builds: dict[str, Callable[[], Variant]] = {
            "baseline": lambda s=src: baseline(s()),
            "small_face": lambda s=src: small_face(s(), 1 / 3),
            "half_face": lambda s=src: small_face(s(), 1 / 2),
            "roll25": lambda s=src: rolled(s(), sweep=False),
            "roll_sweep": lambda s=src: rolled(s(), sweep=True),
            "dark": lambda s=src: dark(s(), noise=False),
            "dark_noise": lambda s=src: dark(s(), noise=True),
            "grey": lambda s=src: greyscale(s()),
            "edge_mouth": lambda s=src: edge_bottom(s(), LOWER_LIP),
            "edge_left": lambda s=src: edge_left(s()),
            "edge_top": lambda s=src: edge_top(s()),
            "face_appears": lambda s=src, t=tag: face_appears(s(), background=t == "pexels"),
            "fast_motion": lambda s=src: shaken(s()),
            "mirror": lambda s=src: mirrored(s()),
            "1080p": lambda s=src: upscaled(s()),
        }
        if tag == "grid":  # the pexels chin already touches the bottom edge
            builds["edge_chin"] = lambda s=src: edge_bottom(s(), CHIN)
            builds["two_faces"] = lambda s=src: two_faces(s())
            builds["one_frame"] = lambda s=src: few_frames(s(), 1, workdir)
            builds["3_frames"] = lambda s=src: few_frames(s(), 3, workdir)
            builds["short_audio"] = lambda s=src: short_audio(s(), workdir)
            builds["portrait"] = lambda s=src: portrait(s())
        for kind, build in builds.items():
            name = f"{kind}_{tag}"
            table[name] = named(name, build)
    return table


# ---------------------------------------------------------------- the engine, isolated


@dataclass
class Outcome:
    outcome: str  # "ok", an error code, CRASH, DIED or TIMEOUT
    seconds: float
    frames: int = 0
    message: str = ""
    log: str = ""  # traceback / stderr tail, for NAME.log


def child(video: Path, audio: Path, output: Path) -> int:
    """Run one generation and print its outcome as one JSON line (the parent's half is
    run_isolated)."""
    from openlipsync.engine import EngineError, GenerateRequest, generate

    report: dict[str, object]
    started = time.monotonic()
    try:
        result = generate(
            GenerateRequest(video, audio, output, sync_mode="cut_off", model="lipsync-2")
        )
        report = {
            "outcome": "ok",
            "frames": result.frame_count,
            "message": f"{result.width}x{result.height} @ {result.fps:.3f} fps, "
            f"{result.duration:.2f} s",
        }
    except EngineError as error:
        report = {"outcome": error.code, "message": error.message, "log": traceback.format_exc()}
    except Exception as error:  # noqa: BLE001 - an unexpected exception is the finding
        report = {
            "outcome": "CRASH",
            "message": f"{type(error).__name__}: {error}",
            "log": traceback.format_exc(),
        }
    report["seconds"] = time.monotonic() - started
    print(MARK + json.dumps(report), flush=True)
    return 0


def run_isolated(video: Path, audio: Path, output: Path, timeout: float) -> Outcome:
    """generate() in a child process: a hang is killed after `timeout` s, a crash is caught."""
    command = [sys.executable, "-m", "bench.robustness", "--child", str(video), str(audio)]
    started = time.monotonic()
    try:
        done = subprocess.run(
            [*command, str(output)], cwd=REPO, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as expired:
        tail = (expired.stderr or b"")[-3000:]
        text = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        return Outcome(
            "TIMEOUT", time.monotonic() - started, message=f"> {timeout:.0f} s", log=text
        )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MARK):
            report = json.loads(line[len(MARK) :])
            return Outcome(
                str(report["outcome"]),
                float(report["seconds"]),
                int(report.get("frames", 0)),
                str(report.get("message", "")),
                str(report.get("log", "")),
            )
    return Outcome(
        "DIED",
        time.monotonic() - started,
        message=f"exit code {done.returncode}",
        log=done.stderr[-3000:],
    )


# ---------------------------------------------------------------- measurement


@dataclass
class Row:
    name: str
    outcome: Outcome
    frames_in: int
    expected: int
    psnr: float = float("nan")
    keep: float = float("nan")
    r: float = float("nan")
    lag: int = 0
    silence: float = float("nan")
    loud: float = float("nan")
    jitter: float = float("nan")
    found_in: int = 0
    found_out: int = 0
    hand: str = ""  # frames painted on / frames where a hand covers the mouth
    notes: list[str] = field(default_factory=list)


def _view(
    frame: np.ndarray, to_frame: np.ndarray, size: tuple[int, int], gain: float
) -> np.ndarray:
    view = cv2.warpAffine(frame, to_frame, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    if gain != 1.0:
        view = np.clip(view.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    return view


def _to_frame(points: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """(N, 68, 2) view coordinates -> the variant's frame coordinates (NaN stays NaN)."""
    return np.einsum("nij,nkj->nki", mats[:, :, :2], points) + mats[:, None, :, 2]


def _psnr_box(output: list[np.ndarray], source: list[np.ndarray], frames: slice, box: Box) -> float:
    x0, y0, x1, y1 = box
    errors = [
        np.mean((a[y0:y1, x0:x1].astype(np.float64) - b[y0:y1, x0:x1]) ** 2)
        for a, b in list(zip(output, source, strict=False))[frames]
        if a.shape == b.shape
    ]
    if not errors:
        return float("nan")
    mse = float(np.mean(errors))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _painted(output: list[np.ndarray], source: list[np.ndarray]) -> int:
    """Frames (of views at the source's scale) where the engine visibly changed something.
    Both are blurred first: re-encoded sensor noise is not an edit, a painted mouth is."""
    count = 0
    for a, b in zip(output, source, strict=True):
        a, b = (cv2.GaussianBlur(x.astype(np.float32), (0, 0), 2.0) for x in (a, b))
        changed = np.abs(a - b).max(axis=2) > HAND_EDIT_DIFF
        count += int(changed.sum() > HAND_EDIT_PX)
    return count


def _colour(frames: list[np.ndarray]) -> float:
    """99.9th percentile of max-min over RGB: ~0 for a black-and-white picture."""
    spread = [np.percentile(f.max(axis=2).astype(int) - f.min(axis=2), 99.9) for f in frames]
    return float(max(spread))


def save_frames_sheet(
    path: Path, output: list[np.ndarray], source: list[np.ndarray], picks: np.ndarray
) -> Path:
    """Whole output frames (top) over |output - input| x4 (bottom), a column per picked frame."""
    height = 200
    columns = []
    for i in picks:
        out, src = output[i], source[i]
        width = max(2, round(out.shape[1] * height / out.shape[0]))
        top = cv2.resize(out, (width, height), interpolation=cv2.INTER_AREA)
        if src.shape == out.shape:
            diff = np.abs(out.astype(np.int16) - src).max(axis=2)
            diff = np.clip(diff * 4, 0, 255).astype(np.uint8)
            diff = cv2.resize(diff, (width, height), interpolation=cv2.INTER_AREA)
            bottom = cv2.applyColorMap(diff, cv2.COLORMAP_INFERNO)[..., ::-1]
        else:
            bottom = np.zeros_like(top)
        column = np.concatenate([top, bottom], axis=0)
        cv2.putText(column, f"#{i}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1)
        columns.append(np.pad(column, ((0, 0), (0, 4), (0, 0)), constant_values=255))
    sheet = np.concatenate(columns, axis=1)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return path


def measure(variant: Variant, row: Row, output_path: Path, input_path: Path, out: Path) -> None:
    """Fill `row` from the output video against the decoded input (what the engine saw)."""
    output, fps = read_rgb_frames(output_path)
    source_all, _ = read_rgb_frames(input_path)
    index = np.minimum(np.arange(len(output)), len(source_all) - 1)  # a frame/photo holds
    source = [source_all[i] for i in index]
    mats = variant.to_frame[np.minimum(index, len(variant.to_frame) - 1)]
    size, gain = variant.view_size, variant.gain
    out_views = [_view(f, m, size, gain) for f, m in zip(output, mats, strict=True)]
    in_views = [_view(f, m, size, gain) for f, m in zip(source, mats, strict=True)]
    out_points, in_points = measure_frames(out_views), measure_frames(in_views)
    row.found_out = int(np.isfinite(out_points).all(axis=(1, 2)).sum())
    row.found_in = int(np.isfinite(in_points).all(axis=(1, 2)).sum())
    if output[0].shape != source[0].shape:
        row.notes.append(f"output {output[0].shape[1]}x{output[0].shape[0]} != input size")
    row.psnr = psnr_outside_lower_face(output, source, _to_frame(in_points, mats))
    if variant.keep is not None:
        row.keep = _psnr_box(output, source, *variant.keep)
    if variant.grey:
        row.notes.append(f"colour spread in {_colour(source):.0f} / out {_colour(output):.0f}")
    opening = inner_lip_opening(out_points)
    driving = read_audio(variant.driving)
    level = loudness(driving, fps, len(output))
    seen, heard = opening[variant.clear], level[variant.clear]
    if seen.size >= MIN_SYNC_FRAMES:  # shorter: no lag search (nor a meaningful r)
        row.r, row.lag = best_lag_correlation(seen, heard)
    if seen.size >= 3:
        row.silence, row.loud = silence_vs_speech(seen, heard)
        row.jitter = landmark_jitter(out_points)
    if variant.clear != slice(None):
        row.notes.append(f"r/sil/loud over frames {variant.clear.start}-{variant.clear.stop - 1}")
    if variant.covered is not None:
        painted = _painted(out_views[variant.covered], in_views[variant.covered])
        row.hand = f"{painted}/{len(out_views[variant.covered])}"
    save_contact_sheet(
        out / f"{variant.name}.png",
        out_views,
        out_points,
        {"inner-lip opening": opening, "loudness": level},
        fps,
        title=f"{variant.name} ({variant.note}): r={row.r:.2f} lag={row.lag} "
        f"psnr={row.psnr:.1f} keep={row.keep:.1f}",
    )
    picks = np.unique(np.linspace(0, len(output) - 1, min(6, len(output))).round().astype(int))
    save_frames_sheet(out / f"{variant.name}_frames.png", output, source, picks)


def run_variant(name: str, build: Callable[[], Variant], out: Path, timeout: float) -> Row:
    variant = build()
    input_path = write_video(out / f"{name}_in.mp4", variant.frames, variant.fps, variant.own_audio)
    frames_in = len(variant.frames)
    variant.frames = []  # the decoded input is what gets compared
    driving = read_audio(variant.driving)
    # The engine's rule (media/timeline.audio_frames): the frames the sound spans, rounded half
    # up (0.3 s at 25 fps is 8 frames, 0.32 s; flooring said 7 and flagged a correct output).
    audio_frames = int(np.floor(driving.samples.size / driving.sample_rate * variant.fps + 0.5))
    output_path = out / f"{name}_out.mp4"
    output_path.unlink(missing_ok=True)
    outcome = run_isolated(input_path, variant.driving, output_path, timeout)
    row = Row(name, outcome, frames_in, min(frames_in, audio_frames))
    if outcome.outcome == "ok" and outcome.frames != row.expected:
        row.notes.append(f"{outcome.frames} frames, expected {row.expected}")
    if outcome.outcome == "ok":
        try:
            measure(variant, row, output_path, input_path, out)
        except Exception as error:  # noqa: BLE001 - a broken output is a finding too
            row.notes.append(f"measuring failed: {type(error).__name__}: {error}")
            outcome.log += traceback.format_exc()
    else:
        row.notes.append(outcome.message.splitlines()[0][:160] if outcome.message else "")
    log = f"{name}: {variant.note}\noutcome {outcome.outcome}: {outcome.message}\n{outcome.log}"
    (out / f"{name}.log").write_text(log)
    return row


# ---------------------------------------------------------------- report


def _fmt(value: float, width: int, digits: int = 2) -> str:
    return f"{'-':>{width}}" if not np.isfinite(value) else f"{value:>{width}.{digits}f}"


def print_rows(rows: list[Row], header: bool = True) -> None:
    if header:
        print(
            f"\n{'variant':<22}{'outcome':<29}{'sec':>6}{'frames':>9}{'psnr':>7}{'keep':>7}"
            f"{'r':>7}{'lag':>4}{'sil':>7}{'loud':>7}{'jit':>7}{'dlib':>10}{'hand':>7}  notes"
        )
    for row in rows:
        ok = row.outcome.outcome == "ok"
        frames = f"{row.outcome.frames}/{row.expected}" if ok else f"-/{row.expected}"
        print(
            f"{row.name:<22}{row.outcome.outcome:<29}{row.outcome.seconds:>6.1f}{frames:>9}"
            f"{_fmt(row.psnr, 7, 1)}{_fmt(row.keep, 7, 1)}{_fmt(row.r, 7)}"
            f"{row.lag if np.isfinite(row.r) else '':>4}"
            f"{_fmt(row.silence, 7, 3)}{_fmt(row.loud, 7, 3)}"
            f"{_fmt(row.jitter, 7, 3)}{f'{row.found_in}/{row.found_out}':>10}{row.hand:>7}  "
            + "; ".join(n for n in row.notes if n)
        )
    if not header:
        return
    print(
        "psnr: outside the lower face vs the input (>= 40 dB); keep: the region that must not"
        " change; r/lag: dlib inner-lip opening vs loudness (lag > 0: mouth first); sil/loud:"
        " mean opening in silence / loud speech; dlib: frames with a face in / out; hand:"
        " frames painted on while a hand covers the mouth / such frames (must be 0)"
    )


def engine_version() -> str:
    """The commit the engine runs from, marked dirty when openlipsync/ has local changes."""
    git = ["git", "-C", str(REPO)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "openlipsync"], capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return head.stdout.strip() + (" (openlipsync/ modified)" if dirty.stdout.strip() else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="run just this variant")
    parser.add_argument("--out", type=Path, default=Path("/tmp/robustness"))
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per generation")
    parser.add_argument("--list", action="store_true", help="print the variant names")
    parser.add_argument("--child", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)
    with tempfile.TemporaryDirectory(prefix="olsrobust") as scratch:
        table = variants(Path(scratch))
        if args.list:
            print("\n".join(table))
            return 0
        if not MEDIA.exists():
            print(f"shared media not found at {MEDIA}", file=sys.stderr)
            return 0
        unknown = sorted(set(args.only or []) - set(table))
        if unknown:
            print(f"unknown variant(s) {unknown}; --list shows them", file=sys.stderr)
            return 2
        args.out.mkdir(parents=True, exist_ok=True)
        version = engine_version()
        print(f"engine at {version}; driving speech {DRIVING.name}; output in {args.out}")
        started = time.monotonic()
        rows = []
        for name, build in table.items():
            if args.only and name not in args.only:
                continue
            rows.append(run_variant(name, build, args.out, args.timeout))
            print_rows(rows[-1:], header=False)
        print_rows(rows)
    print(
        f"\n(engine at {version}; {time.monotonic() - started:.0f} s;"
        f" sheets, videos and logs in {args.out})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
