"""Phone timings -> mouth targets (open, jaw, width) per video frame, with coarticulation.

When the phones of the speech are known (Piper's own durations, or forced alignment of a
script) the mouth can be driven by what is said rather than by how the waveform looks: lips
that really close on "p b m", lower lip to teeth on "f v", rounding on "uw ow w".

Coarticulation follows Cohen & Massaro (1993): each phone has a target and a *dominance* per
shape column that is flat over the phone and decays exponentially outside it, faster after the
phone (carry-over) than before it (anticipation); each frame is the dominance-weighted mean of
nearby targets. Low-dominance phones (t, k, h) therefore borrow the shape of their neighbours,
and rounding of "uw" spreads into the consonants before it, as in real speech. The blend is
smooth by construction, so no filtering is applied afterwards; lip closure for bilabials and
lip-teeth contact for labiodentals are then enforced as hard caps with a bounded ramp, because
averaging alone would leave a short "m" between two vowels visibly open.

Targets are fractions of the person's range above their closed mouth, as in `motion.py`:
``shape = neutral + (0.5 + temperature) * fraction * scale``; width fractions are negative for
rounded (narrow) lips.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from openlipsync.tts.arpabet import normalize_phone
from openlipsync.tts.base import PhonemeTiming

LEAD_SECONDS = 0.0
"""Shift of the mouth against the phone labels. Lips do move before their sound, but the
dominance functions already anticipate; on GRID (5 clips, MediaPipe-measured mouths, bench/
alignment.py) any further lead lowered the correlation (best at 0 to -20 ms), so none is added."""
ANTICIPATION_SECONDS = 0.045  # dominance decay constant before a phone
CARRYOVER_SECONDS = 0.035  # and after it
REACH = 5.0  # dominance beyond REACH decay constants (< 1 %) is ignored
CLOSURE_RAMP_SECONDS = 0.07
"""Time for the lips to go from closed to a full-range opening; bounds the per-frame change the
closure caps can introduce (real lips take 70-100 ms)."""
MAX_FRAMES = 10_000_000


@dataclass(frozen=True)
class Viseme:
    """Target fraction per column and the dominance (resistance to neighbours) per column."""

    open: float
    jaw: float
    width: float
    dominance: tuple[float, float, float]
    open_cap: float | None = None  # hard ceiling on the opening fraction (lip contact)


def _v(o: float, j: float, w: float, d: float | tuple[float, float, float] = 1.0, cap=None):
    return Viseme(o, j, w, d if isinstance(d, tuple) else (d, d, d), cap)


# Fractions: open/jaw 0 = closed mouth, 1 = this person's full range; width -0.6 (rounded,
# protruded) .. +0.4 (spread). Dominance 1 is a vowel; consonants made by the lips dominate,
# those made inside the mouth yield to their neighbours.
VISEMES: dict[str, Viseme] = {
    "aa": _v(1.00, 1.00, 0.10),
    "ae": _v(0.85, 0.80, 0.30),
    "ah": _v(0.70, 0.65, 0.10),
    "ao": _v(0.75, 0.80, -0.35, (1.0, 1.0, 1.5)),
    "eh": _v(0.60, 0.55, 0.25),
    "er": _v(0.40, 0.40, -0.25, (1.0, 1.0, 1.3)),
    "ih": _v(0.40, 0.35, 0.25),
    "iy": _v(0.30, 0.25, 0.40, (1.0, 1.0, 1.3)),
    "uh": _v(0.40, 0.40, -0.40, (1.0, 1.0, 1.5)),
    "uw": _v(0.25, 0.25, -0.60, (1.0, 1.0, 2.0)),
    "p": _v(0.0, 0.10, 0.0, (1.5, 1.2, 0.8), cap=0.0),
    "b": _v(0.0, 0.10, 0.0, (1.5, 1.2, 0.8), cap=0.0),
    "m": _v(0.0, 0.10, 0.0, (1.5, 1.2, 0.8), cap=0.0),
    "f": _v(0.08, 0.15, 0.05, (1.5, 1.2, 0.8), cap=0.12),
    "v": _v(0.08, 0.15, 0.05, (1.5, 1.2, 0.8), cap=0.12),
    "w": _v(0.10, 0.15, -0.60, (2.0, 1.0, 3.0)),
    "th": _v(0.20, 0.20, 0.10, (1.5, 1.0, 0.5)),
    "dh": _v(0.20, 0.20, 0.10, (1.5, 1.0, 0.5)),
    "s": _v(0.10, 0.10, 0.25, (2.0, 2.0, 0.4)),
    "z": _v(0.10, 0.10, 0.25, (2.0, 2.0, 0.4)),
    "sh": _v(0.20, 0.15, -0.35, (1.5, 1.5, 2.0)),
    "zh": _v(0.20, 0.15, -0.35, (1.5, 1.5, 2.0)),
    "ch": _v(0.20, 0.15, -0.35, (1.5, 1.5, 2.0)),
    "jh": _v(0.20, 0.15, -0.35, (1.5, 1.5, 2.0)),
    "r": _v(0.25, 0.25, -0.35, (0.8, 0.8, 1.5)),
    "l": _v(0.30, 0.30, 0.10, 0.4),
    "t": _v(0.20, 0.20, 0.10, 0.4),
    "d": _v(0.20, 0.20, 0.10, 0.4),
    "n": _v(0.20, 0.20, 0.10, 0.4),
    "k": _v(0.30, 0.30, 0.05, 0.4),
    "g": _v(0.30, 0.30, 0.05, 0.4),
    "ng": _v(0.30, 0.30, 0.05, 0.4),
    "y": _v(0.25, 0.20, 0.30, 0.5),
    "hh": _v(0.40, 0.40, 0.00, 0.1),
    "sil": _v(0.0, 0.0, 0.0, 1.0),
}
DIPHTHONGS: dict[str, tuple[str, str]] = {
    "ay": ("aa", "ih"),
    "aw": ("aa", "uh"),
    "ey": ("eh", "ih"),
    "ow": ("ao", "uw"),
    "oy": ("ao", "ih"),
}
"""Glides from the first vowel to the second; the first holds for `_GLIDE_SPLIT` of the time."""
_GLIDE_SPLIT = 0.55
_BACKGROUND = 1e-3  # dominance of the neutral mouth everywhere, for frames far from any phone


def viseme_targets(
    phonemes: Sequence[PhonemeTiming],
    fps: float,
    frame_count: int,
    neutral: np.ndarray,
    scale: np.ndarray,
    temperature: float = 0.5,
) -> np.ndarray:
    """Absolute (open, jaw, width) per frame, float32 (frame_count, 3).

    Frame i shows the mouth at (i + 0.5) / fps + `LEAD_SECONDS` of the phone timeline. Frames
    inside a bilabial have exactly the neutral opening (and at least one frame per bilabial
    does, however short); labiodentals open at most 12 % of the range. Raises ValueError on
    invalid arguments or labels that are not ARPAbet.
    """
    neutral, scale = _column("neutral", neutral), _column("scale", scale)
    count = _frame_count(frame_count, fps)
    fps = float(fps)
    if count == 0:
        return np.zeros((0, 3), np.float32)
    times = (np.arange(count) + 0.5) / fps + LEAD_SECONDS
    segments = _segments(phonemes)
    fractions = _blend(segments, times, fps)
    _apply_caps(fractions, segments, times, fps)
    gain = 0.5 + _unit(temperature, default=0.5)
    return (neutral + gain * fractions * scale).astype(np.float32)


def _unit(value: float, default: float) -> float:
    """temperature is expressiveness in [0, 1] (spec §2.3); junk means the default."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return float(np.clip(number, 0.0, 1.0)) if math.isfinite(number) else default


