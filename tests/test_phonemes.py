"""Phone timings -> per-frame mouth targets: closures, openness order, smoothness, shapes."""

from __future__ import annotations

import numpy as np
import pytest

from bench.alignment import read_lab
from openlipsync.engine.phonemes import LEAD_SECONDS, VISEMES, viseme_targets
from openlipsync.tts.arpabet import VOWELS
from openlipsync.tts.base import PhonemeTiming
from tests.conftest import media_path

NEUTRAL = np.array([0.02, 0.95, 0.85])
SCALE = np.array([0.30, 0.12, 0.08])


def _timeline(*phones: tuple[str, float]) -> list[PhonemeTiming]:
    out, now = [], 0.0
    for label, duration in phones:
        out.append(PhonemeTiming(label, now, now + duration))
        now += duration
    return out


def _frame_labels(phones: list[PhonemeTiming], fps: float, count: int) -> list[str | None]:
    times = (np.arange(count) + 0.5) / fps + LEAD_SECONDS
    return [next((p.phoneme for p in phones if p.start <= t < p.end), None) for t in times]


# "am a pea, feed Bob two moo" with natural durations and one very short /p/
SENTENCE = _timeline(
    ("sil", 0.25),
    ("ae", 0.14),
    ("m", 0.09),
    ("ah", 0.08),
    ("p", 0.012),
    ("iy", 0.14),
    ("sil", 0.12),
    ("f", 0.1),
    ("iy", 0.12),
    ("d", 0.06),
    ("b", 0.07),
    ("aa", 0.16),
    ("b", 0.08),
    ("t", 0.07),
    ("uw", 0.18),
    ("m", 0.1),
    ("uw", 0.2),
    ("sil", 0.3),
)
DURATION = SENTENCE[-1].end


@pytest.mark.parametrize("fps", [23.976, 25.0, 30.0, 29.97, 60.0])
def test_exact_shape_and_dtype(fps: float) -> None:
    count = int(round(DURATION * fps))
    out = viseme_targets(SENTENCE, fps, count, NEUTRAL, SCALE)
    assert out.shape == (count, 3) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    longer = viseme_targets(SENTENCE, fps, count + 40, NEUTRAL, SCALE)  # video outlasts speech
    assert longer.shape == (count + 40, 3)
    assert np.allclose(longer[-5:], NEUTRAL.astype(np.float32), atol=1e-4)
    assert viseme_targets(SENTENCE, fps, 0, NEUTRAL, SCALE).shape == (0, 3)


@pytest.mark.parametrize("fps", [23.976, 25.0, 30.0])
def test_bilabials_close_the_lips_exactly(fps: float) -> None:
    count = int(round(DURATION * fps))
    out = viseme_targets(SENTENCE, fps, count, NEUTRAL, SCALE)
    labels = _frame_labels(SENTENCE, fps, count)
    closed = np.float32(NEUTRAL[0])
    for i, label in enumerate(labels):
        if label in ("p", "b", "m"):
            assert out[i, 0] == closed, (i, label)
    # every bilabial shows a closed frame, even the 12 ms /p/ that no frame centre falls into
    times = (np.arange(count) + 0.5) / fps + LEAD_SECONDS
    for p in SENTENCE:
        if p.phoneme in ("p", "b", "m"):
            nearest = int(np.argmin(np.abs(times - (p.start + p.end) / 2)))
            assert out[nearest, 0] == closed, p


def test_open_vowels_open_more_than_closed_ones_and_rounding_narrows() -> None:
    fps = 100.0  # dense sampling to read each phone's plateau
    phones = _timeline(
        ("sil", 0.3),
        ("aa", 0.25),
        ("sil", 0.3),
        ("iy", 0.25),
        ("sil", 0.3),
        ("uw", 0.25),
        ("sil", 0.3),
        ("ae", 0.25),
        ("sil", 0.3),
        ("ah", 0.25),
        ("sil", 0.3),
        ("f", 0.25),
        ("sil", 0.3),
    )
    count = int(phones[-1].end * fps)
    out = viseme_targets(phones, fps, count, NEUTRAL, SCALE)
    times = (np.arange(count) + 0.5) / fps + LEAD_SECONDS

    def peak(p: PhonemeTiming, column: int, fn=np.max) -> float:
        inside = (times >= p.start) & (times < p.end)
        return float(fn(out[inside, column]))

    aa, iy, uw, ae, ah, f = (peak(phones[k], 0) for k in (1, 3, 5, 7, 9, 11))
    assert aa > ae > ah > iy > uw and aa > 2 * iy
    jaw = {k: peak(phones[k], 1) for k in (1, 3, 5)}
    assert jaw[1] > jaw[3] > NEUTRAL[1] and jaw[1] > jaw[5]
    assert peak(phones[5], 2, np.min) < NEUTRAL[2] - 0.03 < NEUTRAL[2] + 0.02 < peak(phones[3], 2)
    # lower lip to teeth: a sliver of opening, never the vowel-like gap
    assert NEUTRAL[0] < f <= NEUTRAL[0] + 1.5 * 0.12 * SCALE[0] + 1e-6
    silence = out[times < 0.1]  # 200 ms before the first vowel
    assert np.allclose(silence, NEUTRAL, atol=0.02 * SCALE.max())


