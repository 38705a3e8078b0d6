"""Audio to mouth motion: one target (open, jaw, width) per output frame, in the person's units.

Two layers:
- A general mapping with a handful of hand-set weights rather than a model fitted to the few
  clips we have, so it carries to unseen voices: voiced first-formant energy opens the jaw, a
  high F1 centroid opens it further ("a" vs "i"), frication and stop closures shut the lips, a
  low F2 rounds (narrows) them. The weights were sanity-checked per phone class on the CMU
  ARCTIC sentence with hand-labelled phones (pause < bilabial, f/v < s < close vowels < open
  vowels); only smoothing, lead and shrinkage were chosen on the GRID truth protocol.
- A person layer: when the source video has speech, a ridge regression of this person's measured
  mouth against their own audio, shrunk towards the general weights (a GRID half is ~37 frames,
  far too few to learn a mapping from scratch), plus their own neutral and range.

Everything is expressed as a fraction of the person's range above their closed mouth, then
scaled back, so the plan never asks a face for shapes it has not shown (or, for a still photo,
shapes outside typical human ranges).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import gaussian_filter1d, maximum_filter1d, median_filter

from openlipsync.engine.audio_features import AudioFeatures, AudioLike, extract
from openlipsync.engine.errors import InputTooLong
from openlipsync.engine.scenes import shot_ranges

LEAD_SECONDS = 0.01
"""How far the mouth runs ahead of its sound. Frame i already averages the audio of
[i/fps, (i+1)/fps), i.e. half a frame (20 ms at 25 fps) after the instant the frame shows, so the
effective look-ahead is 30 ms at 25 fps; 0 and 20 ms did worse on the GRID truth protocol."""

SMOOTH_SECONDS = 0.036
"""Gaussian smoothing sigma: coarticulation blurs shapes over ~50 ms; less would jitter."""

# Typical ranges relative to the closed mouth, in eye-distance units, for faces that never spoke
# in their source (stills, silent videos). Measured on frontal talking heads (GRID, MediaPipe).
TYPICAL_RANGE = np.array([0.16, 0.08, 0.08], np.float32)
GENERAL_SPAN = 0.5  # of TYPICAL_RANGE at least, where the mapping is the general one
TYPICAL_CLOSED_OPEN = 0.005
EXPRESSION_SECONDS = 0.8  # see held_expression
EXPRESSION_DEAD = TYPICAL_RANGE
# Frames of a person's face needed to read their own neutral mouth (else everyone's is used).
OWN_NEUTRAL_FRAMES = 50
GRIN_OPEN_DEAD = 0.02  # lips parted less than this at rest are not a grin (see held_expression)
GRIN_SPEECH = 0.5  # of speech's opening added to a grin's (see expressed)
GRIN_TEETH = 0.08  # share of the opening showing teeth (library.TEETH_SHOWN): a grin, not a gape
JAW_PER_OPEN = 0.35  # nose-to-chin growth per unit of lip opening (median over GRID speakers)

FEATURE_NAMES = ("bias", "f1", "level", "f1c", "f2c", "fric", "closure", "voicing")
GENERAL_OPEN = np.array([0.0, 0.55, 0.35, 0.25, 0.0, -0.10, -0.6, 0.0], np.float32)
"""General weights for 'open' on the standardised features of `design_matrix`."""
GENERAL_SHAPE = np.array([[1.0, 0.15], [0.0, -0.35]], np.float32)
"""Jaw follows the lip opening; the corners part a little with it and pull in when rounding."""
N_MFCC_USED = 12
RIDGE_PRIOR = 20.0  # shrinkage of the person fit towards the general weights, in frames
MIN_SPEECH_FRAMES = 12  # fewer speech frames than this in the source: do not learn a mapping
MAX_FRAMES = 1_000_000  # ~4.6 h at 60 fps: beyond any accepted input, refuse rather than swap


@dataclass
class PersonModel:
    """This person's audio-to-mouth mapping, and the neutral/range of each shape column."""

    neutral: np.ndarray  # (3,) closed, relaxed mouth: (open, jaw, width)
    span: np.ndarray  # (3,) typical speaking excursion of each column above/around neutral
    open_weights: np.ndarray = field(default_factory=lambda: _general_weights())
    source: str = "general"  # "learned" | "general" | "still"
    lead: float = LEAD_SECONDS
    fit_r: float = float("nan")  # in-sample correlation of the person fit (diagnostics)
    # (jaw, width) per unit of (opening, rounding), both as fractions of their spans.
    shape_weights: np.ndarray = field(default_factory=lambda: GENERAL_SHAPE.copy())
    # Per source frame, 0..1: they were speaking (their own sound's speech gate); empty when
    # the source has no sound or no face to learn from.
    speaking: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