def _column(name: str, value: np.ndarray) -> np.ndarray:
    array = np.asarray(value, np.float64).reshape(-1)
    if array.shape != (3,) or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be 3 finite numbers (open, jaw, width)")
    return array


def _frame_count(frame_count: int, fps: float) -> int:
    numeric = isinstance(fps, int | float | np.number) and not isinstance(fps, bool)
    if not numeric or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    integral = isinstance(frame_count, int | np.integer) and not isinstance(frame_count, bool)
    if not integral or frame_count < 0:
        raise ValueError(f"frame_count must be a non-negative integer, got {frame_count!r}")
    if frame_count > MAX_FRAMES:
        raise ValueError(f"frame_count {frame_count} is above {MAX_FRAMES}")
    return int(frame_count)


@dataclass(frozen=True)
class _Segment:
    viseme: Viseme
    start: float
    end: float


def _segments(phonemes: Sequence[PhonemeTiming]) -> list[_Segment]:
    """Validated, time-ordered segments with diphthongs split into their two vowels."""
    out: list[_Segment] = []
    for p in sorted(phonemes, key=lambda p: (p.start, p.end)):
        if not (math.isfinite(p.start) and math.isfinite(p.end)) or p.end < p.start:
            raise ValueError(f"bad timing for {p.phoneme!r}: {p.start}..{p.end}")
        phone = normalize_phone(p.phoneme)
        if phone in DIPHTHONGS:
            first, second = DIPHTHONGS[phone]
            middle = p.start + _GLIDE_SPLIT * (p.end - p.start)
            out.append(_Segment(VISEMES[first], p.start, middle))
            out.append(_Segment(VISEMES[second], middle, p.end))
        else:
            out.append(_Segment(VISEMES[phone], p.start, p.end))
    return out


