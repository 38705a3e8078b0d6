"""The one phoneme alphabet of openlipsync: ARPAbet, lowercase, without stress digits.

Piper speaks IPA (espeak-ng, one codepoint per symbol, stress and length marks as symbols of
their own) while pocketsphinx and CMUdict speak ARPAbet. Timings from either source are
normalised here to the 39 CMUdict phones plus ``sil`` so that the viseme table has one key set.
ARPAbet wins because its phones are whole sounds ("ey", "ch"), which is what a mouth shape
follows; IPA diphthongs and affricates are two codepoints that must be merged anyway.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Sequence

from openlipsync.tts.base import PhonemeTiming

SILENCE = "sil"

VOWELS = frozenset(
    ["aa", "ae", "ah", "ao", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw"]
)
CONSONANTS = frozenset(
    ["b", "ch", "d", "dh", "f", "g", "hh", "jh", "k", "l", "m", "n", "ng", "p", "r", "s", "sh"]
    + ["t", "th", "v", "w", "y", "z", "zh"]
)
PHONES = VOWELS | CONSONANTS | {SILENCE}
"""Every label a `PhonemeTiming` produced by openlipsync may carry."""

# Pocketsphinx filler and noise words (its acoustic model's non-speech units).
_FILLERS = {"sil", "sp", "spn", "nsn", "+nsn+", "+spn+", "<sil>", "<s>", "</s>", "pau", ""}
# Older/extended ARPAbet spellings seen in corpora (TIMIT, Festival) folded to CMUdict's set.
_ALIASES = {
    "ax": "ah",
    "axr": "er",
    "ix": "ih",
    "ux": "uw",
    "dx": "d",
    "nx": "n",
    "el": "l",
    "em": "m",
    "en": "n",
    "hv": "hh",
    "q": "t",
    "h#": SILENCE,
    "pau": SILENCE,
}

# IPA as produced by espeak-ng for English (and close relatives) -> ARPAbet.
_IPA_PAIRS = {
    "eɪ": "ey",
    "aɪ": "ay",
    "aʊ": "aw",
    "oʊ": "ow",
    "əʊ": "ow",
    "ɔɪ": "oy",
    "tʃ": "ch",
    "dʒ": "jh",
}
_IPA_SINGLE = {
    "i": "iy",
    "ɪ": "ih",
    "ᵻ": "ih",
    "ɨ": "ih",
    "e": "ey",
    "ɛ": "eh",
    "æ": "ae",
    "a": "ae",
    "ɑ": "aa",
    "ɒ": "aa",
    "ɔ": "ao",
    "o": "ow",
    "ʌ": "ah",
    "ə": "ah",
    "ɐ": "ah",
    "ɚ": "er",
    "ɜ": "er",
    "ɝ": "er",
    "ʊ": "uh",
    "u": "uw",
    "ʉ": "uw",
    "y": "uw",
    "p": "p",
    "b": "b",
    "t": "t",
    "d": "d",
    "k": "k",
    "ɡ": "g",
    "g": "g",
    "f": "f",
    "v": "v",
    "θ": "th",
    "ð": "dh",
    "s": "s",
    "z": "z",
    "ʃ": "sh",
    "ʒ": "zh",
    "h": "hh",
    "m": "m",
    "n": "n",
    "ŋ": "ng",
    "l": "l",
    "ɫ": "l",
    "ɹ": "r",
    "r": "r",
    "ɾ": "d",
    "ʔ": "t",
    "w": "w",
    "ʍ": "w",
    "j": "y",
    "x": "k",
    "ç": "hh",
    "ɬ": "l",
    "ɲ": "n",
    "ʎ": "l",
    "β": "v",
    "ɣ": "g",
}
_STRESS = {"ˈ", "ˌ"}
_LENGTH = {"ː", "ˑ", "˞"}
_WORD_GAP = " "
_PAUSES = set(".,!?;:—–-…()\"'") | {"^", "$", "_"}
"""Piper's BOS/EOS/pad and punctuation: the model gives them real pause durations."""


def normalize_phone(label: str) -> str:
    """Any ARPAbet spelling (``AH0``, ``+NSN+``, ``ax``) -> a member of `PHONES`.

    Unknown labels raise ValueError rather than silently becoming a wrong mouth shape.
    """
    phone = label.strip().lower().rstrip("012")
    if phone in _FILLERS or phone.startswith("+"):
        return SILENCE
    phone = _ALIASES.get(phone, phone)
    if phone not in PHONES:
        raise ValueError(f"not an ARPAbet phone: {label!r}")
    return phone


