"""Who is who across cuts (engine/identity.py): what telling people apart costs, and whether
it gets them right.

Splices the five GRID speakers into an edited clip that cuts between them and back (shots of
`--shot` seconds, each a different part of the speaker's clip), runs the analysis pass on it
and prints the stretches found, the samples described, the identity stage's time (total and
per sample) against the whole analysis pass, and the grouping: each speaker must be one
person, no two speakers the same one. A clip of one shot is run first for the baseline: its
identity stage must cost nothing.

    python -m bench.identity [--shots 20] [--shot 1.5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from bench.engine import MEDIA

SPEAKERS = ("grid_bbaf2n", "grid_lbax4n", "grid_pwij3p", "grid_sbwe5n", "grid_swiz3n")
SIZE = (360, 288)
FPS = 25


def _clips() -> list[list[np.ndarray]]:
    from openlipsync.media.video import VideoReader

    clips = []
    for name in SPEAKERS:
        with VideoReader(MEDIA / "video" / f"{name}.mpg") as reader:
            clips.append([cv2.resize(f, SIZE, interpolation=cv2.INTER_AREA) for f in reader])
    return clips


def edited(path: Path, shots: int, shot_seconds: float) -> list[int]:
    """An edited clip of `shots` shots cycling through the speakers in a shuffled order; returns
    the speaker of each frame."""
    from tests.media_helpers import write_frames

    clips = _clips()
    length = max(8, round(shot_seconds * FPS))
    rng = np.random.default_rng(0)
    order = [int(i) for i in rng.integers(0, len(SPEAKERS), shots)]
    for k in range(1, shots):  # a cut always changes the speaker
        if order[k] == order[k - 1]:
            order[k] = (order[k] + 1) % len(SPEAKERS)
    frames, speaker = [], []
    for k, who in enumerate(order):
        clip = clips[who]
        start = (k * 7) % max(1, len(clip) - length)
        part = [clip[(start + i) % len(clip)] for i in range(length)]
        frames += part
        speaker += [who] * length
    write_frames(path, frames)
    return speaker


def analysed(path: Path) -> tuple[object, dict[str, float], float]:
    from openlipsync.engine.analysis import analyse
    from openlipsync.engine.render import MouthRenderer
    from openlipsync.engine.run_state import RunState
    from openlipsync.media.probe import probe

    info = probe(path).video
    state = RunState()
    began = time.perf_counter()
    result = analyse(path, info, MouthRenderer(info.width, info.height, info.fps), state)
    return result, state.stage_seconds, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=20)
    parser.add_argument("--shot", type=float, default=1.5, help="seconds per shot")
    args = parser.parse_args()
    import openlipsync.engine.identity as identity

    identity._dlib_models()  # loaded once per worker process (0.3 s): outside the clocks
    described = [0]
    describe = identity.describe

    def counted(face: np.ndarray) -> np.ndarray | None:
        described[0] += 1
        return describe(face)

    identity.describe = counted
    with tempfile.TemporaryDirectory() as tmp:
        single = Path(tmp) / "single.mp4"
        edited(single, 1, args.shots * args.shot)
        _, stages, seconds = analysed(single)
        print(
            f"one shot, {args.shots * args.shot:.0f} s: analysis {seconds:.2f} s,"
            f" identity {stages.get('identity', 0.0) * 1000:.1f} ms"
        )
        clip = Path(tmp) / "edited.mp4"
        speaker = np.array(edited(clip, args.shots, args.shot))
        result, stages, seconds = analysed(clip)
        people = result.people
        spent = stages.get("identity", 0.0)
        samples = described[0]
        print(
            f"{args.shots} shots of {args.shot} s, {len(result.cuts) + 1} found:"
            f" analysis {seconds:.2f} s, identity {spent:.2f} s"
            f" ({100 * spent / seconds:.1f} % of the analysis;"
            f" {1000 * spent / max(samples, 1):.0f} ms per sample, {samples} samples)"
        )
        if people is None:
            print("grouping: none (one stretch)")
            return
        of_speaker = [sorted(set(people[speaker == s].tolist())) for s in range(len(SPEAKERS))]
        split = sum(len(groups) > 1 for groups in of_speaker)
        owners = [g for groups in of_speaker for g in groups]
        merged = len(owners) - len(set(owners))
        print(f"people per speaker: {of_speaker}")
        print(f"speakers split into several people: {split}; people holding two speakers: {merged}")


if __name__ == "__main__":
    main()