def _blend(segments: list[_Segment], times: np.ndarray, fps: float) -> np.ndarray:
    """Dominance-weighted mean of the targets at each frame time; (frames, 3) fractions."""
    numerator = np.zeros((times.size, 3))
    denominator = np.full((times.size, 3), _BACKGROUND)
    first_time, step = times[0], 1.0 / fps
    for seg in segments:
        lo = max(0, int(math.floor((seg.start - REACH * ANTICIPATION_SECONDS - first_time) * fps)))
        hi = min(
            times.size, int(math.ceil((seg.end + REACH * CARRYOVER_SECONDS - first_time) * fps)) + 1
        )
        if lo >= hi:
            continue
        t = first_time + step * np.arange(lo, hi)
        before = np.clip(seg.start - t, 0.0, None) / ANTICIPATION_SECONDS
        after = np.clip(t - seg.end, 0.0, None) / CARRYOVER_SECONDS
        weight = np.exp(-(before + after))[:, None] * np.asarray(seg.viseme.dominance)
        target = np.array([seg.viseme.open, seg.viseme.jaw, seg.viseme.width])
        numerator[lo:hi] += weight * target
        denominator[lo:hi] += weight
    return numerator / denominator


def _apply_caps(
    fractions: np.ndarray, segments: list[_Segment], times: np.ndarray, fps: float
) -> None:
    """Lip contact as a ceiling on the opening: `open_cap` inside the phone (stretched to the
    nearest frame so a 10 ms "p" still shows), rising by one full range per ramp outside it.
    The jaw is held to twice the cap plus 0.3 of its range: it cannot gape behind closed lips."""
    for seg in segments:
        cap = seg.viseme.open_cap
        if cap is None:
            continue
        start, end = seg.start, seg.end
        nearest = times[int(np.argmin(np.abs(times - (start + end) / 2)))]
        if start - 0.5 / fps <= nearest <= end + 0.5 / fps:
            start, end = min(start, nearest), max(end, nearest)
        reach = CLOSURE_RAMP_SECONDS * 1.5
        lo, hi = np.searchsorted(times, [start - reach, end + reach])
        if lo >= hi:
            continue
        t = times[lo:hi]
        distance = np.clip(start - t, 0.0, None) + np.clip(t - end, 0.0, None)
        ceiling = cap + distance / CLOSURE_RAMP_SECONDS
        fractions[lo:hi, 0] = np.minimum(fractions[lo:hi, 0], ceiling)
        fractions[lo:hi, 1] = np.minimum(fractions[lo:hi, 1], 2 * cap + 0.3 + ceiling)


BILABIALS = frozenset({"p", "b", "m"})


def closure_frames(phonemes: Sequence[PhonemeTiming], fps: float, frame_count: int) -> np.ndarray:
    """bool (frame_count,): frames whose centre falls in a bilabial (p, b, m) or a pause.

    Loudness cannot see a "b" inside a word; these frames must show closed lips whatever else
    drives the mouth.
    """
    count = _frame_count(frame_count, fps)
    times = (np.arange(count) + 0.5) / float(fps) + LEAD_SECONDS
    closed = np.zeros(count, bool)
    for phone in phonemes:
        if phone.phoneme in BILABIALS or phone.phoneme == "sil":
            closed |= (times >= phone.start) & (times < phone.end)
    return closed