def _general_weights() -> np.ndarray:
    return np.concatenate([GENERAL_OPEN, np.zeros(N_MFCC_USED, np.float32)])


def _zscore(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Standardise over speech frames so voices at any pitch, gain and timbre compare."""
    ref = values[mask] if mask.sum() >= 3 else values
    std = ref.std(axis=0)
    return (values - ref.mean(axis=0)) / np.where(std > 1e-6, std, 1.0)


def design_matrix(features: AudioFeatures) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame feature rows (frames, len(FEATURE_NAMES) + 12) and the soft speech gate."""
    gate = np.clip(features.speech, 0.0, 1.0)
    speaking = gate > 0.5
    f1 = np.clip((features.f1_energy + 35.0) / 35.0, 0.0, 1.2)
    level = np.clip((features.level + 35.0) / 35.0, 0.0, 1.2)
    columns = [
        np.ones_like(f1),
        f1,
        level,
        np.clip(_zscore(features.f1_centroid, speaking), -3, 3) * 0.3 * gate,
        np.clip(_zscore(features.f2_centroid, speaking), -3, 3) * 0.3 * gate,
        np.clip(_zscore(features.frication, speaking), -3, 3) * 0.3 * gate,
        features.closure,
        features.voicing,
    ]
    mfcc = _zscore(features.mfcc[:, 1 : 1 + N_MFCC_USED], speaking) * 0.1 * gate[:, None]
    return np.column_stack(columns + [mfcc]).astype(np.float32), gate


CLOSURE = FEATURE_NAMES.index("closure")


def _open_fraction(features: AudioFeatures, weights: np.ndarray, fps: float) -> np.ndarray:
    """Mouth opening as a fraction of the person's range (0 closed, ~1 wide open).

    Closures are applied after the coarticulation blur, with a sharper one of their own: lips
    seal fast, and blurring a 60 ms "b" with its vowels would leave the mouth half open.
    """
    x, gate = design_matrix(features)
    rest = np.ones(weights.size, bool)
    rest[CLOSURE] = False
    opening = _smooth(np.clip(x[:, rest] @ weights[rest], 0.0, 1.3) * gate, fps)
    closing = weights[CLOSURE] * _smooth(x[:, CLOSURE], fps, SMOOTH_SECONDS / 2)
    return np.clip(opening + closing, 0.0, 1.3)


def fit_person(source_audio: AudioLike | None, measured: np.ndarray, fps: float) -> PersonModel:
    """Learn this person's mapping from the source video (their real mouth against their real
    audio) when it contains speech; otherwise scale the general mapping to their observed face.

    `measured` is mouth_shape() per source frame, NaN rows where no face was found.
    """
    measured = np.asarray(measured, np.float32)
    if measured.ndim != 2 or measured.shape[1] != 3:
        raise ValueError(f"measured must be (frames, 3) mouth shapes, got {measured.shape}")
    valid = np.isfinite(measured).all(axis=1)
    if not valid.any():
        return _still_person(None)
    shapes = measured[valid]
    if shapes.shape[0] < 8 or _is_still(shapes):
        return _still_person(shapes)
    neutral, span = _neutral_and_span(shapes)
    person = PersonModel(neutral=neutral, span=span, lead=LEAD_SECONDS)
    if source_audio is None or fps <= 0:
        return _general(person)
    features = extract(source_audio, fps, measured.shape[0], lead=person.lead)
    person.speaking = np.clip(features.speech, 0.0, 1.0).astype(np.float32)
    x, gate = design_matrix(features)
    x, gate = x[valid], gate[valid]
    if (gate > 0.5).sum() < MIN_SPEECH_FRAMES:
        return _general(person)
    target = (shapes[:, 0] - neutral[0]) / span[0]
    weights = _ridge_towards(x, target, _general_weights(), RIDGE_PRIOR)
    predicted = np.clip(x @ weights, 0.0, 1.3) * gate
    fit_r = _pearson(predicted, target)
    if not np.isfinite(fit_r) or fit_r < 0.2:
        # Their mouth does not follow their audio here (dubbed, off-screen voice): stay general.
        return _general(person)
    person.open_weights = weights.astype(np.float32)
    person.source = "learned"
    person.fit_r = fit_r
    person.shape_weights = _fit_jaw_and_width(features, person, shapes, valid, fps)
    return person


def _fit_jaw_and_width(
    features: AudioFeatures, person: PersonModel, shapes: np.ndarray, valid: np.ndarray, fps: float
) -> np.ndarray:
    """How this face's jaw and mouth corners move with its opening and rounding: people differ
    (some widen as they open, some narrow), so the sign is learned, shrunk to the general one."""
    drivers = np.column_stack(
        [
            _open_fraction(features, person.open_weights, fps),
            _smooth(_rounding(features), fps),
        ]
    )[valid]
    weights = np.empty_like(GENERAL_SHAPE)
    for column in (0, 1):
        target = (shapes[:, column + 1] - person.neutral[column + 1]) / person.span[column + 1]
        weights[:, column] = _ridge_towards(
            drivers, target, GENERAL_SHAPE[:, column], RIDGE_PRIOR / 4
        )
    return np.clip(weights, -1.5, 1.5).astype(np.float32)


def _is_still(shapes: np.ndarray) -> bool:
    return shapes.shape[0] < 2 or float(np.ptp(shapes[:, 0])) < 1e-4


def _still_person(shapes: np.ndarray | None) -> PersonModel:
    """A face seen only at rest: its closed mouth (a photo may smile with parted lips, so the
    opening is taken out of the jaw too) and typical human ranges."""
    if shapes is None:
        return PersonModel(
            neutral=np.array([TYPICAL_CLOSED_OPEN, 0.85, 0.5], np.float32),
            span=TYPICAL_RANGE.copy(),
            source="still",
        )
    seen = np.median(shapes, axis=0).astype(np.float32)
    parted = max(0.0, float(seen[0]) - TYPICAL_CLOSED_OPEN)
    neutral = np.array([seen[0] - parted, seen[1] - JAW_PER_OPEN * parted, seen[2]], np.float32)
    return PersonModel(neutral=neutral, span=TYPICAL_RANGE.copy(), source="still")


def _general(person: PersonModel) -> PersonModel:
    """The general mapping on this face: its span at least GENERAL_SPAN of the typical one.
    What a face did without speaking (a smile, a frown, a mouth half out of the frame, a hand
    over it) says little of how far it opens to speak: its spread ranged from 0.04 to 0.10 on
    one silent face, mirrored or not."""
    person.span = np.maximum(person.span, GENERAL_SPAN * TYPICAL_RANGE).astype(np.float32)
    return person


@dataclass
class EachPerson:
    """Several people's mouth shapes on one common scale, and back (see each_person).

    `neutral` and `span` are per source frame: the relaxed mouth and speaking range of the
    person on it; `common_neutral` and `common_span` those of all the frames together."""

    neutral: np.ndarray  # (frames, 3)
    span: np.ndarray  # (frames, 3)
    common_neutral: np.ndarray  # (3,)
    common_span: np.ndarray  # (3,)

    def to_common(self, shapes: np.ndarray) -> np.ndarray:
        """Measured shapes (per source frame) as if everyone had the common mouth."""
        return self.common_neutral + (shapes - self.neutral) * (self.common_span / self.span)

    def to_own(self, targets: np.ndarray, src_index: np.ndarray) -> np.ndarray:
        """Common-scale targets (per output frame) on the mouth of each frame's person."""
        neutral, span = self.neutral[src_index], self.span[src_index]
        return neutral + (targets - self.common_neutral) * (span / self.common_span)


def each_person(measured: np.ndarray, people: np.ndarray | None) -> EachPerson | None:
    """Each person's relaxed mouth and speaking range; None for a video of one person.

    People differ in mouth width and chin length by more than speech moves them, and in how
    far they open to speak (GRID speakers: width 0.46-0.59, jaw 0.74-0.89 eye distances;
    opening range 0.10-0.22). Learnt together, an interview's two people shared one mouth: one
    man's closed lips were planned 0.07 eye distances wider than his own, the other's chin
    held 0.06 lower, and he opened 1.7 times as far as he does. The plan works on shapes
    taken to a common scale (`to_common`) and gives each frame back to its person (`to_own`).
    A range is floored as the general mapping floors it (GENERAL_SPAN): a person who only
    listens in the source still speaks the dub visibly.
    """
    if people is None:
        return None
    measured = np.asarray(measured, np.float32).reshape(-1, 3)
    finite = np.isfinite(measured).all(axis=1)
    groups = np.unique(people)
    if len(groups) < 2 or finite.sum() < OWN_NEUTRAL_FRAMES:
        return None
    floor = GENERAL_SPAN * TYPICAL_RANGE
    common_neutral, common_span = _neutral_and_span(measured[finite])
    common_span = np.maximum(common_span, floor)
    neutral = np.tile(common_neutral, (len(measured), 1))
    span = np.tile(common_span, (len(measured), 1))
    for group in groups:
        mine = (people == group) & finite
        if mine.sum() >= OWN_NEUTRAL_FRAMES:
            own_neutral, own_span = _neutral_and_span(measured[mine])
            neutral[people == group] = own_neutral
            span[people == group] = np.maximum(own_span, floor)
    return EachPerson(neutral, span, common_neutral, common_span)


def _neutral_and_span(shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed mouth = this face's most closed frames (it may rest open, but it closes at times
    while talking); span = spread of what this face actually did, floored at a visible minimum."""
    opening = shapes[:, 0]
    closed = opening <= np.percentile(opening, 20)
    neutral = np.array(
        [
            np.percentile(opening, 5),
            np.median(shapes[closed, 1]),
            np.median(shapes[closed, 2]),
        ],
        np.float32,
    )
    spread = np.percentile(shapes, 95, axis=0) - np.percentile(shapes, 5, axis=0)
    span = np.maximum(spread, TYPICAL_RANGE * 0.25).astype(np.float32)
    return neutral, span


def _ridge_towards(x: np.ndarray, y: np.ndarray, prior: np.ndarray, lam: float) -> np.ndarray:
    """argmin |y - x w|^2 + lam |w - prior|^2: with few frames the answer stays near the prior."""
    gram = x.T @ x + lam * np.eye(x.shape[1])
    return np.linalg.solve(gram, x.T @ y + lam * prior)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def plan_mouth(
    audio: AudioLike,
    fps: float,
    frame_count: int,
    person: PersonModel,
    temperature: float = 0.5,
    active: np.ndarray | None = None,
) -> np.ndarray:
    """Absolute target (open, jaw, width) per output frame; frame i covers [i/fps, (i+1)/fps).

    temperature 0..1 scales expressiveness (0.5 = the person's own range, 0 = half of it,
    1 = one and a half); frames where `active` is False get the neutral closed mouth.
    """
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    frame_count = int(frame_count)
    if frame_count <= 0:
        return np.zeros((0, 3), np.float32)
    if frame_count > MAX_FRAMES:
        raise InputTooLong(f"{frame_count} output frames is more than the {MAX_FRAMES} allowed")
    features = extract(audio, fps, frame_count, lead=person.lead)
    opening = _open_fraction(features, person.open_weights, fps)
    rounding = _smooth(_rounding(features), fps)
    gain = _gain(temperature)
    jaw, width = (np.column_stack([opening, rounding]) @ person.shape_weights).T
    shape = np.empty((frame_count, 3), np.float32)
    shape[:, 0] = person.neutral[0] + gain * opening * person.span[0]
    shape[:, 1] = person.neutral[1] + gain * np.clip(jaw, -0.3, 1.3) * person.span[1]
    shape[:, 2] = person.neutral[2] + gain * np.clip(width, -0.8, 0.8) * person.span[2]
    if active is not None:
        mask = np.zeros(frame_count, bool)
        given = np.asarray(active, bool).reshape(-1)[:frame_count]
        mask[: given.size] = given
        shape[~mask] = person.neutral
    return shape


def held_expression(
    measured: np.ndarray,
    person: PersonModel,
    fps: float,
    teeth: np.ndarray | None = None,
    cuts: Sequence[int] = (),
) -> np.ndarray:
    """Per source frame, (open, jaw, width) offsets from this person's neutral mouth that their
    expression holds: a smile held for seconds, not a vowel's shape for a tenth of one.

    The audio gives the mouth's motion, not the face's mood. On a smiling frame a target of
    neutral width pastes a neutral mouth under raised cheeks (and a grin goes on a neutral
    face where speech opens it); on a frame whose jaw a laugh holds low, a target of neutral
    jaw lifts the chin by a fifth of an eye distance while the jaw's sides stay, and the neck
    under the old chin shows as a dark smear. `expressed` applies these to the targets. A
    slow median over EXPRESSION_SECONDS keeps the held part; up to EXPRESSION_DEAD (the
    typical speaking range) it is speech's own, so a talking face gets nothing added, and
    from twice that all of it is held (a grin's mouth the width it is on the frame, not a
    dead zone narrower). The opening (see _grin_opening) is held only by a grin in silence:
    lips apart over teeth.
    `measured` is mouth_shape() per source frame, NaN rows where no face was found; `teeth`
    the share of each frame's opening that shows teeth (NaN: not measured). Each shot (`cuts`:
    first frames of new shots) is read on its own: one person's grin does not carry over a cut
    into the next shot, onto someone else's mouth.
    """
    measured = np.asarray(measured, np.float32).reshape(-1, 3)
    held = np.zeros_like(measured)
    size = max(1, int(round(EXPRESSION_SECONDS * fps)) | 1)
    speaking = person.speaking if len(person.speaking) == len(measured) else None
    if teeth is not None:
        shown = np.nan_to_num(np.asarray(teeth, np.float32).reshape(-1), nan=0.0)
        teeth = np.pad(shown[: len(measured)], (0, max(0, len(measured) - len(shown))))
    for start, stop in shot_ranges(list(cuts), len(measured)):
        shapes = _interpolated(measured[start:stop])
        if shapes is None:
            continue
        part = held[start:stop]
        for column in (1, 2):
            offset = median_filter(shapes[:, column], size=size, mode="nearest")
            offset -= person.neutral[column]
            dead = EXPRESSION_DEAD[column]
            part[:, column] = offset * np.clip((np.abs(offset) - dead) / dead, 0.0, 1.0)
        if teeth is not None:
            quiet = None if speaking is None else speaking[start:stop]
            part[:, 0] = _grin_opening(shapes[:, 0], part, person, teeth[start:stop], size, quiet)
    return held


def _interpolated(shapes: np.ndarray) -> np.ndarray | None:
    """Lost faces filled in between the measured frames; None when no frame has a face."""
    finite = np.isfinite(shapes).all(axis=1)
    if finite.all():
        return shapes
    if not finite.any():
        return None
    index = np.arange(len(shapes))
    return np.column_stack(
        [np.interp(index, index[finite], shapes[finite, c]) for c in range(3)]
    ).astype(np.float32)


def _grin_opening(
    opening: np.ndarray,
    held: np.ndarray,
    person: PersonModel,
    teeth: np.ndarray,
    size: int,
    speaking: np.ndarray | None,
) -> np.ndarray:
    """How far a grin holds the lips apart, where the person grins in silence.

    A broad grin parts the lips over closed teeth. Closing them in the dub's pauses asks for
    a mouth this face has never shown (closed lips, cheeks raised, jaw low) and the warp
    folds the cheeks into seams along the smile lines; a person grinning in silence shows
    teeth anyway. So there the opening the grin keeps (its 20th percentile: a talking mouth
    closes between syllables) is the least the lips open, read over half of
    EXPRESSION_SECONDS on either side so the grin is held from its first frame to its last.
    Only where the jaw or width holds an expression, teeth show, and the person's own
    sound is not speech: a talking mouth in a muted source stays the audio's to close.
    """
    half = size // 2
    floor = _either_side(opening, half, 20) - person.neutral[0] - GRIN_OPEN_DEAD
    strength = np.clip(np.abs(held[:, 1:]).max(axis=1) / (0.25 * EXPRESSION_DEAD[1]), 0, 1)
    grinning = _either_side((teeth >= GRIN_TEETH).astype(np.float32), half, 50)
    quiet = np.ones(len(opening), np.float32)
    if speaking is not None:  # their own sound, per frame
        quiet -= maximum_filter1d(speaking, size=half | 1, mode="nearest")  # +-0.2 s
    return (np.maximum(floor, 0.0) * strength * grinning * quiet).astype(np.float32)


def _either_side(values: np.ndarray, half: int, q: float) -> np.ndarray:
    """The larger of the q-th percentiles over the `half` frames up to and from each frame:
    a state that starts or ends here is read in full on its own side."""
    windows = sliding_window_view(np.pad(values, half, mode="edge"), half + 1)
    n = len(values)
    back = np.percentile(windows[:n], q, axis=1)
    ahead = np.percentile(windows[half : half + n], q, axis=1)
    return np.maximum(back, ahead)


def expressed(targets: np.ndarray, held: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """Targets with a held expression. The width is offset by it: speech rounds and spreads a
    smile's lips around the smile. The jaw drops at least as far as the expression holds it
    and speech lowers it further only past that: a laugh's low jaw plus a vowel's whole drop
    would pull the chin below anything the face has shown. Behind a grin's parted lips speech
    parts the teeth by GRIN_SPEECH of its own opening (all of it read as a shout, not talk)."""
    out = np.asarray(targets, np.float32).copy()
    out[:, 1] = np.maximum(out[:, 1], neutral[1] + np.maximum(held[:, 1], 0.0))
    out[:, 1] += np.minimum(held[:, 1], 0.0)
    grin = neutral[0] + held[:, 0] + GRIN_SPEECH * (out[:, 0] - neutral[0])
    out[:, 0] = np.maximum(out[:, 0], grin)
    out[:, 2] += held[:, 2]
    return out


def _gain(temperature: float) -> float:
    """Expressiveness multiplier, monotonic in temperature; NaN means the default."""
    t = float(temperature)
    t = 0.5 if not np.isfinite(t) else float(np.clip(t, 0.0, 1.0))
    return 0.5 + t


def _rounding(features: AudioFeatures) -> np.ndarray:
    """0..1 lip rounding from a low F2 during voiced speech ("oo", "w")."""
    gate = np.clip(features.speech, 0.0, 1.0)
    z = _zscore(features.f2_centroid, gate > 0.5)
    return np.clip(-z * 0.5, 0.0, 1.0) * gate * features.voicing


def _smooth(values: np.ndarray, fps: float, seconds: float = SMOOTH_SECONDS) -> np.ndarray:
    sigma = seconds * fps
    if sigma < 0.3 or values.size < 2:
        return values
    return gaussian_filter1d(values, sigma, mode="nearest")
