"""Language-independent acoustic cues of mouth shape, sampled once per video frame.

No transcript and no phone recogniser: the cues are the physical ones the mouth leaves in sound.
Loudness alone only says *that* someone speaks; the mouth's shape shows in the spectrum:
- voiced energy in the first-formant band (F1 rises as the jaw opens: "a" > "e" > "i"),
- the second-formant region (F2 falls as the lips round: "oo", "w"),
- frication (energy above 3 kHz with little voicing: "s", "f" are said through nearly closed lips),
- closures (a stop or nasal is a 30-120 ms dip of first-formant energy between louder sounds).
MFCCs carry the rest of the spectral shape for the per-person learned mapping.
All of them are read from spectra without the recording's steady noise and its room's tail,
both of which fill the pauses and closures the mouth shuts on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.fft import dct
from scipy.ndimage import maximum_filter1d
from scipy.signal import butter, iirnotch, resample_poly, sosfilt, tf2sos

from openlipsync.engine.errors import AudioMissing
from openlipsync.engine.reverb import ChunkedSuppression
from openlipsync.engine.voice_activity import WINDOW as VAD_WINDOW
from openlipsync.engine.voice_activity import speech_probability
from openlipsync.media.mapped import blocks, release

RATE = 16000
HOP = 160  # 10 ms analysis hop: fine enough to place a stop burst inside one video frame
WINDOW = 400  # 25 ms
N_MELS = 26
N_MFCC = 13
CHUNK_HOPS = 2000  # hops analysed at once (20 s of audio)
SILENCE_DBFS = -55.0  # below this a hop is silent in a recording of ordinary level...
SILENCE_UNDER_LOUD = 40.0  # ...or this far under a quiet recording's loud hops (dB)
DIGITAL_SILENCE = -90.0  # dBFS: dither and rounding, never sound
SPEECH_SWING = 20.0  # dB between a clip's loud and quiet hops before its level is trusted
LOW_CUT = 20.0  # Hz: under every voice's pitch, above a DC offset's drift
MAINS = (50.0, 60.0)  # Hz: the hum a recording can pick up from the power line
HUM_OVER = 10.0  # dB a mains line stands over its neighbours (1 Hz bins) to count as hum
HUM_HARMONICS = 5  # mains lines notched out: the fundamental and the next four
HUM_BLOCKS = 32  # one-second blocks, spread over the clip, that look for hum
HUM_WIDTH = 4.0  # Hz: each notch's width (a notch rings for about 1 / (pi x width) s)
WARM_UP = 16000  # samples (1 s) the filters run before a chunk: their ringing is gone
NOISE_PERCENTILE = 10  # see _denoised
QUIET_SPEECH = -30.0  # dB re speech: where the gate starts to open on a voice
BED_FROM, BED_FULL = -30.0, -22.0  # dB re speech: see _bed. Measured floors: -34 to -35 on
# GRID and clean studio speech, -30 on the 1961 JFK recording, -22 on continuous LibriVox
# reading, -20 under white noise or a chord bed 26 dB under the speech.
VOICE_HOLD = 0.12  # s
NOISE_OVER = 1.5
NOISE_FLOOR = 0.01


class AudioLike(Protocol):
    """Anything with mono float samples and a rate (openlipsync.media.audio.AudioClip)."""

    samples: np.ndarray
    sample_rate: int


@dataclass
class AudioFeatures:
    """Per-video-frame cues; every array has one row per output frame."""

    level: np.ndarray  # loudness in dB relative to the clip's speech level (0 = loud speech)
    speech: np.ndarray  # 0..1 soft "someone is speaking" gate (voiced or loud enough)
    voicing: np.ndarray  # 0..1 periodicity of the signal
    f1_energy: np.ndarray  # dB relative to speech level, 300-1000 Hz (jaw / vowel openness)
    f1_centroid: np.ndarray  # Hz, power-weighted centre of 250-1100 Hz (F1 proxy)
    f2_centroid: np.ndarray  # Hz, power-weighted centre of 900-2800 Hz (F2 proxy, rounding)
    frication: np.ndarray  # dB, energy above 3 kHz minus energy below 1 kHz
    closure: np.ndarray  # 0..1 likelihood of a constriction (short F1-energy dip inside speech)
    mfcc: np.ndarray  # (frames, 13) cepstrum, for learned mappings


_HIGH_PASS = butter(4, LOW_CUT, "highpass", fs=RATE, output="sos")


def _cleaning(samples: np.ndarray) -> np.ndarray:
    """The filter (second-order sections) the analysis runs on this recording: the high-pass,
    and narrow notches on the mains lines when the recording hums."""
    mains = _mains_hum(samples)
    if mains is None:
        return _HIGH_PASS
    notches = [
        tf2sos(*iirnotch(mains * k, mains * k / HUM_WIDTH, fs=RATE))
        for k in range(1, HUM_HARMONICS + 1)
        if mains * k < RATE / 2
    ]
    return np.vstack([_HIGH_PASS, *notches])


def _mains_hum(samples: np.ndarray) -> float | None:
    """50 or 60 when a steady line at that frequency stands HUM_OVER dB over its neighbours
    in the clip's averaged spectrum (1 Hz bins; a voice's pitch wanders and spreads), else
    None. Mains hum at -30 dBFS took 42 % off every syllable: the gate's floor rose with it."""
    if len(samples) < RATE:
        return None
    starts = np.linspace(0, len(samples) - RATE, min(HUM_BLOCKS, len(samples) // RATE))
    window = np.hanning(RATE)
    power = np.zeros(RATE // 2 + 1)
    for start in starts.astype(int):
        block = np.asarray(samples[start : start + RATE], np.float64)
        power += np.abs(np.fft.rfft((block - block.mean()) * window)) ** 2
    for mains in MAINS:
        line = int(mains)
        around = np.r_[power[line - 10 : line - 2], power[line + 3 : line + 11]]
        if power[line - 1 : line + 2].max() > np.median(around) * 10 ** (HUM_OVER / 10) > 0:
            return mains
    return None


def mono16k(audio: AudioLike) -> np.ndarray:
    """Samples as float32 mono at 16 kHz; raises AudioMissing on empty input, and zeroes
    non-finite samples (a corrupt stretch is treated as silence, not as a crash)."""
    samples = np.asarray(audio.samples, dtype=np.float32)
    if samples.ndim > 1:
        samples = samples.mean(axis=-1 if samples.shape[-1] <= 8 else 0)
    if samples.size == 0 or int(audio.sample_rate) <= 0:
        raise AudioMissing("the audio contains no samples")
    if not _finite(samples):  # no copy of hours of clean audio
        samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    rate = int(audio.sample_rate)
    if rate != RATE:
        divisor = np.gcd(rate, RATE)
        samples = resample_poly(samples, RATE // divisor, rate // divisor).astype(np.float32)
    return samples


def _finite(samples: np.ndarray) -> bool:
    """Whether every sample is finite, read a chunk at a time (the samples may be a file:
    media/mapped.py)."""
    chunks = blocks(samples, CHUNK_HOPS * HOP)
    return all(np.isfinite(chunk.sum(dtype=np.float64)) for chunk in chunks)


def _mel_filters() -> tuple[np.ndarray, np.ndarray]:
    """Triangular mel filterbank over the rfft bins of one analysis window, and bin frequencies."""
    n_fft = 512
    freqs = np.fft.rfftfreq(n_fft, 1.0 / RATE)
    mel = np.linspace(_hz_to_mel(60.0), _hz_to_mel(7600.0), N_MELS + 2)
    edges = 700.0 * (10 ** (mel / 2595.0) - 1.0)
    filters = np.zeros((N_MELS, freqs.size), np.float32)
    for i in range(N_MELS):
        lo, mid, hi = edges[i : i + 3]
        rise = (freqs - lo) / (mid - lo)
        fall = (hi - freqs) / (hi - mid)
        filters[i] = np.clip(np.minimum(rise, fall), 0.0, None)
    return filters, freqs


def _hz_to_mel(hz: float) -> float:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _frames(samples: np.ndarray, first: int, count: int, cleaning: np.ndarray) -> np.ndarray:
    """`count` overlapping 25 ms windows from hop `first`, every 10 ms, each centred on its hop
    (hop k is time k*10 ms); silence before the start and after the end of `samples`. The
    samples go through `cleaning` first (see _cleaned)."""
    start = HOP * first - WINDOW // 2  # in samples; negative before the audio starts
    span = np.zeros(HOP * (count - 1) + WINDOW, np.float32)
    lo, hi = max(start, 0), min(start + len(span), len(samples))
    if hi > lo:
        span[lo - start : hi - start] = _cleaned(samples, lo, hi, cleaning)
    index = np.arange(WINDOW)[None, :] + HOP * np.arange(count)[:, None]
    return span[index]


def _cleaned(samples: np.ndarray, lo: int, hi: int, cleaning: np.ndarray) -> np.ndarray:
    """samples[lo:hi] without a DC offset (and mains hum, when `cleaning` notches it). Both sit
    under the speech as a steady level that held the gate shut: an offset of 0.1 planned a
    mouth opening a sixth of the clean take's. Filtered in the time domain from WARM_UP samples
    earlier, so chunks agree where they meet. (High-passing at 70 Hz instead cost the GRID
    truth protocol 0.03-0.04 of diff r: low voices keep their pitch there.)"""
    begin = max(lo - WARM_UP, 0)
    part = np.asarray(samples[begin:hi], np.float64)
    # Before the first sample the filters warm up on the clip's start turned back on itself
    # (odd reflection: an offset or a hum goes on as it was), not on silence: from silence an
    # offset is a step and a hum an onset, and their ringing opened the mouth in the first 0.3 s.
    lead = min(WARM_UP - (lo - begin), len(part) - 1)
    before = 2 * part[0] - part[lead:0:-1] if lead > 0 else part[:0]
    filtered = sosfilt(cleaning, np.concatenate([before, part]))
    return filtered[len(before) + lo - begin :].astype(np.float32)


def _voicing(frames: np.ndarray) -> np.ndarray:
    """Normalised autocorrelation peak in the 70-400 Hz pitch range."""
    centred = frames - frames.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(centred, n=1024, axis=1)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :WINDOW]
    energy = acf[:, :1] + 1e-9
    lo, hi = RATE // 400, RATE // 70
    # Correct the autocorrelation's triangular taper so long lags are not penalised.
    taper = WINDOW / (WINDOW - np.arange(lo, hi))
    return np.clip((acf[:, lo:hi] * taper).max(axis=1) / energy[:, 0], 0.0, 1.0)


def _band(power: np.ndarray, freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1)


def _centroid(power: np.ndarray, freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    sel = (freqs >= lo) & (freqs < hi)
    weights = power[:, sel] + 1e-12
    return (weights * freqs[sel]).sum(axis=1) / weights.sum(axis=1)


def _db(x: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(x, 1e-12))


def _closure(band_db: np.ndarray, hops_per_second: float) -> np.ndarray:
    """Constrictions: a dip of the first-formant band >= 6 dB under the speech on *both* sides
    within 120 ms. Measured on F1-band energy, not loudness, so voiced closures ("b", "m", whose
    voice bar sits below 300 Hz) count too. Pauses longer than that are silence, handled elsewhere.
    """
    span = max(1, int(0.12 * hops_per_second))
    padded = np.pad(band_db, span, mode="edge")
    window_max = np.lib.stride_tricks.sliding_window_view(padded, span).max(axis=1)
    n = band_db.size
    before = window_max[:n]  # max over the `span` hops before each hop
    after = window_max[span + 1 : span + 1 + n]  # max over the `span` hops after it
    depth = np.minimum(before, after) - band_db
    return np.clip((depth - 6.0) / 10.0, 0.0, 1.0).astype(np.float32)


def _per_video_frame(values: np.ndarray, times: np.ndarray, fps: float, count: int) -> np.ndarray:
    """Mean of the 10 ms hops inside each frame's interval [i/fps, (i+1)/fps)."""
    index = np.floor(times * fps).astype(int)
    keep = (index >= 0) & (index < count)
    shape = (count,) + values.shape[1:]
    sums = np.zeros(shape, np.float64)
    hits = np.zeros(count, np.float64)
    np.add.at(sums, index[keep], values[keep])
    np.add.at(hits, index[keep], 1.0)
    empty = hits == 0
    hits[empty] = 1.0
    result = sums / hits.reshape((-1,) + (1,) * (values.ndim - 1))
    if empty.any() and (~empty).any():
        # Frames shorter than a hop (fps > 100) borrow their nearest analysed neighbour.
        filled = np.flatnonzero(~empty)
        nearest = filled[
            np.clip(np.searchsorted(filled, np.flatnonzero(empty)), 0, filled.size - 1)
        ]
        result[empty] = result[nearest]
    return result.astype(np.float32)


def extract(audio: AudioLike, fps: float, frame_count: int, lead: float = 0.0) -> AudioFeatures:
    """Cues for frames 0..frame_count-1, frame i covering audio [i/fps + lead, (i+1)/fps + lead).

    `lead` > 0 looks ahead into the audio: the mouth starts moving before the sound it makes.
    Audio shorter than the frames is treated as silence after its end.
    """
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    samples = mono16k(audio)
    # Only the audio the frames cover matters (cut_off keeps the shorter of the two).
    samples = samples[: int((frame_count / fps + max(lead, 0.0) + 0.5) * RATE)]
    raw = _hop_analysis(samples)
    heard_db = raw["heard_db"]
    silence = _silence_level(heard_db)
    speech_level = _speech_level(heard_db, silence)
    level = raw["total_db"] - speech_level
    f1_db = raw["f1_db"] - speech_level
    audible = heard_db > silence
    speech = _gate(heard_db - speech_level, audible)
    bed = _bed(heard_db - speech_level, audible)
    if bed > 0:
        # Where the voice model hears a voice, the level (freed of the steady bed) need not
        # rise over that bed: a bed of noise or music 20 dB under the speech otherwise shrinks
        # every syllable to a third, while the bed alone must keep the mouth shut.
        voiced = np.clip((level - QUIET_SPEECH) / 15.0, 0.0, 1.0) * _voice(samples, level.size)
        speech = np.maximum(speech, voiced * audible * bed)
    hop_values = {
        "level": np.where(audible, level, -60.0),
        "speech": speech,
        "voicing": raw["voicing"] * audible,
        "f1_energy": np.where(audible, f1_db, -60.0),
        "f1_centroid": raw["f1_centroid"],
        "f2_centroid": raw["f2_centroid"],
        "frication": np.where(audible, raw["high_db"] - raw["low_db"], 0.0),
        "closure": _closure(np.maximum(np.where(audible, f1_db, -45.0), -45.0), RATE / HOP),
    }
    times = np.arange(heard_db.size) * HOP / RATE - lead
    per_frame = {k: _per_video_frame(v, times, fps, frame_count) for k, v in hop_values.items()}
    per_frame["mfcc"] = _per_video_frame(raw["mfcc"], times, fps, frame_count)
    after_end = np.arange(frame_count) / fps >= samples.size / RATE - lead
    if after_end.any():
        per_frame["level"][after_end] = -60.0
        per_frame["f1_energy"][after_end] = -60.0
        for key in ("speech", "voicing", "closure"):
            per_frame[key][after_end] = 0.0
    return AudioFeatures(**per_frame)


def _hop_analysis(samples: np.ndarray) -> dict[str, np.ndarray]:
    """Spectral measures of every 10 ms hop, computed in chunks so that a 30-minute input needs
    a few MB of working memory instead of gigabytes (and no padded copy of the audio), each
    chunk first cleaned as _cleaning chooses for these samples; its spectra are then freed
    of steady noise (_denoised) and of a room's reverberation (engine/reverb.py)."""
    cleaning = _cleaning(samples)
    hops = max(1, int(np.ceil(samples.size / HOP)))
    filters, freqs = _mel_filters()
    window = np.hanning(WINDOW).astype(np.float32)
    parts: dict[str, list[np.ndarray]] = {}
    without_room = ChunkedSuppression()
    for first in range(0, hops, CHUNK_HOPS):
        frames = _frames(samples, first, min(CHUNK_HOPS, hops - first), cleaning) * window
        heard = np.abs(np.fft.rfft(frames, n=512, axis=1)) ** 2 / WINDOW
        power = without_room(heard, _denoised(heard), freqs)
        log_mel = np.log(power @ filters.T + 1e-10)
        chunk = {
            "heard_db": _db(heard.sum(axis=1) / WINDOW * 4.0),
            "total_db": _db(power.sum(axis=1) / WINDOW * 4.0),
            "f1_db": _db(_band(power, freqs, 300, 1000) / WINDOW * 4.0),
            "low_db": _db(_band(power, freqs, 80, 1000)),
            "high_db": _db(_band(power, freqs, 3000, 8000)),
            "voicing": _voicing(frames),
            "f1_centroid": _centroid(power, freqs, 250, 1100),
            "f2_centroid": _centroid(power, freqs, 900, 2800),
            "mfcc": dct(log_mel, type=2, axis=1, norm="ortho")[:, :N_MFCC],
        }
        for key, values in chunk.items():
            parts.setdefault(key, []).append(values.astype(np.float32))
        release(samples)
    return {key: np.concatenate(values) for key, values in parts.items()}


def _denoised(power: np.ndarray) -> np.ndarray:
    """The power spectra less the recording's steady noise (hiss, hum, room tone, an even
    music bed): the mean spectrum of the chunk's quietest NOISE_PERCENTILE % of hops (its
    pauses), subtracted NOISE_OVER times over, floored at NOISE_FLOOR of the original so
    nothing goes negative. A percentile per frequency would not do: a noise bin's power
    scatters exponentially, and its tenth percentile is a tenth of its mean.

    Clean recordings have next to nothing in their pauses, so they are left as they were.
    Without it the noise fills the pauses and the closures between syllables, and the speech
    swings shrink (see _bed for the gate's part).
    """
    if len(power) < 20:
        return power
    total = power.sum(axis=1)
    quiet = total <= np.percentile(total, NOISE_PERCENTILE)
    noise = power[quiet].mean(axis=0)
    return np.maximum(power - NOISE_OVER * noise[None, :], NOISE_FLOOR * power)


def _silence_level(heard_db: np.ndarray) -> float:
    """dBFS under which a hop is silence: SILENCE_DBFS, or SILENCE_UNDER_LOUD under the loud
    hops of a quieter recording. A fixed threshold made the mouth depend on the gain: speech
    recorded 20 dB quieter than usual (loud hops near -35 dBFS) lost its softer syllables
    under it and opened two thirds as far; 40 dB quieter, not at all."""
    sound = heard_db[heard_db > DIGITAL_SILENCE]
    if sound.size < 5:
        return SILENCE_DBFS
    loud, floor = np.percentile(sound, [90, 10])
    if loud - floor < SPEECH_SWING:  # steady noise, or a few clicks in silence: not speech
        return SILENCE_DBFS
    return max(DIGITAL_SILENCE, min(SILENCE_DBFS, float(loud) - SILENCE_UNDER_LOUD))


def _speech_level(total_db: np.ndarray, silence: float = SILENCE_DBFS) -> float:
    """The clip's loud-speech level, so features compare across recordings at any gain: the 90th
    percentile of audible hops, but at least 20 dB over the quietest tenth. Speech swings 25+ dB
    between syllables and pauses; a steady hum or hiss does not, so it stays far under the
    reference and never opens the mouth."""
    audible = total_db[total_db > silence]
    if audible.size < 5:
        return 0.0
    return float(max(np.percentile(audible, 90), np.percentile(audible, 10) + 20.0))


def _gate(level: np.ndarray, audible: np.ndarray) -> np.ndarray:
    """0..1 per hop: someone speaks, by level over the recording's floor (_speech_threshold)."""
    threshold = _speech_threshold(level[audible])
    return np.clip((level - threshold) / 15.0, 0.0, 1.0) * audible


def _bed(heard: np.ndarray, audible: np.ndarray) -> float:
    """0..1: how loud a bed of noise or music lies under the speech, from the quietest tenth
    of the audible hops (dB re speech): none at BED_FROM (a clean studio or a quiet room, whose
    level gate works), fully there at BED_FULL."""
    if audible.sum() < 20:
        return 0.0
    floor = float(np.percentile(heard[audible], 10))
    return float(np.clip((floor - BED_FROM) / (BED_FULL - BED_FROM), 0.0, 1.0))


def _voice(samples: np.ndarray, hops: int) -> np.ndarray:
    """0..1 per hop: the voice activity model hears a voice there (within VOICE_HOLD of it,
    so closures between syllables stay inside)."""
    probability = speech_probability(samples)
    if not probability.size:
        return np.zeros(hops)
    window = np.minimum(np.arange(hops) * HOP // VAD_WINDOW, probability.size - 1)
    soft = np.clip((probability[window] - 0.3) / 0.4, 0.0, 1.0)
    hold = int(VOICE_HOLD * RATE / HOP)
    return maximum_filter1d(soft, 2 * hold + 1, mode="nearest")


def _speech_threshold(level: np.ndarray) -> float:
    """Level (dB re speech) where the speech gate starts to open: 30 dB under speech, or 6 dB
    over a noisy recording's floor (pauses over hum or street noise must still close the mouth),
    but never above -15 dB, so a recording without pauses still opens on its vowels."""
    if level.size < 20:
        return -30.0
    floor = float(np.percentile(level, 10))
    return float(min(max(floor + 6.0, -30.0), -15.0))
