"""Quality bench: does the mouth follow the speech, and is everything else left alone?

Every lip measurement here uses dlib's 68-point model (bench/dlib_landmarks.py), never the
MediaPipe mesh the engine is built on, so the engine cannot grade itself.

Protocols
- truth: each real talking clip is split in half; the first half is the input video (with its
  own audio, from which the engine may learn the person), the second half's audio drives it.
  The output's outer-lip opening must follow what the real person's lips did in the second half
  (Pearson r of the curves, and of their frame-to-frame changes). The second half is never
  used for fitting.
- sync: outputs driven by new speech; inner-lip opening vs the loudness envelope at the best lag
  within +-8 frames, compared with genuine footage measured the same way; mouth opening in
  silence vs loud speech; landmark jitter; PSNR outside the lower face vs the input.

`--plan-only` skips rendering and scores the motion plan itself (plan 'open' against the same
dlib truth), which is what the audio-to-motion stage controls.

    .venv/bin/python -m bench.quality [--plan-only] [--out bench/out] [--clips grid_bbaf2n ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import numpy as np

from bench.contact_sheet import lower_face_box, save_contact_sheet
from bench.dlib_landmarks import (
    EYE_OUTER_LEFT,
    EYE_OUTER_RIGHT,
    LOWER_FACE,
    inner_lip_opening,
    measure_frames,
    outer_lip_opening,
    read_rgb_frames,
)

REPO = Path(__file__).resolve().parents[1]
MEDIA = (REPO.parent / "shared" / "media").resolve()
GRID = ("grid_bbaf2n", "grid_lbax4n", "grid_pwij3p", "grid_sbwe5n", "grid_swiz3n")
TRUTH_CANDIDATES = tuple(f"video/{g}.mpg" for g in GRID) + ("video/pyfeat_single_face.mp4",)
MAX_LAG = 8
RATE = 16000
T = TypeVar("T")
SPEECH_FRACTION = 0.2  # a clip "has speech" when this share of its frames is near speech level


# ---------------------------------------------------------------- audio


@dataclass
class Clip:
    """Mono float32 samples at a rate (same shape as openlipsync.media.audio.AudioClip)."""

    samples: np.ndarray
    sample_rate: int


def read_audio(path: Path) -> Clip | None:
    """The first audio stream at 16 kHz mono, or None when the file has no audio.

    Raises ValueError with the file name when the file is not readable media.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return None
            resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
            chunks = []
            for frame in container.decode(container.streams.audio[0]):
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    except av.error.FFmpegError as error:
        raise ValueError(f"{path}: not readable audio ({error})") from error
    if not chunks:
        return None
    return Clip(np.concatenate(chunks).astype(np.float32), RATE)


def loudness(audio: Clip, fps: float, count: int) -> np.ndarray:
    """RMS level in dB of each frame's audio [i/fps, (i+1)/fps), floored 50 dB under the peak so
    digital silence does not dominate a correlation."""
    samples = audio.samples
    edges = np.round(np.arange(count + 1) * audio.sample_rate / fps).astype(int)
    out = np.full(count, -120.0)
    for i in range(count):
        chunk = samples[edges[i] : edges[i + 1]]
        if chunk.size:
            out[i] = 10 * np.log10(np.mean(chunk.astype(np.float64) ** 2) + 1e-12)
    return np.maximum(out, out.max() - 50.0)


def has_speech(audio: Clip | None, fps: float, count: int) -> bool:
    """Speech swings 15+ dB between syllables and pauses and is near its peak a fair share of
    the time; silence, a click or a steady hiss does neither."""
    if audio is None or audio.samples.size == 0 or np.abs(audio.samples).max() < 1e-3:
        return False
    level = loudness(audio, fps, count)
    high, low = np.percentile(level, 90), np.percentile(level, 10)
    return bool(high - low >= 15.0 and np.mean(level > high - 15.0) >= SPEECH_FRACTION)


# ---------------------------------------------------------------- metrics


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if a.size < 3 or a.std() < 1e-12 or b.std() < 1e-12:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def best_lag_correlation(
    opening: np.ndarray, level: np.ndarray, max_lag: int = MAX_LAG
) -> tuple[float, int]:
    """Highest Pearson r over lags; lag > 0 means the mouth moves *before* the sound."""
    best = (float("-inf"), 0)
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            r = pearson(opening[: opening.size - lag], level[lag:])
        else:
            r = pearson(opening[-lag:], level[: level.size + lag])
        if np.isfinite(r) and r > best[0]:
            best = (r, lag)
    return (float("nan"), 0) if best[0] == float("-inf") else best