def ipa_to_timings(symbols: Iterable[tuple[str, float]], start: float = 0.0) -> list[PhonemeTiming]:
    """Piper's per-symbol durations (IPA codepoints, seconds) -> contiguous ARPAbet timings.

    Stress marks belong to the vowel after them and length marks/diacritics to the sound before;
    a bare word gap is co-articulated speech, so it is split between its neighbours, while
    punctuation, BOS/EOS and gaps next to them are real pauses (``sil``).
    """
    segments = _merge_marks(symbols, start)
    segments = _merge_pairs(segments)
    labelled = [(_label(sym), t0, t1) for sym, t0, t1 in segments]
    labelled = [seg for seg in labelled if seg[0] is not None]
    return _resolve_gaps(labelled)


def ipa_to_phones(ipa: str) -> list[str]:
    """An IPA string -> ARPAbet phones without timing (to add a word to a dictionary)."""
    symbols = [(ch, 1.0) for ch in unicodedata.normalize("NFD", ipa)]
    return [t.phoneme for t in ipa_to_timings(symbols) if t.phoneme != SILENCE]


def _merge_marks(symbols: Iterable[tuple[str, float]], start: float) -> list[list]:
    """[symbol, start, end] with stress/length/diacritic marks folded into their sound."""
    segments: list[list] = []
    now = start
    pending_from: float | None = None  # start of a stress mark waiting for its vowel
    for symbol, duration in symbols:
        if not math.isfinite(duration) or duration < 0:
            raise ValueError(f"bad duration {duration!r} for phoneme {symbol!r}")
        end = now + duration
        if symbol in _STRESS:
            pending_from = now if pending_from is None else pending_from
        elif segments and (symbol in _LENGTH or _is_diacritic(symbol)):
            segments[-1][0] += symbol if symbol in _LENGTH else ""
            segments[-1][2] = end
        else:
            seg_start = now if pending_from is None else pending_from
            segments.append([symbol, seg_start, end])
            pending_from = None
        now = end
    if pending_from is not None and segments:
        segments[-1][2] = now
    return segments


def _merge_pairs(segments: list[list]) -> list[list]:
    merged: list[list] = []
    for seg in segments:
        if merged:
            pair = merged[-1][0].rstrip("ː") + seg[0]
            if pair in _IPA_PAIRS or merged[-1][0] + seg[0] in _IPA_PAIRS:
                merged[-1] = [pair, merged[-1][1], seg[2]]
                continue
        merged.append(list(seg))
    return merged


def _label(symbol: str) -> str | None:
    """ARPAbet label, `_WORD_GAP`, or None for a symbol that carries no sound of its own."""
    if symbol in _IPA_PAIRS:
        return _IPA_PAIRS[symbol]
    if symbol == _WORD_GAP:
        return _WORD_GAP
    if symbol in _PAUSES:
        return SILENCE
    base = symbol.rstrip("".join(_LENGTH))
    if base in _IPA_PAIRS:
        return _IPA_PAIRS[base]
    return _IPA_SINGLE.get(base[:1]) if base else None


def _resolve_gaps(labelled: Sequence[tuple[str, float, float]]) -> list[PhonemeTiming]:
    """Split bare word gaps between neighbours, fold gaps next to pauses into the pause, merge
    runs of silence, and close holes left by dropped symbols so timings stay contiguous."""
    segs: list[list] = [list(seg) for seg in labelled]
    for i, seg in enumerate(segs):
        if seg[0] != _WORD_GAP:
            continue
        prev = segs[i - 1] if i > 0 else None
        nxt = segs[i + 1] if i + 1 < len(segs) else None
        if prev is None or nxt is None or {prev[0], nxt[0]} & {SILENCE, _WORD_GAP, None}:
            seg[0] = SILENCE
        else:
            middle = (seg[1] + seg[2]) / 2
            prev[2], nxt[1], seg[0] = middle, middle, None
    out: list[PhonemeTiming] = []
    for label, t0, t1 in segs:
        if label is None:
            continue
        begin = out[-1].end if out else t0
        if out and label == SILENCE and out[-1].phoneme == SILENCE:
            out[-1].end = max(out[-1].end, t1)
            continue
        out.append(PhonemeTiming(label, begin, max(begin, t1)))
    return out


def _is_diacritic(symbol: str) -> bool:
    return len(symbol) == 1 and unicodedata.combining(symbol) != 0