def test_coarticulation_rounds_consonants_before_uw() -> None:
    """Anticipatory rounding: the /s/ of "soo" is narrower than the /s/ of "see"."""
    fps = 100.0
    soo = _timeline(("sil", 0.3), ("s", 0.12), ("uw", 0.25), ("sil", 0.3))
    see = _timeline(("sil", 0.3), ("s", 0.12), ("iy", 0.25), ("sil", 0.3))
    at_s = int((0.36 - LEAD_SECONDS) * fps)
    width_soo = viseme_targets(soo, fps, 100, NEUTRAL, SCALE)[at_s, 2]
    width_see = viseme_targets(see, fps, 100, NEUTRAL, SCALE)[at_s, 2]
    assert width_soo < NEUTRAL[2] < width_see


def test_no_jitter_even_for_pathological_timings() -> None:
    """Per-frame change stays below what a real mouth does (~ one full range in 70 ms),
    for natural speech and for random phones as short as 5 ms."""
    rng = np.random.default_rng(7)
    labels = sorted(VISEMES) + ["ay", "ow", "ey"]
    random_phones = _timeline(
        *[
            (labels[i], float(d))
            for i, d in zip(
                rng.integers(0, len(labels), 400), rng.uniform(0.005, 0.2, 400), strict=True
            )
        ]
    )
    for phones in (SENTENCE, random_phones):
        for fps in (23.976, 30.0):
            count = int(phones[-1].end * fps)
            out = viseme_targets(phones, fps, count, NEUTRAL, SCALE, temperature=1.0)
            gain = 1.5
            step = np.abs(np.diff(out, axis=0)) / (gain * SCALE)
            assert step.max() <= 1.0 / (0.07 * fps) + 1e-3  # fraction of range per frame
            flips = np.sum(np.diff(np.sign(np.diff(out[:, 0]))) != 0) / max(count, 1)
            assert flips < 0.5  # no frame-to-frame zigzag


def test_temperature_scales_expressiveness() -> None:
    count = int(DURATION * 25)
    calm = viseme_targets(SENTENCE, 25, count, NEUTRAL, SCALE, temperature=0.0)
    lively = viseme_targets(SENTENCE, 25, count, NEUTRAL, SCALE, temperature=1.0)
    assert np.abs(lively - NEUTRAL).max() == pytest.approx(
        3 * np.abs(calm - NEUTRAL).max(), rel=1e-4
    )
    default = viseme_targets(SENTENCE, 25, count, NEUTRAL, SCALE)
    for junk in (float("nan"), None, "hot"):
        weird = viseme_targets(SENTENCE, 25, count, NEUTRAL, SCALE, temperature=junk)
        assert np.array_equal(weird, default)
    numpy_args = viseme_targets(SENTENCE, np.float32(25), np.int64(count), NEUTRAL, SCALE)
    assert np.array_equal(numpy_args, default)


def test_hand_labelled_arctic_sentence() -> None:
    """Real phone boundaries: every frame inside /p b/ of "sharply" and "table" is closed and
    the open vowels of "sharply" (aa) outdo the close ones of "he" (iy)."""
    phones = read_lab(media_path("speech/arctic_a0009_phone.lab"))
    fps = 29.97
    count = int(3.095 * fps)
    out = viseme_targets(phones, fps, count, NEUTRAL, SCALE)
    labels = _frame_labels(phones, fps, count)
    assert all(
        out[i, 0] == np.float32(NEUTRAL[0]) for i, lab in enumerate(labels) if lab in ("p", "b")
    )
    opening = {v: [out[i, 0] for i, lab in enumerate(labels) if lab == v] for v in VOWELS}
    assert max(opening["aa"]) > max(opening["iy"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fps": 0}, "fps"),
        ({"fps": "25"}, "fps"),
        ({"fps": None}, "fps"),
        ({"fps": True}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"fps": -25}, "fps"),
        ({"frame_count": -1}, "frame_count"),
        ({"frame_count": 2.5}, "frame_count"),
        ({"frame_count": None}, "frame_count"),
        ({"frame_count": "50"}, "frame_count"),
        ({"frame_count": 10**12}, "frame_count"),
        ({"neutral": np.zeros(2)}, "neutral"),
        ({"scale": np.array([1, np.nan, 1])}, "scale"),
        ({"phonemes": [PhonemeTiming("aa", 0.5, 0.1)]}, "timing"),
        ({"phonemes": [PhonemeTiming("aa", float("nan"), 1.0)]}, "timing"),
        ({"phonemes": [PhonemeTiming("ɑ", 0.0, 1.0)]}, "ARPAbet"),
    ],
)
def test_invalid_arguments(kwargs: dict, message: str) -> None:
    args = {
        "phonemes": SENTENCE,
        "fps": 25.0,
        "frame_count": 50,
        "neutral": NEUTRAL,
        "scale": SCALE,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        viseme_targets(**args)


def test_empty_and_unordered_phones() -> None:
    assert np.allclose(viseme_targets([], 25, 10, NEUTRAL, SCALE), NEUTRAL)
    shuffled = list(reversed(SENTENCE))
    assert np.array_equal(
        viseme_targets(shuffled, 25, 60, NEUTRAL, SCALE),
        viseme_targets(SENTENCE, 25, 60, NEUTRAL, SCALE),
    )
    upper = [
        PhonemeTiming(p.phoneme.upper() + ("1" if p.phoneme != "sil" else ""), p.start, p.end)
        for p in SENTENCE
    ]  # pocketsphinx/CMUdict spelling
    assert np.array_equal(
        viseme_targets(upper, 25, 60, NEUTRAL, SCALE),
        viseme_targets(SENTENCE, 25, 60, NEUTRAL, SCALE),
    )
