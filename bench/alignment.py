"""Forced-alignment accuracy against hand-labelled phone boundaries (CMU ARCTIC a0009).

Run: .venv/bin/python bench/alignment.py [--grid] [audio.wav labels.lab "transcript"]

Prints the mean and median absolute error of the internal phone boundaries in milliseconds, the
share within 20 ms (the usual forced-alignment yardstick), and the time taken. Phones are
matched by label (TIMIT-style ``ax`` folded into ``ah``) so an alternative pronunciation or an
extra pause costs only the boundaries it moves.

``--grid`` also checks what the timings are for: on the five GRID clips it aligns the known
sentence, turns the phones into mouth targets (engine/phonemes.py) and prints their Pearson
correlation with the mouth MediaPipe measures in the real video, per column (open, jaw, width),
next to the audio-driven plan of engine/motion.py with the same neutral and range.
"""

from __future__ import annotations

import difflib
import sys
import time
from pathlib import Path

import numpy as np

from openlipsync.engine.alignment import align_transcript
from openlipsync.tts.arpabet import normalize_phone
from openlipsync.tts.base import PhonemeTiming

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media" / "speech"
ARCTIC_A0009 = "he turned sharply and faced gregson across the table"
"""Reconstructed from the phones of arctic_a0009_phone.lab (hh iy | t er n d | sh aa r p l iy |
ae n d | f ey s t | g r eh g s ax n | ax k r ao s | dh ax | t ey b ax l)."""


def read_lab(path: Path) -> list[PhonemeTiming]:
    """HTS full-context labels: start and end in 100 ns units, the phone between '-' and '+'."""
    phones = []
    for line in path.read_text().splitlines():
        start, end, context = line.split(maxsplit=2)
        phone = context.split("-", 1)[1].split("+", 1)[0]
        phones.append(PhonemeTiming(normalize_phone(phone), int(start) / 1e7, int(end) / 1e7))
    return phones


def boundary_errors(reference: list[PhonemeTiming], hypothesis: list[PhonemeTiming]) -> np.ndarray:
    """|Δ| in seconds of each internal boundary (end of a matched phone, except the last)."""
    ref_labels = [p.phoneme for p in reference]
    hyp_labels = [p.phoneme for p in hypothesis]
    matcher = difflib.SequenceMatcher(a=ref_labels, b=hyp_labels, autojunk=False)
    errors = []
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            i, j = block.a + k, block.b + k
            if i < len(reference) - 1:
                errors.append(abs(reference[i].end - hypothesis[j].end))
    return np.array(errors)


GRID_SENTENCES = {
    "bbaf2n": "bin blue at f two now",
    "lbax4n": "lay blue at x four now",
    "pwij3p": "place white in j three please",
    "sbwe5n": "set blue with e five now",
    "swiz3n": "set white in z three now",
}


def grid_mouth_correlation() -> None:
    """Phone-driven targets vs the measured mouth of the real speaker (in-sample for nobody:
    nothing here is fitted to these clips; neutral and range come from the measured track)."""
    import av

    from openlipsync.engine import motion
    from openlipsync.engine.mouth import mouth_shape
    from openlipsync.engine.phonemes import viseme_targets
    from openlipsync.engine.tracking import track_video
    from openlipsync.media.audio import load_audio

    def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.array([np.corrcoef(a[:, c], b[:, c])[0, 1] for c in range(3)])

    rows = []
    for clip, sentence in GRID_SENTENCES.items():
        path = MEDIA.parent / "video" / f"grid_{clip}.mpg"
        with av.open(str(path)) as container:
            fps = float(container.streams.video[0].average_rate)
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        measured = mouth_shape(track_video(frames).landmarks)
        ok = np.isfinite(measured).all(axis=1)
        low, high = np.percentile(measured[ok], [5, 95], axis=0)
        median = np.median(measured[ok], axis=0)
        neutral = np.array([low[0], median[1] - 0.3 * (high[1] - low[1]), median[2]])
        span = high - low
        phones = align_transcript(path, sentence)
        targets = viseme_targets(phones, fps, len(frames), neutral, span)
        r_phones = pearson(targets[ok], measured[ok])
        try:
            person = motion.PersonModel(
                neutral=neutral.astype(np.float32), span=span.astype(np.float32)
            )
            audio_plan = motion.plan_mouth(load_audio(path), fps, len(frames), person)
            r_audio = pearson(audio_plan[ok], measured[ok])
        except Exception as exc:  # another module's API; report rather than fail the bench
            print(f"  (audio-driven plan unavailable: {exc})")
            r_audio = np.full(3, np.nan)
        rows.append((r_phones, r_audio))
        print(
            f"grid_{clip}: phones r(open, jaw, width) = {np.round(r_phones, 2)}"
            f"   audio-driven = {np.round(r_audio, 2)}"
        )
    phones_mean = np.mean([r[0] for r in rows], axis=0)
    audio_mean = np.mean([r[1] for r in rows], axis=0)
    print(
        f"mean over GRID: phones {np.round(phones_mean, 3)}   audio-driven "
        f"{np.round(audio_mean, 3)}"
    )


def main(argv: list[str]) -> int:
    grid = "--grid" in argv
    argv = [a for a in argv if a != "--grid"]
    if len(argv) == 3:
        audio, lab, text = Path(argv[0]), Path(argv[1]), argv[2]
    else:
        audio, lab, text = (
            MEDIA / "arctic_a0009.wav",
            MEDIA / "arctic_a0009_phone.lab",
            ARCTIC_A0009,
        )
    reference = read_lab(lab)
    started = time.perf_counter()
    hypothesis = align_transcript(audio, text)
    took = time.perf_counter() - started
    errors = boundary_errors(reference, hypothesis) * 1000
    print(f"file: {audio.name}  phones: reference {len(reference)}, aligned {len(hypothesis)}")
    print(f"boundaries compared: {errors.size}")
    print(f"mean absolute boundary error: {errors.mean():.1f} ms")
    print(f"median absolute boundary error: {np.median(errors):.1f} ms")
    print(f"within 20 ms: {100 * np.mean(errors <= 20):.0f} %")
    print(f"alignment time: {took:.2f} s")
    if grid:
        grid_mouth_correlation()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
