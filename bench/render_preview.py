"""Contact sheets of lower-face crops (source | rendered) so a person can judge the renderer.

    .venv/bin/python bench/render_preview.py --video grid_bbaf2n.mpg --driver grid_swiz3n.mpg
    .venv/bin/python bench/render_preview.py --video photo/obama.jpg          # a still, opened

The target mouth shapes come from another clip's measured mouth_shape() curve rescaled to this
person's range (a realistic signal until the motion model exists); a still is driven by that
curve mapped onto a typical speaking range. Prints render ms/frame and the correlation between
target and measured (re-tracked) opening.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import av
import cv2
import numpy as np

from openlipsync.engine.mouth import JAW_LINE, LIPS_OUTER, face_scale, mouth_shape
from openlipsync.engine.render import MouthRenderer
from openlipsync.engine.tracking import smooth_track, track_video

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def read_frames(path: Path, scale: float = 1.0, limit: int = 10_000) -> tuple[list, float]:
    """RGB frames of a video (or a photo as one frame), optionally resized."""
    if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        frames, fps = [image], 25.0
    else:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or 25)
            frames = []
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) >= limit:
                    break
    if scale != 1.0:
        frames = [
            cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) for f in frames
        ]
    return frames, fps


def driven_targets(person: np.ndarray, driver: np.ndarray, n: int) -> np.ndarray:
    """The driver's shape curve mapped percentile-to-percentile onto this person's range."""
    driver = driver[np.isfinite(driver).all(axis=1)]
    person = person[np.isfinite(person).all(axis=1)]
    lo_d, hi_d = np.percentile(driver, 5, axis=0), np.percentile(driver, 95, axis=0)
    rest = np.median(person, axis=0)
    if len(person) < 10 or np.ptp(person[:, 0]) < 0.05:  # still or closed: typical speech range
        lo_p = np.array([0.0, rest[1], rest[2]])
        hi_p = np.array([0.22, rest[1] + 0.08, rest[2] * 0.95])
    else:
        lo_p, hi_p = np.percentile(person, 5, axis=0), np.percentile(person, 95, axis=0)
    unit = (driver - lo_d) / np.maximum(hi_d - lo_d, 1e-6)
    mapped = lo_p + unit * (hi_p - lo_p)
    mapped[:, 0] = np.maximum(mapped[:, 0], 0)
    reps = int(np.ceil(n / len(mapped)))
    return np.tile(mapped, (reps, 1))[:n].astype(np.float32)


def run(frames, fps, targets, src_index, quality="standard"):
    """Track, build, prepare and render; returns outputs, raw track and ms/frame of render()."""
    height, width = frames[0].shape[:2]
    raw = track_video(frames)
    renderer = MouthRenderer(width, height, fps, quality=quality)
    for i, frame in enumerate(frames):
        landmarks = raw.landmarks[i] if raw.present[i] else None
        renderer.observe(i, frame, landmarks)
    track = smooth_track(raw, fps)
    active = np.ones(len(targets), bool)
    renderer.prepare(track, targets, src_index, active)
    outputs, began = [], time.perf_counter()
    for t, s in enumerate(src_index):
        outputs.append(renderer.render(t, frames[s]))
    ms = (time.perf_counter() - began) / max(len(src_index), 1) * 1000
    renderer.close()
    return outputs, track, ms


def lower_face_box(landmarks: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    iod = float(face_scale(landmarks))
    points = landmarks[JAW_LINE + LIPS_OUTER]
    cx = float(points[:, 0].mean())
    cy = float(landmarks[LIPS_OUTER][:, 1].mean())
    half = 0.95 * iod
    x0, y0 = int(max(cx - half, 0)), int(max(cy - 0.6 * iod, 0))
    x1, y1 = int(min(cx + half, shape[1])), int(min(cy + 0.85 * iod, shape[0]))
    return x0, y0, x1, y1


def contact_sheet(sources, outputs, landmarks, targets, measured, picks, path: Path) -> None:
    tiles = []
    for t in picks:
        x0, y0, x1, y1 = lower_face_box(landmarks[t], sources[t].shape[:2])
        pair = [
            cv2.resize(img[y0:y1, x0:x1], (200, int(200 * (y1 - y0) / (x1 - x0))))
            for img in (sources[t], outputs[t])
        ]
        tile = np.hstack(pair)
        label = f"t{t} tgt {targets[t, 0]:.2f} got {measured[t]:.2f}"
        cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1)
        tiles.append(tile)
    h = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, h - t.shape[0]), (0, 4), (0, 0))) for t in tiles]
    cols = 3
    rows = [
        np.hstack(
            tiles[i : i + cols] + [np.zeros_like(tiles[0])] * (cols - len(tiles[i : i + cols]))
        )
        for i in range(0, len(tiles), cols)
    ]
    sheet = np.vstack(rows)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def _dlib_correlation(outputs: list[np.ndarray], target_open: np.ndarray) -> float:
    """Opening measured by dlib (independent of MediaPipe) against the target; NaN without dlib."""
    try:
        import dlib  # noqa: F401
    except ImportError:
        return float("nan")
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "dlib_landmarks", Path(__file__).with_name("dlib_landmarks.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    measured = module.outer_lip_opening(module.measure_frames(outputs))
    ok = np.isfinite(measured)
    if ok.sum() < 3 or np.ptp(target_open[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(measured[ok], target_open[ok])[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--video", default="video/grid_bbaf2n.mpg")
    parser.add_argument("--driver", default="video/grid_swiz3n.mpg")
    parser.add_argument("--quality", default="standard")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--frames", type=int, default=75)
    parser.add_argument("--out", default="out/preview.png")
    parser.add_argument("--picks", type=int, default=12)
    args = parser.parse_args()
    video = MEDIA / args.video if not Path(args.video).exists() else Path(args.video)
    frames, fps = read_frames(video, args.scale, args.frames)
    driver_frames, _ = read_frames(MEDIA / args.driver, 1.0, args.frames)
    driver_shapes = mouth_shape(track_video(driver_frames).landmarks)
    n_out = max(len(frames), len(driver_frames)) if len(frames) > 1 else len(driver_frames)
    src_index = np.arange(n_out) % len(frames)
    person = mouth_shape(smooth_track(track_video(frames), fps).landmarks)
    targets = driven_targets(person, driver_shapes, n_out)
    outputs, track, ms = run(frames, fps, targets, src_index, args.quality)
    sources = [frames[s] for s in src_index]
    measured = mouth_shape(track_video(outputs).landmarks)[:, 0]
    ok = np.isfinite(measured)
    corr = np.corrcoef(measured[ok], targets[ok, 0])[0, 1] if ok.sum() > 2 else float("nan")
    dlib_corr = _dlib_correlation(outputs, targets[:, 0])
    h, w = frames[0].shape[:2]
    print(
        f"{video.name} {w}x{h} quality={args.quality}: render {ms:.1f} ms/frame, "
        f"open corr {corr:.3f} (dlib outer-lip corr {dlib_corr:.3f}), "
        f"mean |err| {np.nanmean(np.abs(measured - targets[:, 0])):.3f}"
    )
    picks = np.linspace(0, n_out - 1, args.picks).astype(int)
    order = np.argsort(-targets[:, 0])
    picks = np.unique(np.concatenate([picks[: args.picks - 3], order[:3]]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(
        sources, outputs, track.landmarks[src_index], targets, measured, picks, Path(args.out)
    )
    print("wrote", args.out)


if __name__ == "__main__":
    main()
