"""Still occluders: a microphone on a stand before a swaying head (engine/occluders.py).

The GRID speaker grid_bbaf2n sways (x: +-SWAY px at 0.4 Hz, y: half that at 0.3 Hz, as a
seated speaker leans and turns) and a dark foam microphone is drawn, still, over his chin (its
top at the lower lip: --top) on 360x288 frames; arctic_a0009 drives it. Each row is one sway,
run with the occluders found as the engine does and without them (the same process, the
search switched off), and prints:

- found: the share of the microphone's head the engine marks, and pixels marked beyond 6 px of
  the microphone (a grid pixel and a half);
- mic: how much the microphone changes in the output (mean of the per-pixel largest channel
  difference inside it, eroded by 2 px; x264 alone changes it by about 1);
- ghost: most pixels of a frame, in a ring 1-6 px around the microphone, darkened by more
  than 40 grey levels (a microphone pasted from another frame beside the real one);
- redrawn: frames whose mouth changed (>= 100 px by more than 20 levels).

Then the same sways with burnt-in captions over the chin instead of a microphone, one line
and then another (CAPTIONS): how much the letters change within the mouth's reach, on average
over the frames and at most. Captions change during the shot, so the whole-shot search does
not find them; engine/captions.py does, frame by frame (before it, the mouth came with the
other line's letters: 25-57 levels).

    python -m bench.occluders [--sways 0,4,8,12,20] [--top 218] [--keep DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from bench.engine import MEDIA

FPS = 25
MIC_AXES = (34, 22)
MIC_X = 178
SPEAKER = MEDIA / "video" / "grid_bbaf2n.mpg"
SPEECH = MEDIA / "speech" / "arctic_a0009.wav"


def mic_centre(top: int) -> tuple[int, int]:
    return MIC_X, top + MIC_AXES[1]


def microphone(size: tuple[int, int], top: int = 218) -> np.ndarray:
    """bool (h, w): where the drawn microphone is (its head and stand)."""
    mask = np.zeros(size, np.uint8)
    cx, cy = mic_centre(top)
    cv2.ellipse(mask, (cx, cy), MIC_AXES, 0, 0, 360, 1, -1)
    cv2.rectangle(mask, (cx - 5, cy + 20), (cx + 5, size[0]), 1, -1)
    return mask > 0


CAPTIONS = ("HELLO WORLD", "SUBTITLE TWO")  # burnt in over the chin, one after the other
CAPTION_ROW = 238


def caption(frame: np.ndarray, index: int, count: int) -> None:
    """Draw the caption of frame `index` of `count` (white, outlined in black) in place."""
    text = CAPTIONS[index * len(CAPTIONS) // count]
    font = cv2.FONT_HERSHEY_DUPLEX
    (width, _), _ = cv2.getTextSize(text, font, 0.9, 2)
    origin = ((frame.shape[1] - width) // 2, CAPTION_ROW)
    cv2.putText(frame, text, origin, font, 0.9, (0, 0, 0), 5, cv2.LINE_AA)
    cv2.putText(frame, text, origin, font, 0.9, (255, 255, 255), 2, cv2.LINE_AA)


def write_clip(
    out: Path,
    sway: float,
    with_microphone: bool,
    then: Path | None = None,
    top: int = 218,
    captions: bool = False,
) -> Path:
    """The swaying speaker (H.264, crf 16); with `then` (a clip), a cut to that clip swaying
    without a microphone; with `captions`, burnt-in captions over his chin (see CAPTIONS)."""
    from openlipsync.media.video import VideoReader

    frames = list(VideoReader(SPEAKER))
    count = len(frames)
    if then is not None:
        frames += list(VideoReader(then))
    height, width = frames[0].shape[:2]
    mic = microphone((height, width), top)
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "16"}
        for index, frame in enumerate(frames):
            t = index / FPS
            dx, dy = sway * np.sin(2 * np.pi * 0.4 * t), 0.5 * sway * np.cos(2 * np.pi * 0.3 * t)
            moved = cv2.warpAffine(
                frame,
                np.float32([[1, 0, dx], [0, 1, dy]]),
                (width, height),
                borderMode=cv2.BORDER_REPLICATE,
            )
            if with_microphone and index < count:
                moved[mic] = (45, 45, 48)
                cx, cy = mic_centre(top)
                cv2.ellipse(moved, (cx - 10, cy - 8), (12, 6), -20, 0, 360, (70, 70, 75), -1)
            if captions:
                caption(moved, index, count)
            picture = av.VideoFrame.from_ndarray(moved, format="rgb24")
            picture.pts, picture.time_base = index, Fraction(1, FPS)
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out


def damage(before: list[np.ndarray], after: list[np.ndarray], top: int = 218) -> dict:
    """How the output treats the microphone: see the module docstring (mic, ghost, redrawn)."""
    mic = microphone(before[0].shape[:2], top).astype(np.uint8)
    inner = cv2.erode(mic, np.ones((5, 5), np.uint8)) > 0
    ring = cv2.dilate(mic, np.ones((13, 13), np.uint8)) > 0
    ring &= ~(cv2.dilate(mic, np.ones((3, 3), np.uint8)) > 0)
    changed, ghosts, redrawn = [], [], 0
    for a, b in zip(before, after, strict=False):
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2)
        changed.append(float(diff[inner].mean()))
        ghosts.append(int(((a.mean(axis=2) - b.mean(axis=2) > 40) & ring).sum()))
        redrawn += int((diff > 20).sum() >= 100)
    return {"mic": max(changed), "ghost": max(ghosts), "redrawn": redrawn}


def caption_damage(before: list[np.ndarray], after: list[np.ndarray]) -> tuple[float, float]:
    """How much the captions change in the output: (mean, most) over frames of the mean of
    the largest channel difference over a frame's letters and their outline, within the
    mouth's reach."""
    per_frame = []
    for index, (a, b) in enumerate(zip(before, after, strict=False)):
        letters = np.full(a.shape, 128, np.uint8)
        caption(letters, index, len(before))
        near = (letters != 128).any(axis=2)
        near[:, : a.shape[1] // 3] = near[:, 2 * a.shape[1] // 3 :] = False
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2)
        per_frame.append(float(diff[near].mean()))
    return float(np.mean(per_frame)), float(np.max(per_frame))


