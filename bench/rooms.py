"""Rooms bench: the mouth plan for a voice recorded in a room, or over noise, against the same
voice dry, with the room's tail taken out (engine/reverb.py) and without, in one process.

The rooms are simulated: a direct path plus exponentially decaying noise (seeded) with a given
RT60 and direct-to-reverberant ratio, convolved with real speech from ../shared/media; the noise
is white at a given SNR. For each driving sound and condition it prints, with the tail taken
out / left in:
- r, dr: Pearson r of the mouth opening (and of its frame-to-frame change) against the dry
  take's plan;
- pause: the mean opening where the dry take is silent (% of the typical range);
- closed: the share of the dry take's closed-mouth frames still closed.
Then the truth protocol of bench/quality.py, plan only, with the second half's audio in a room:
each GRID clip's first half teaches the person, and the plan for the second half is correlated
with what the real mouth did (median r / diff r over the 5 clips).

    .venv/bin/python -m bench.rooms [--skip-truth]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache, partial
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.quality import MEDIA  # noqa: E402

RATE = 16000
FPS = 25.0
TRUTH_SEEDS = 5  # rooms per RT60 in the truth protocol: one 1.5 s half reads a room's luck
SPEECH = ("arctic_a0009.wav", "librivox_austen_0870.wav", "librivox_austen_0920.wav")
CONDITIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "room 0.3 s": lambda s: in_room(s, 0.3),
    "room 0.6 s": lambda s: in_room(s, 0.6),
    "room 1.0 s, -4 dB": lambda s: in_room(s, 1.0, -4.0),
    "room 0.6 s, +8 dB": lambda s: in_room(s, 0.6, 8.0),
    "shoebox 0.6 s, 1 m": lambda s: in_shoebox(s, 0.6, 1.0),
    "shoebox 0.6 s, 3 m": lambda s: in_shoebox(s, 0.6, 3.0),
    "noise 25 dB": lambda s: with_noise(s, 25.0),
    "noise 15 dB": lambda s: with_noise(s, 15.0),
    "room 0.6 s, noise 20 dB": lambda s: with_noise(in_room(s, 0.6), 20.0),
}


def in_room(
    samples: np.ndarray,
    rt60: float,
    direct_to_reverb_db: float = 0.0,
    rate: int = RATE,
    seed: int = 7,
) -> np.ndarray:
    """`samples` as heard in a room whose tail falls 60 dB in `rt60` seconds, its energy
    `direct_to_reverb_db` under the direct sound's; as loud at its peak as the dry take.
    `seed` draws the tail (rooms of one RT60 differ in where their reflections fall)."""
    rng = np.random.default_rng(seed)
    times = np.arange(int(1.2 * rt60 * rate)) / rate
    tail = rng.standard_normal(times.size) * 10.0 ** (-3.0 * times / rt60)
    tail[: int(0.005 * rate)] = 0.0  # the first reflections arrive after 5 ms
    response = tail / np.sqrt(np.sum(tail**2)) * 10.0 ** (-direct_to_reverb_db / 20.0)
    response[0] += 1.0
    wet = fftconvolve(samples, response)[: samples.size]
    return (wet / max(np.abs(wet).max(), 1e-9) * np.abs(samples).max()).astype(np.float32)


def in_shoebox(samples: np.ndarray, rt60: float, distance: float, rate: int = RATE) -> np.ndarray:
    """`samples` as a microphone `distance` m from the talker hears them in a 5 x 4 x 3 m
    room whose walls absorb evenly for `rt60` by Sabine's formula (the model's own tail
    measures longer: 0.85 s for 0.6). Unlike in_room's noise tail, its echoes are discrete
    and the early ones strong."""
    wet = fftconvolve(samples, _shoebox_response(rt60, distance, rate))[: samples.size]
    return (wet / max(np.abs(wet).max(), 1e-9) * np.abs(samples).max()).astype(np.float32)


@cache
def _shoebox_response(rt60: float, distance: float, rate: int) -> np.ndarray:
    """The image-source model (Allen and Berkley 1979): every reflection arriving within
    1.2 rt60, each at its own delay, weakened by its path and the walls it met."""
    room = np.array([5.0, 4.0, 3.0])
    talker = np.array([1.7, 1.6, 1.5])
    mic = talker + np.array([distance, 0.4, -0.3]) * distance / np.hypot(distance, 0.5)
    volume, surface = room.prod(), 2 * (room[0] * room[1] + room[1] * room[2] + room[0] * room[2])
    reflection = np.sqrt(1.0 - min(0.161 * volume / (surface * rt60), 0.99))
    length = int(1.2 * rt60 * rate)
    reach = int(np.ceil(1.2 * rt60 * 343.0 / room.min())) + 1  # images per axis each way
    orders = np.arange(-reach, reach + 1)
    cells = np.stack(np.meshgrid(orders, orders, orders, indexing="ij"), -1).reshape(-1, 3)
    response = np.zeros(length)
    for mirrored in np.ndindex(2, 2, 2):
        side = np.asarray(mirrored)
        images = 2 * cells * room + np.where(side, -talker, talker)
        distances = np.linalg.norm(images - mic, axis=1)
        delays = np.round(distances / 343.0 * rate).astype(int)
        near = delays < length
        walls = np.abs(2 * cells[near] - side).sum(axis=1)
        np.add.at(response, delays[near], reflection**walls / distances[near])
    return response


def with_noise(samples: np.ndarray, snr_db: float) -> np.ndarray:
    """`samples` with white noise `snr_db` under their mean power."""
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    noise = np.random.default_rng(3).normal(0.0, rms * 10.0 ** (-snr_db / 20.0), samples.size)
    return (samples + noise).astype(np.float32)


@contextmanager
def rooms_left_in() -> Iterator[None]:
    """The analysis as it was before engine/reverb.py: the tail left in the spectra."""
    from openlipsync.engine import reverb

    call = reverb.ChunkedSuppression.__call__
    reverb.ChunkedSuppression.__call__ = lambda self, heard, power, freqs: power  # type: ignore[method-assign]
    try:
        yield
    finally:
        reverb.ChunkedSuppression.__call__ = call  # type: ignore[method-assign]


def both(plan: Callable[[], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """`plan()` with the tail taken out, then with it left in."""
    taken = plan()
    with rooms_left_in():
        return taken, plan()


def speech_rows() -> None:
    from openlipsync.engine.audio_features import extract
    from openlipsync.engine.motion import TYPICAL_RANGE, PersonModel, plan_mouth
    from openlipsync.media.audio import AudioClip, load_audio

    person = PersonModel(np.array([0.01, 0.9, 0.6], np.float32), TYPICAL_RANGE.copy())
    closed_below = person.neutral[0] + 0.1 * person.span[0]
    print(f"{'speech':26s} {'condition':24s} r taken/left   dr taken/left   pause %   closed")
    for name in SPEECH:
        dry = load_audio(MEDIA / "speech" / name, RATE).samples
        count = int(dry.size / RATE * FPS)
        reference = plan_mouth(AudioClip(dry, RATE), FPS, count, person)[:, 0]
        pauses = extract(AudioClip(dry, RATE), FPS, count).speech < 0.2
        closed = reference < closed_below
        for condition, make in CONDITIONS.items():
            sound = AudioClip(make(dry), RATE)
            plans = both(lambda s=sound, n=count: plan_mouth(s, FPS, n, person)[:, 0])
            r = [np.corrcoef(reference, p)[0, 1] for p in plans]
            dr = [np.corrcoef(np.diff(reference), np.diff(p))[0, 1] for p in plans]
            pause = [(p[pauses].mean() - person.neutral[0]) / person.span[0] * 100 for p in plans]
            kept = [np.mean(p[closed] < closed_below + 0.1 * person.span[0]) for p in plans]
            print(
                f"{name[:26]:26s} {condition:24s} {r[0]:.3f}/{r[1]:.3f}    {dr[0]:.3f}/{dr[1]:.3f}"
                f"    {pause[0]:4.1f}/{pause[1]:4.1f} {kept[0]:.2f}/{kept[1]:.2f}",
                flush=True,
            )


def truth_rows() -> None:
    from bench.quality import (
        Clip,
        measure_frames,
        measure_mouth_shapes,
        outer_lip_opening,
        pearson,
        read_audio,
        read_rgb_frames,
    )

    rooms = {"dry": (0.0, 0.0), "0.4 s": (0.4, 0.0), "0.7 s": (0.7, 0.0), "1.0 s, -4": (1.0, -4.0)}
    scores: dict[str, list[tuple[float, ...]]] = {room: [] for room in rooms}
    for source in sorted((MEDIA / "video").glob("grid_*.mpg")):
        frames, fps = read_rgb_frames(source)
        audio = read_audio(source)
        half = len(frames) // 2
        cut = round(half / fps * audio.sample_rate)
        real = outer_lip_opening(measure_frames(frames[half:]))
        own = Clip(audio.samples[:cut], audio.sample_rate)
        shapes = measure_mouth_shapes(frames[:half])
        for room, (rt60, ratio) in rooms.items():
            for seed in range(TRUTH_SEEDS if rt60 else 1):
                drive = audio.samples[cut:]
                if rt60:
                    drive = in_room(drive, rt60, ratio, audio.sample_rate, seed)
                plans = both(
                    partial(
                        _truth_plan, own, shapes, fps, Clip(drive, audio.sample_rate), real.size
                    )
                )
                scores[room].append(
                    tuple(pearson(p, real) for p in plans)
                    + tuple(pearson(np.diff(p), np.diff(real)) for p in plans)
                )
    print(
        f"\ntruth, plan only (median of the GRID clips x {TRUTH_SEEDS} rooms each):"
        " r taken/left, diff r taken/left"
    )
    for room, rows in scores.items():
        r_in, r_out, d_in, d_out = np.median(np.array(rows), axis=0)
        print(f"  {room:10s} {r_in:.3f}/{r_out:.3f}   {d_in:.3f}/{d_out:.3f}")


def _truth_plan(own, shapes: np.ndarray, fps: float, driving, count: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The person learnt from `own` sound and `shapes`, planned for `driving`."""
    from openlipsync.engine.motion import fit_person, plan_mouth

    person = fit_person(own, shapes, fps)
    return plan_mouth(driving, fps, count, person)[:, 0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-truth", action="store_true")
    args = parser.parse_args(argv)
    speech_rows()
    if not args.skip_truth:
        truth_rows()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