def silence_vs_speech(opening: np.ndarray, level: np.ndarray) -> tuple[float, float]:
    """Mean opening over silent frames (30 dB+ under the peak) and over loud ones (within 10 dB)."""
    silent = level < level.max() - 30.0
    loud = level > level.max() - 10.0
    mean = lambda m: float(np.nanmean(opening[m])) if m.any() else float("nan")  # noqa: E731
    return mean(silent), mean(loud)


def landmark_jitter(points: np.ndarray) -> float:
    """Median |second difference| of lower-face landmarks, in eye-distance units: high-frequency
    shake that real faces do not have (smooth motion has a small second difference)."""
    eyes = np.linalg.norm(points[:, EYE_OUTER_LEFT] - points[:, EYE_OUTER_RIGHT], axis=-1)
    lower = points[:, LOWER_FACE] / eyes[:, None, None]
    second = np.linalg.norm(lower[2:] - 2 * lower[1:-1] + lower[:-2], axis=-1)
    return float(np.nanmedian(second)) if second.size else float("nan")


def psnr_outside_lower_face(
    output: list[np.ndarray], source: list[np.ndarray], source_points: np.ndarray
) -> float:
    """PSNR of everything but the lower face, output frame i vs input frame i: the engine must
    not touch the rest of the picture."""
    errors = []
    for i in range(min(len(output), len(source))):
        a, b = output[i].astype(np.float64), source[i].astype(np.float64)
        if a.shape != b.shape:
            return float("nan")
        keep = np.ones(a.shape[:2], bool)
        if np.isfinite(source_points[i]).all():
            x0, y0, x1, y1 = lower_face_box(source_points[i], a.shape)
            keep[y0:y1, x0:x1] = False
        errors.append(np.mean((a[keep] - b[keep]) ** 2))
    if not errors:
        return float("nan")
    mse = float(np.mean(errors))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# ---------------------------------------------------------------- media writing


def write_wav(path: Path, audio: Clip) -> Path:
    from scipy.io import wavfile

    pcm = np.clip(audio.samples, -1.0, 1.0)
    wavfile.write(str(path), audio.sample_rate, (pcm * 32767).astype(np.int16))
    return path


def write_video(path: Path, frames: list[np.ndarray], fps: float, audio: Clip | None) -> Path:
    """A near-lossless H.264 MP4 (with AAC audio when given): the cut-down input video."""
    import av

    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=rate)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "10", "preset": "veryfast"}
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=audio.sample_rate)
            sound.layout = "mono"
        for rgb in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(video.encode(None))
        if sound is not None:
            step = 1024
            for start in range(0, audio.samples.size, step):
                chunk = audio.samples[start : start + step].reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(chunk, np.float32), format="fltp", layout="mono"
                )
                frame.sample_rate, frame.pts = audio.sample_rate, start
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
    return path


# ---------------------------------------------------------------- engine / plan


def measure_mouth_shapes(frames: list[np.ndarray]) -> np.ndarray:
    """The engine's own measure (MediaPipe mouth_shape) of a source video: the plan's input."""
    from openlipsync.engine.mouth import mouth_shape
    from openlipsync.engine.tracking import FaceTracker

    rows = []
    with FaceTracker() as tracker:
        for rgb in frames:
            points = tracker.process(rgb)
            rows.append(np.full((478, 2), np.nan, np.float32) if points is None else points)
    return mouth_shape(np.stack(rows))


def plan_open(
    source_frames: list[np.ndarray],
    source_audio: Clip | None,
    fps: float,
    driving: Clip,
    count: int,
    temperature: float = 0.5,
) -> np.ndarray:
    """The motion plan's inner-lip 'open' curve for `count` frames of `driving` audio."""
    from openlipsync.engine.motion import fit_person, plan_mouth

    person = fit_person(source_audio, measure_mouth_shapes(source_frames), fps)
    return plan_mouth(driving, fps, count, person, temperature)[:, 0]


