"""A room's late reverberation, measured in the recording itself and taken out of its spectra.

A voice recorded in a room (a voice-over read into a phone in a living room, a speech in a
hall) goes on sounding after every syllable: the room's tail fills the pauses and the short
stop closures that the mouth plan reads as a closed mouth. Real speech driven through a
simulated room of RT60 0.6 s (bench/rooms.py) kept 38-62 % of the closures the same speech
shows dry, and the mouth in its pauses opened 2-17 % of its range where the dry take's opened 1 %.

No impulse response is known, so the room is read from how fast sound dies away in it: no
sound fades faster than the room lets it. The fastest falls of dry speech (a high percentile
over a few frequency bands) drop 22-27 dB in 100 ms; in a room of RT60 0.6 s, 12-14 dB. Falls
over 100 ms, where the voice's own stop dominates, tell whether there is a room; falls over
200 ms, where its tail does, how fast the tail decays. Steady noise is taken out of each band
first: a level falling into noise stops there, as if a room held it up.

The tail is then taken out as Lebart, Boucher and Denbigh (2001) proposed: the late reverberation
at a hop is the power LATE_HOPS earlier, decayed at the room's rate over that time, and it is
subtracted from each frequency bin's power (floored, never negative). Early reflections (within
LATE_HOPS) are left: they colour the voice but do not outlast it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter1d

HOP_SECONDS = 0.01  # the hop of the analysis this works on (audio_features.HOP)
BANDS = ((250.0, 500.0), (500.0, 1000.0), (1000.0, 2000.0), (2000.0, 4000.0), (4000.0, 8000.0))
FASTEST = 95  # percentile of a band's falls taken as the fastest the recording allows
PRESENCE_HOPS = 10  # falls over 100 ms tell a room (see NO_ROOM)
DECAY_HOPS = 20  # falls over 200 ms: the room's tail, not the voice's stop, sets these
NO_ROOM, FULL_ROOM = 0.30, 0.45  # s: RT60 as read over PRESENCE_HOPS (60 dB at the fastest
# fall's pace): up to NO_ROOM dry (dry speech read 0.22-0.27), from FULL_ROOM suppressed in
# full (rooms of 0.6 s read 0.43-0.51); speech 15 dB over white noise read 0.27-0.37.
OVER_FLOOR = 3.0  # dB a fall must end above its band's floor to count
NOISE_SCATTER = 1.0  # standard deviations of a noise sum over its bins, taken out with it
DYNAMIC_RANGE = 40.0  # dB: a band's levels are read down to this far under its loud hops
NOISY_LOSS = 1.0  # dB its loud hops lose with the noise: more, and the band is not read
MIN_FALLS = 20  # falls per band needed to read it at all
LATE_HOPS = 5  # 50 ms: what comes later than this is late reverberation
TAIL_SMOOTHING = 3  # hops the tail's estimate is averaged over (the tail scatters)
CARRIED_HOPS = LATE_HOPS + TAIL_SMOOTHING // 2  # what a chunk needs of the one before it
OVER_SUBTRACTION = 2.0  # see suppressed
KEPT = 0.05  # each bin keeps at least this share of its power


@dataclass(frozen=True)
class Room:
    """How a recording's room decays: its tail's fall per hop (dB), and how sure it is that
    there is a room at all (0 dry .. 1)."""

    db_per_hop: float
    strength: float

    @property
    def rt60(self) -> float:
        """Seconds for the tail to fall 60 dB (for reports and tests)."""
        return 60.0 / self.db_per_hop * HOP_SECONDS


def measured_room(power: np.ndarray, freqs: np.ndarray) -> Room | None:
    """The room of `power` (hops x frequency bins, as heard: noise included), or None when
    it is dry or too short to tell."""
    levels = [_band_level(power[:, (freqs >= lo) & (freqs < hi)]) for lo, hi in BANDS]
    presence = _fastest_drop(levels, PRESENCE_HOPS)
    decay = _fastest_drop(levels, DECAY_HOPS)
    if presence is None or decay is None or presence <= 0 or decay <= 0:
        return None
    rt60 = 60.0 / presence * PRESENCE_HOPS * HOP_SECONDS
    strength = float(np.clip((rt60 - NO_ROOM) / (FULL_ROOM - NO_ROOM), 0.0, 1.0))
    return Room(decay / DECAY_HOPS, strength) if strength > 0 else None


def _band_level(bins: np.ndarray) -> np.ndarray:
    """A band's level (dB over a floor DYNAMIC_RANGE under its loud hops) per hop, with its
    steady noise taken out: the mean power of its quietest tenth of hops, and the scatter of
    a noise sum over this many bins. A level falling into noise stops there, as a room would
    hold it up: speech 15 dB over white noise read as a room of RT60 0.35-0.5 s. Empty for a
    band the noise rules (its loud hops lose over NOISY_LOSS dB with it): a voice that rises
    little out of the noise cannot fall far in it (the high bands of speech 14 dB over white
    noise fell 9-11 dB in 100 ms, where the low ones fell 25)."""
    band = bins.sum(axis=1, dtype=np.float64)
    if band.size < 10:
        return np.zeros(0)
    noise = band[band <= np.percentile(band, 10)].mean()
    loud = max(float(np.percentile(band, 90)), 1e-20)
    scatter = 1.0 + NOISE_SCATTER / np.sqrt(max(bins.shape[1], 1))
    if loud - scatter * noise < loud * 10.0 ** (-NOISY_LOSS / 10.0):
        return np.zeros(0)
    floor = loud * 10.0 ** (-DYNAMIC_RANGE / 10.0)
    return 10.0 * np.log10(np.maximum(band - scatter * noise, floor) / floor)


def _fastest_drop(levels: list[np.ndarray], hops: int) -> float | None:
    """The median over bands of the FASTEST percentile of each band's fall in dB over `hops`
    hops, counting falls that end OVER_FLOOR over the band's floor (a fall into the floor
    says nothing of the room)."""
    drops = []
    for level in levels:
        if level.size <= hops:
            continue
        fall = level[:-hops] - level[hops:]
        heard = level[hops:] > OVER_FLOOR
        if heard.sum() >= MIN_FALLS:
            drops.append(float(np.percentile(fall[heard], FASTEST)))
    return float(np.median(drops)) if drops else None


def suppressed(power: np.ndarray, room: Room, before: np.ndarray | None = None) -> np.ndarray:
    """`power` (hops x bins) without its late reverberation. `before`: the CARRIED_HOPS hops
    just before `power` (the previous chunk's last), so that a chunk's first hops lose their
    tail too. The estimate is subtracted twice over: once, it left the tail's strong bins at
    a third of their power, and on rooms of 0.6-1 s half the closures a dry take shows."""
    earlier = power if before is None else np.concatenate([before, power])
    smoothed = uniform_filter1d(earlier, TAIL_SMOOTHING, axis=0, mode="nearest")
    offset = len(earlier) - len(power)
    first = max(0, LATE_HOPS - offset)  # the first hop with a hop LATE_HOPS before it
    late = np.zeros_like(power)
    late[first:] = smoothed[offset + first - LATE_HOPS : len(smoothed) - LATE_HOPS]
    scale = room.strength * OVER_SUBTRACTION * 10.0 ** (-room.db_per_hop * LATE_HOPS / 10.0)
    return np.maximum(power - scale * late, KEPT * power)


@dataclass
class ChunkedSuppression:
    """`suppressed` over an analysis that runs in chunks: each chunk's room is read from
    itself (a long recording may move between rooms), a short last chunk that cannot tell
    keeps the room before it, and every chunk carries its last hops to the next."""

    room: Room | None = None
    before: np.ndarray | None = None

    def __call__(self, heard: np.ndarray, power: np.ndarray, freqs: np.ndarray) -> np.ndarray:
        """`power` (denoised) without the late reverberation of the room `heard` reveals."""
        measured = measured_room(heard, freqs)
        if measured is not None or len(heard) > DECAY_HOPS + MIN_FALLS:
            self.room = measured
        before, self.before = self.before, power[-CARRIED_HOPS:]
        return power if self.room is None else suppressed(power, self.room, before)
