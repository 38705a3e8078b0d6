"""IPA (piper/espeak) and ARPAbet spellings -> openlipsync's one phone alphabet."""

from __future__ import annotations

import pytest

from openlipsync.tts.arpabet import PHONES, ipa_to_phones, ipa_to_timings, normalize_phone


@pytest.mark.parametrize(
    ("label", "phone"),
    [
        ("AH0", "ah"),
        ("ey1", "ey"),
        ("SIL", "sil"),
        ("+NSN+", "sil"),
        ("<sil>", "sil"),
        ("ax", "ah"),
        ("dx", "d"),
        ("  P ", "p"),
    ],
)
def test_normalize_phone(label: str, phone: str) -> None:
    assert normalize_phone(label) == phone


@pytest.mark.parametrize("label", ["xx", "ʃ", "ae3x", "p p"])
def test_normalize_phone_rejects_non_arpabet(label: str) -> None:
    with pytest.raises(ValueError, match="ARPAbet"):
        normalize_phone(label)


def test_ipa_words_to_phones() -> None:
    # espeak-ng output for "church judge boy cow buy day go"
    ipa = "tʃˈɜːtʃ dʒˈʌdʒ bˈɔɪ kˈaʊ bˈaɪ dˈeɪ ɡˈoʊ"
    assert ipa_to_phones(ipa) == [
        "ch",
        "er",
        "ch",
        "jh",
        "ah",
        "jh",
        "b",
        "oy",
        "k",
        "aw",
        "b",
        "ay",
        "d",
        "ey",
        "g",
        "ow",
    ]


def test_piper_symbols_become_contiguous_timings() -> None:
    # "^ h ə l ˈ o ʊ ␠ w ˈ ɜ ː l d . $" with per-symbol durations as piper reports them
    symbols = [
        ("^", 0.03),
        ("h", 0.05),
        ("ə", 0.05),
        ("l", 0.03),
        ("ˈ", 0.05),
        ("o", 0.02),
        ("ʊ", 0.05),
        (" ", 0.04),
        ("w", 0.03),
        ("ˈ", 0.07),
        ("ɜ", 0.06),
        ("ː", 0.05),
        ("l", 0.06),
        ("d", 0.06),
        (".", 0.07),
        ("$", 0.05),
    ]
    timings = ipa_to_timings(symbols)
    assert [t.phoneme for t in timings] == [
        "sil",
        "hh",
        "ah",
        "l",
        "ow",
        "w",
        "er",
        "l",
        "d",
        "sil",
    ]
    assert timings[0].start == 0.0
    assert timings[-1].end == pytest.approx(sum(d for _, d in symbols))
    for a, b in zip(timings, timings[1:], strict=False):
        assert a.end == pytest.approx(b.start)
    ow, w, er = timings[4], timings[5], timings[6]
    assert ow.start == pytest.approx(0.16)  # the stress mark's time belongs to the vowel
    assert ow.end == pytest.approx(0.30)  # half of the word gap (0.28-0.32)
    assert w.start == pytest.approx(0.30)
    assert er.end - er.start == pytest.approx(0.18)  # stress + vowel + length mark
    assert all(t.phoneme in PHONES for t in timings)


def test_pause_absorbs_word_gap_and_merges() -> None:
    symbols = [
        ("h", 0.05),
        ("ˈ", 0.02),
        ("a", 0.05),
        ("ɪ", 0.05),
        (",", 0.1),
        (" ", 0.2),
        ("j", 0.05),
        ("ˈ", 0.0),
        ("uː", 0.1),
    ]
    timings = ipa_to_timings(symbols)
    assert [t.phoneme for t in timings] == ["hh", "ay", "sil", "y", "uw"]
    assert timings[2].end - timings[2].start == pytest.approx(0.3)


def test_bad_durations_are_rejected() -> None:
    with pytest.raises(ValueError, match="duration"):
        ipa_to_timings([("a", float("nan"))])
    with pytest.raises(ValueError, match="duration"):
        ipa_to_timings([("a", -0.1)])


def test_unknown_symbols_do_not_break_contiguity() -> None:
    timings = ipa_to_timings([("m", 0.1), ("☃", 0.1), ("a", 0.1)])
    assert [t.phoneme for t in timings] == ["m", "ae"]
    assert timings[-1].end == pytest.approx(0.3)
    assert timings[0].end == timings[1].start