def run_engine(video: Path, audio: Path, output: Path, **extra: object) -> Path:
    from openlipsync.engine import GenerateRequest, generate

    request = GenerateRequest(
        video=video, audio=audio, output=output, sync_mode="cut_off", model=MODEL[0]
    )
    for name, value in extra.items():
        setattr(request, name, value)
    generate(request)
    return output


# ---------------------------------------------------------------- protocols


@dataclass
class TruthRow:
    clip: str
    frames: int
    r: float
    diff_r: float
    loudness_r: float  # baseline: the driving loudness itself against the real opening
    plan_r: float  # the motion plan alone (separates motion from rendering failures)
    plan_diff_r: float


@dataclass
class SyncRow:
    name: str
    r: float
    lag: int
    open_silence: float
    open_loud: float
    jitter: float
    psnr: float


def truth_case(source: Path, workdir: Path, plan_only: bool, sheets: Path | None) -> TruthRow:
    """First half in, second half's audio drives, compare with the real second half."""
    frames, fps = read_rgb_frames(source)
    audio = read_audio(source)
    half = len(frames) // 2
    cut = half / fps
    first_audio = Clip(audio.samples[: round(cut * audio.sample_rate)], audio.sample_rate)
    driving = Clip(audio.samples[round(cut * audio.sample_rate) :], audio.sample_rate)
    real = outer_lip_opening(measure_frames(frames[half:]))
    count = real.size
    level = loudness(driving, fps, count)
    plan = plan_open(frames[:half], first_audio, fps, driving, count)
    curve, shown, points = plan, frames[half:], None
    if not plan_only:
        name = source.stem
        video_in = write_video(workdir / f"{name}_first.mp4", frames[:half], fps, first_audio)
        audio_in = write_wav(workdir / f"{name}_second.wav", driving)
        output = run_engine(video_in, audio_in, workdir / f"{name}_truth_out.mp4")
        shown, _ = read_rgb_frames(output)
        points = measure_frames(shown)
        curve = outer_lip_opening(points)
        count = min(count, curve.size)
        curve, real, level, plan = curve[:count], real[:count], level[:count], plan[:count]
    if sheets is not None:
        curves = {"real outer-lip opening": real, "plan open": plan, "loudness": level}
        if not plan_only:
            curves["output outer-lip opening"] = curve
        save_contact_sheet(
            sheets / f"truth_{source.stem}.png",
            shown[:count],
            points,
            curves,
            fps,
            title=f"truth {source.stem}: r={pearson(curve, real):.2f}",
        )
    return TruthRow(
        source.stem,
        count,
        pearson(curve, real),
        pearson(np.diff(curve), np.diff(real)),
        pearson(level, real),
        pearson(plan, real),
        pearson(np.diff(plan), np.diff(real)),
    )


def genuine_sync() -> list[SyncRow]:
    """Real talking heads with their own audio, measured exactly like outputs: the bar."""
    rows = []
    for name in GRID:
        path = MEDIA / f"video/{name}.mpg"
        frames, fps = read_rgb_frames(path)
        points = measure_frames(frames)
        rows.append(_sync_row(f"genuine {name}", inner_lip_opening(points), points, path, fps))
    return rows


def _sync_row(
    name: str,
    opening: np.ndarray,
    points: np.ndarray | None,
    audio_path: Path,
    fps: float,
    psnr: float = float("nan"),
) -> SyncRow:
    level = loudness(read_audio(audio_path), fps, opening.size)
    r, lag = best_lag_correlation(opening, level)
    silent, loud = silence_vs_speech(opening, level)
    jitter = landmark_jitter(points) if points is not None else float("nan")
    return SyncRow(name, r, lag, silent, loud, jitter, psnr)


def sync_cases() -> list[tuple[str, Path, Path]]:
    """(name, face video or photo, new driving speech): nobody is driven by their own audio."""
    cases = []
    for i, name in enumerate(GRID):
        donor = GRID[(i + 1) % len(GRID)]
        cases.append(
            (f"{name}<-{donor}", MEDIA / f"video/{name}.mpg", MEDIA / f"video/{donor}.mpg")
        )
    pexels = MEDIA / "video/pexels_woman_expressions.mp4"
    cases.append(("pexels<-librivox", pexels, MEDIA / "speech/librivox_austen_0870.wav"))
    cases.append(("pexels<-jfk", pexels, MEDIA / "speech/jfk_inaugural.flac"))
    # A face that never speaks in its source and grins through most of it.
    cases.append(
        ("pyfeat<-jfk", MEDIA / "video/pyfeat_single_face.mp4", MEDIA / "speech/jfk_inaugural.flac")
    )
    cases.append(
        ("astronaut<-arctic", MEDIA / "photo/astronaut.png", MEDIA / "speech/arctic_a0009.wav")
    )
    return cases