def found(video: Path, top: int = 218) -> tuple[float, int]:
    """(share of the microphone's head marked, pixels marked beyond 6 px of it)."""
    from openlipsync.engine.pipeline import planned
    from openlipsync.engine.request import GenerateRequest
    from openlipsync.engine.run_state import RunState

    with planned(GenerateRequest(video, SPEECH, video.with_suffix(".x.mp4")), RunState()) as plan:
        renderer = plan.look.renderer
        size = (renderer.height, renderer.width)
        marked = renderer.occluders.warped(0, np.array([[1.0, 0, 0], [0, 1.0, 0]]), size)
    marked = np.zeros(size, bool) if marked is None else marked > 0.5
    mic = microphone(size, top)
    head = mic.copy()
    head[mic_centre(top)[1] + MIC_AXES[1] :] = False
    near = cv2.dilate(mic.astype(np.uint8), np.ones((13, 13), np.uint8)) > 0
    return float((marked & head).sum() / head.sum()), int((marked & ~near).sum())


def run(video: Path, out: Path, top: int, searched: bool = True) -> dict:
    """Generate `out` from `video` (with the still-occluder search or without) and measure it:
    damage(), and caption_damage() as "caption"."""
    from openlipsync.engine import generate, occluders
    from openlipsync.engine.request import GenerateRequest
    from openlipsync.media.video import VideoReader

    search = occluders.MIN_ENTRIES
    if not searched:
        occluders.MIN_ENTRIES = 1 << 30  # no shot has that many crops: nothing is found
    try:
        generate(GenerateRequest(video, SPEECH, out))
    finally:
        occluders.MIN_ENTRIES = search
    with VideoReader(video) as a, VideoReader(out) as b:
        before, after = list(a), list(b)
    return {**damage(before, after, top), "caption": caption_damage(before, after)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sways", default="0,4,8,12,20", help="px, comma-separated")
    parser.add_argument("--top", type=int, default=218, help="the microphone's top row")
    parser.add_argument("--keep", type=Path, help="keep the clips and outputs here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="occluders-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        print("sway  found  beside | with:    mic  ghost redrawn | without: mic  ghost redrawn")
        for sway in (float(s) for s in args.sways.split(",")):
            video = write_clip(folder / f"mic_{sway:g}.mp4", sway, True, top=args.top)
            share, beside = found(video, args.top)
            seen = run(video, folder / f"out_{sway:g}.mp4", args.top)
            blind = run(video, folder / f"blind_{sway:g}.mp4", args.top, searched=False)
            row = f"{sway:4g}  {share:5.2f}  {beside:6d}"
            for figures in (seen, blind):
                row += (
                    f" |       {figures['mic']:6.1f} {figures['ghost']:6d} {figures['redrawn']:7d}"
                )
            print(row)
        print("captions over the chin, no microphone: the most a frame's letters change")
        for sway in (float(s) for s in args.sways.split(",")):
            video = write_clip(folder / f"captions_{sway:g}.mp4", sway, False, captions=True)
            seen = run(video, folder / f"captions_out_{sway:g}.mp4", args.top)
            blind = run(video, folder / f"captions_blind_{sway:g}.mp4", args.top, searched=False)
            print(
                f"{sway:4g}  with {seen['caption'][0]:5.1f} (most {seen['caption'][1]:5.1f})"
                f"  without {blind['caption'][0]:5.1f} (most {blind['caption'][1]:5.1f})"
            )


if __name__ == "__main__":
    main()
