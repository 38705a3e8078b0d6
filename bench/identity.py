"""Who is who across cuts (engine/identity.py): what telling people apart costs, and whether
it gets them right.

Splices the five GRID speakers into an edited clip that cuts between them and back (shots of
`--shot` seconds, each a different part of the speaker's clip), runs the analysis pass on it
and prints the stretches found, the samples described, the identity stage's time (total and
per sample) against the whole analysis pass, and the grouping: each speaker must be one
person, no two speakers the same one. A clip of one shot is run first for the baseline: its
identity stage must cost nothing.

With `--truth`, the truth protocol of bench/quality.py on an interview: two GRID speakers'
first halves spliced (a cut between them), driven by their second halves' audio, each in turn;
each person's output outer-lip opening (dlib) is correlated with what their real mouth did,
beside the same clip's figure when it is lip-synced alone.

With `--turns`, speaking turns in one shot (engine/speaker.py `_turns`, auto_detect): every
ordered pair of GRID speakers side by side, each speaking in turn while the other is still.

    python -m bench.identity [--shots 20] [--shot 1.5] [--truth] [--turns]
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
    parser.add_argument("--truth", action="store_true", help="the interview truth protocol")
    parser.add_argument("--turns", action="store_true", help="two-shot speaking turns")
    args = parser.parse_args()
    if args.truth:
        interview_truth()
        return
    if args.turns:
        two_shot_turns()
        return
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


def two_shot_turns() -> None:
    """auto_detect on two-shots of every ordered pair of GRID speakers: the left one speaks
    his 3 s while the right one is still, then they swap (one shot, the source's sound is
    theirs). Per pair: the frames of each one's words (0.5-2.5 s of his clip) given to him,
    and where the choice switches (the true turn: frame 75)."""
    from openlipsync.engine.speaker import MultiFaceTracker, choose_face, loudness_per_frame
    from openlipsync.media.audio import load_audio

    clips = _clips()
    sounds = [
        load_audio(MEDIA / "video" / f"{name}.mpg", 16_000).samples[: 3 * 16_000]
        for name in SPEAKERS
    ]
    width, words = SIZE[0], np.r_[12:62, 87:137]
    right_of = np.r_[np.zeros(75, bool), np.ones(75, bool)]
    scores, switches = [], []
    began = time.perf_counter()
    for a in range(len(SPEAKERS)):
        for b in range(len(SPEAKERS)):
            if a == b:
                continue
            frames = [np.hstack([f, clips[b][0]]) for f in clips[a][:75]]
            frames += [np.hstack([clips[a][74], f]) for f in clips[b][:75]]
            with MultiFaceTracker(max_faces=3) as tracker:
                for frame in frames:
                    tracker.push(frame)
                track = tracker.finish()
            sound = np.concatenate([sounds[a], sounds[b]])
            loudness = loudness_per_frame(sound, 16_000, FPS, len(frames))
            choice = choose_face({"auto_detect": True}, track, FPS, source_loudness=loudness)
            right = (choice.boxes[:, 0] + choice.boxes[:, 2]) / 2 > width
            scores.append(float(np.mean(right[words] == right_of[words])))
            changes = np.flatnonzero(np.diff(right.astype(int))) + 1
            switches.append(changes.tolist())
            print(
                f"{SPEAKERS[a]} then {SPEAKERS[b]}: {scores[-1]:.2f} of their words"
                f" given to who speaks them, switches at {switches[-1]}"
            )
    print(
        f"{len(scores)} pairs: median {np.median(scores):.2f}, worst {min(scores):.2f};"
        f" one switch in {sum(len(s) == 1 for s in switches)}"
        f" ({time.perf_counter() - began:.1f} s)"
    )


# Clips whose real mouth dlib measures reliably (grid_swiz3n's moustache defeats it).
TRUTH_SPEAKERS = ("grid_bbaf2n", "grid_lbax4n", "grid_pwij3p", "grid_sbwe5n")


def interview_truth() -> None:
    """Per pair of speakers (A then B, a cut between): r and diff r of each person's output
    opening against their real second half, and the same clip alone (bench/quality.py)."""
    from bench import quality as q

    halves = {}
    for name in TRUTH_SPEAKERS:
        frames, fps = q.read_rgb_frames(MEDIA / "video" / f"{name}.mpg")
        audio = q.read_audio(MEDIA / "video" / f"{name}.mpg")
        half = len(frames) // 2
        split = round(half / fps * audio.sample_rate)
        halves[name] = (
            frames[:half],
            q.Clip(audio.samples[:split], audio.sample_rate),
            q.Clip(audio.samples[split:], audio.sample_rate),
            q.outer_lip_opening(q.measure_frames(frames[half:])),
            fps,
        )
    print("interview truth: A's and B's first halves cut together, their second halves drive")
    print(f"{'pair':28} {'A r':>6} {'A dr':>6} {'B r':>6} {'B dr':>6}")
    alone, pairs = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in TRUTH_SPEAKERS:
            alone[name] = _truth_run(work, [name], halves)[0]
        for i, a in enumerate(TRUTH_SPEAKERS):
            b = TRUTH_SPEAKERS[(i + 1) % len(TRUTH_SPEAKERS)]
            rows = _truth_run(work, [a, b], halves)
            pairs.append(rows)
            print(f"{a + ' | ' + b:28} " + " ".join(f"{v:6.3f}" for row in rows for v in row))
    for k, label in ((0, "r"), (1, "diff r")):
        together = np.median([row[k] for rows in pairs for row in rows])
        solo = np.median([alone[name][k] for name in TRUTH_SPEAKERS])
        print(f"median {label}: in the interview {together:.3f}, alone {solo:.3f}")


def _truth_run(work: Path, names: list[str], halves: dict) -> list[tuple[float, float]]:
    """One generation of the named speakers' first halves in turn, driven by their second
    halves' audio; (r, diff r) per speaker."""
    from bench import quality as q

    fps = halves[names[0]][4]
    frames = [f for name in names for f in halves[name][0]]
    first = np.concatenate([halves[name][1].samples for name in names])
    driving = np.concatenate([halves[name][2].samples for name in names])
    rate = halves[names[0]][1].sample_rate
    tag = "_".join(names)
    video = q.write_video(work / f"{tag}.mp4", frames, fps, q.Clip(first, rate))
    audio = q.write_wav(work / f"{tag}.wav", q.Clip(driving, rate))
    shown, _ = q.read_rgb_frames(q.run_engine(video, audio, work / f"{tag}_out.mp4"))
    output = q.outer_lip_opening(q.measure_frames(shown))
    rows, start = [], 0
    for name in names:
        real = halves[name][3]
        count = min(len(real), len(output) - start)
        part = output[start : start + count]
        truth = real[:count]
        rows.append((q.pearson(part, truth), q.pearson(np.diff(part), np.diff(truth))))
        start += len(halves[name][0])
    return rows


if __name__ == "__main__":
    main()
