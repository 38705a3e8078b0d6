"""Contact sheets of the generation-option stages, one PNG per option, for a person to look at.

Tests measure that each stage did something in the right direction; only a picture shows that
it looks natural (a blink that smears the brow or a smile that bends the nose both pass).

    .venv/bin/python -m bench.options_sheets [out_dir]   (default bench/out/)
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from openlipsync.engine.expression import EMOTIONS, expression_warp
from openlipsync.engine.occlusion import VisibilityModel
from openlipsync.engine.scenes import scene_cuts
from openlipsync.engine.speaker import (
    FaceFinder,
    MultiFaceTracker,
    choose_face,
    detect_faces,
    loudness_per_frame,
)
from openlipsync.engine.still_motion import apply_still_motion, still_motion
from openlipsync.media.audio import load_audio
from openlipsync.media.video import VideoReader

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
TILE = 200


def _crop(frame: np.ndarray, landmarks: np.ndarray, upper: bool = False) -> np.ndarray:
    """Square crop of the lower face (or the whole face when `upper`), TILE px wide."""
    low, high = landmarks.min(axis=0), landmarks.max(axis=0)
    centre = (low + high) / 2
    side = (high - low).max() * (1.1 if upper else 0.7)
    if not upper:
        centre = centre + (0, 0.22 * (high - low)[1])
    x0, y0 = (centre - side / 2).astype(int)
    size = max(int(side), 8)
    padded = cv2.copyMakeBorder(frame, size, size, size, size, cv2.BORDER_CONSTANT)
    tile = padded[y0 + size : y0 + 2 * size, x0 + size : x0 + 2 * size]
    return cv2.resize(tile, (TILE, TILE), interpolation=cv2.INTER_AREA)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    cv2.putText(tile, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3)
    cv2.putText(tile, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1)
    return tile


def _sheet(tiles: list[np.ndarray], columns: int, path: Path) -> None:
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[r : r + columns]) for r in range(0, len(tiles), columns)]
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))


def _photo(name: str) -> tuple[np.ndarray, np.ndarray]:
    image = cv2.cvtColor(cv2.imread(str(MEDIA / "photo" / name)), cv2.COLOR_BGR2RGB)
    faces = detect_faces(image, 1)
    if not faces:
        raise SystemExit(f"no face in {name}")
    return image, faces[0]


def expression_sheet(out: Path) -> None:
    tiles = []
    for name in ("astronaut.png", "obama.jpg"):
        image, landmarks = _photo(name)
        for emotion in EMOTIONS:
            warped = expression_warp(image, landmarks, emotion, 1.0)
            tiles.append(_label(_crop(warped, landmarks, upper=True), emotion))
    _sheet(tiles, len(EMOTIONS), out / "option_expression.png")


def still_sheet(out: Path) -> None:
    tiles = []
    for name in ("astronaut.png", "obama.jpg"):
        image, landmarks = _photo(name)
        motion = still_motion(75, 25.0, seed=1)
        peak = motion.blink_frames[0]
        for index in [0, peak - 2, peak - 1, peak, peak + 1, peak + 2, peak + 3, 60]:
            warped, _ = apply_still_motion(image, landmarks, motion[index])
            label = f"{name[:5]} f{index} c{motion.closure[index]:.2f}"
            tiles.append(_label(_crop(warped, landmarks, upper=True), label))
    _sheet(tiles, 8, out / "option_still_motion.png")


def occlusion_sheet(out: Path) -> None:
    path = MEDIA / "video" / "pexels_woman_expressions.mp4"
    model = VisibilityModel()
    kept: list[tuple[int, np.ndarray, np.ndarray | None]] = []
    with FaceFinder(1) as finder:
        for index, frame in enumerate(VideoReader(path)):
            if index % 12:
                continue
            faces = finder.find(frame)
            landmarks = faces[0] if faces else None
            model.observe(frame, landmarks)
            kept.append((index, frame, landmarks))
    tiles = []
    for (index, frame, landmarks), score in zip(kept, model.scores(), strict=True):
        if landmarks is not None:
            tiles.append(_label(_crop(frame, landmarks), f"f{index} vis {score:.2f}"))
    _sheet(tiles, 8, out / "option_occlusion.png")


def speaker_sheet(out: Path) -> None:
    """Two GRID speakers side by side; the soundtrack is one of them; auto-detect's choice boxed."""
    left = list(VideoReader(MEDIA / "video" / "grid_bbaf2n.mpg"))
    right = list(VideoReader(MEDIA / "video" / "grid_swiz3n.mpg"))
    frames = [np.hstack(pair) for pair in zip(left, right, strict=False)]
    with MultiFaceTracker(3) as tracker:
        for frame in frames:
            tracker.push(frame)
        track = tracker.finish()
    tiles = []
    for sound in ("grid_bbaf2n.mpg", "grid_swiz3n.mpg"):
        clip = load_audio(MEDIA / "video" / sound, 16_000)
        loudness = loudness_per_frame(clip.samples, 16_000, 25.0, len(frames))
        choice = choose_face({"auto_detect": True}, track, 25.0, source_loudness=loudness)
        for index in range(0, len(frames), 15):
            frame = frames[index].copy()
            box = choice.box_at(index)
            if box is not None:
                x1, y1, x2, y2 = (int(v) for v in box)
                cv2.rectangle(frame, (x1, y1), (x2, y2), (255, 255, 0), 3)
            tile = cv2.resize(frame, (2 * TILE, int(2 * TILE * frame.shape[0] / frame.shape[1])))
            tiles.append(_label(tile, f"audio {sound[5:11]} f{index}"))
    _sheet(tiles, 5, out / "option_speaker.png")


def scenes_sheet(out: Path) -> None:
    """Frames around a GRID -> Pexels -> GRID splice; detected shot starts are framed in red."""
    clips = [
        list(VideoReader(MEDIA / "video" / "grid_bbaf2n.mpg")),
        list(VideoReader(MEDIA / "video" / "pexels_woman_expressions.mp4"))[:40],
        list(VideoReader(MEDIA / "video" / "grid_swiz3n.mpg")),
    ]
    frames = [cv2.resize(f, (360, 288)) for clip in clips for f in clip]
    cuts = scene_cuts(frames)
    tiles = []
    for index in [0, 72, 73, 74, 75, 76, 112, 113, 114, 115, 116, 150]:
        tile = cv2.resize(frames[index], (TILE, 160))
        if index in cuts:
            cv2.rectangle(tile, (0, 0), (TILE - 1, 159), (255, 0, 0), 6)
        tiles.append(_label(tile, f"f{index}{' CUT' if index in cuts else ''}"))
    _sheet(tiles, 6, out / "option_scenes.png")


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out"
    out.mkdir(parents=True, exist_ok=True)
    expression_sheet(out)
    still_sheet(out)
    occlusion_sheet(out)
    speaker_sheet(out)
    scenes_sheet(out)
    print(f"sheets written to {out}")


if __name__ == "__main__":
    main()