def sync_case(
    name: str, face: Path, speech: Path, workdir: Path, plan_only: bool, sheets: Path | None
) -> SyncRow:
    frames, fps = read_rgb_frames(face)
    if len(frames) == 1:
        fps = 25.0
    driving = read_audio(speech)
    if plan_only:
        # cut_off: the shorter of picture and sound; a photo lasts as long as the speech.
        duration = driving.samples.size / driving.sample_rate
        if len(frames) > 1:
            duration = min(duration, len(frames) / fps)
        count = int(np.floor(duration * fps))
        source_audio = read_audio(face) if len(frames) > 1 else None
        if not has_speech(source_audio, fps, len(frames)):
            source_audio = None
            frames = frames[:: max(1, len(frames) // 120)]  # neutral/range only: sample frames
        opening = plan_open(frames, source_audio, fps, driving, count)
        row = _sync_row(name, opening, None, speech, fps)
        shown, points = None, None
    else:
        output = run_engine(face, speech, workdir / f"{name.replace('<-', '_from_')}.mp4")
        shown, out_fps = read_rgb_frames(output)
        points = measure_frames(shown)
        source = [frames[min(i, len(frames) - 1)] for i in range(len(shown))]  # a photo holds
        source_points = measure_frames(source)
        psnr = psnr_outside_lower_face(shown, source, source_points)
        opening = inner_lip_opening(points)
        row = _sync_row(name, opening, points, speech, out_fps, psnr)
    if sheets is not None and shown is not None:
        level = loudness(read_audio(speech), fps, len(shown))
        save_contact_sheet(
            sheets / f"sync_{name.replace('<-', '_from_')}.png",
            shown,
            points,
            {"inner-lip opening": opening, "loudness": level},
            fps,
            title=f"{name}: r={row.r:.2f} lag={row.lag}",
        )
    return row


MODEL = ["lipsync-2"]  # the model id every engine run of this bench uses (--model)

TEXT_SCRIPTS = (
    "Please bring me the blue book from the top shelf.",
    "We will meet at seven, after the market closes.",
)


def text_cases(workdir: Path) -> list[tuple[str, Path, Path, dict]]:
    """(name, face, speech, engine extras): the same speech driven two ways, phones vs audio.

    Piper's own phone timings (issue 5's text path) and the forced alignment of a transcript
    (ARCTIC a0009) against the audio-only path on the very same audio.
    """
    from openlipsync.tts.piper import PiperProvider

    cases = []
    for i, script in enumerate(TEXT_SCRIPTS):
        speech = PiperProvider().synthesize(script, "joe", workdir / f"tts{i}")
        face = MEDIA / f"video/{GRID[i % len(GRID)]}.mpg"
        name = f"{face.stem}<-tts{i}"
        cases.append((f"{name} audio", face, speech.audio_path, {}))
        cases.append((f"{name} phones", face, speech.audio_path, {"phonemes": speech.phonemes}))
    arctic = MEDIA / "speech/arctic_a0009.wav"
    face = MEDIA / "photo/obama.jpg"
    transcript = "He turned sharply and faced Gregson across the table."
    cases.append(("obama<-arctic audio", face, arctic, {}))
    cases.append(("obama<-arctic transcript", face, arctic, {"transcript": transcript}))
    return cases


def text_case(name: str, face: Path, speech: Path, extra: dict, workdir: Path) -> SyncRow:
    output = run_engine(face, speech, workdir / f"{name.replace(' ', '_')}.mp4", **extra)
    shown, fps = read_rgb_frames(output)
    points = measure_frames(shown)
    return _sync_row(name, inner_lip_opening(points), points, speech, fps)


# ---------------------------------------------------------------- report


def _fmt(value: float) -> str:
    return "   n/a" if not np.isfinite(value) else f"{value:6.3f}"


def print_truth(rows: list[TruthRow]) -> None:
    print("\nTRUTH (first half in, second half's audio drives; dlib outer-lip opening)")
    print(f"{'clip':<22}{'frames':>7}{'r':>8}{'diff r':>8}{'loud r':>8}{'plan r':>8}{'plan dr':>9}")
    for row in rows:
        print(
            f"{row.clip:<22}{row.frames:>7}{_fmt(row.r):>8}{_fmt(row.diff_r):>8}"
            f"{_fmt(row.loudness_r):>8}{_fmt(row.plan_r):>8}{_fmt(row.plan_diff_r):>9}"
        )
    if rows:
        keys = ("r", "diff_r", "loudness_r", "plan_r", "plan_diff_r")
        medians = [float(np.nanmedian([getattr(row, k) for row in rows])) for k in keys]
        print(
            f"{'median':<22}{'':>7}{_fmt(medians[0]):>8}{_fmt(medians[1]):>8}"
            f"{_fmt(medians[2]):>8}{_fmt(medians[3]):>8}{_fmt(medians[4]):>9}"
        )
        print("bar: median r >= 0.65 and diff r >= 0.40; r/diff r are of the output (of the plan")
        print("with --plan-only); loud r = the driving loudness itself against the real lips")


def print_sync(rows: list[SyncRow], genuine: list[SyncRow]) -> None:
    print("\nSYNC (inner-lip opening vs loudness, best lag within +-8 frames; lag>0: mouth first)")
    print(
        f"{'case':<30}{'r':>8}{'lag':>5}{'open sil':>10}{'open loud':>10}{'jitter':>8}{'psnr':>8}"
    )
    for row in genuine + rows:
        print(
            f"{row.name:<30}{_fmt(row.r):>8}{row.lag:>5}{_fmt(row.open_silence):>10}"
            f"{_fmt(row.open_loud):>10}{_fmt(row.jitter):>8}{_fmt(row.psnr):>8}"
        )
    if genuine and rows:
        bar = float(np.nanmedian([g.r for g in genuine]))
        mine = float(np.nanmedian([r.r for r in rows]))
        print(
            f"median genuine r={bar:.3f}  median output r={mine:.3f}  "
            f"(output must reach genuine, at |lag| <= 1)"
        )


def _guarded(name: str, case: Callable[..., T], *args: object) -> T | None:
    """Run one case; a failing engine is reported and the bench goes on with the others."""
    try:
        return case(*args)
    except Exception as error:  # noqa: BLE001 - any failure is a result to print, not a crash
        where = traceback.extract_tb(error.__traceback__)[-1]
        print(
            f"!! {name} failed: {type(error).__name__}: {error} ({where.filename}:{where.lineno})"
        )
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan-only", action="store_true", help="score the motion plan only")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    parser.add_argument("--skip-sync", action="store_true")
    parser.add_argument("--skip-truth", action="store_true")
    parser.add_argument("--text", action="store_true", help="phones vs audio on the same speech")
    parser.add_argument("--model", default="lipsync-2", help="model id (engine preset) to run")
    args = parser.parse_args(argv)
    MODEL[0] = args.model
    if not MEDIA.exists():
        print(f"shared media not found at {MEDIA}", file=sys.stderr)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="olsbench") as scratch:
        workdir = Path(scratch)
        if not args.skip_truth:
            rows = []
            for relative in TRUTH_CANDIDATES:
                path = MEDIA / relative
                frames, fps = read_rgb_frames(path)
                if not has_speech(read_audio(path), fps, len(frames)):
                    print(f"(skipping {path.name}: no speech in its audio)")
                    continue
                row = _guarded(path.stem, truth_case, path, workdir, args.plan_only, args.out)
                rows.extend([row] if row is not None else [])
            print_truth(rows)
        if not args.skip_sync:
            genuine = genuine_sync()
            rows = []
            for name, face, speech in sync_cases():
                row = _guarded(
                    name, sync_case, name, face, speech, workdir, args.plan_only, args.out
                )
                rows.extend([row] if row is not None else [])
            print_sync(rows, genuine)
        if args.text:
            rows = []
            for name, face, speech, extra in text_cases(workdir):
                row = _guarded(name, text_case, name, face, speech, extra, workdir)
                rows.extend([row] if row is not None else [])
            print_sync(rows, [])
    print(
        f"\n({'plan only' if args.plan_only else 'full engine'}; "
        f"{time.monotonic() - started:.0f} s; contact sheets in {args.out})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
