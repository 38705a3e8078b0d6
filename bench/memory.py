"""Peak memory against input length: does a longer generation need more RAM?

Issue #2's bar is "peak memory under 2 GiB for any length" (up to GenerateRequest.max_seconds,
3 h). Whatever the engine keeps per frame or per audio sample adds up over hours, so this runs
`openlipsync generate` on the same real clip looped to two or more lengths (with real speech
looped to the same length as the driving audio), each in its own process, and prints each run's
peak RSS and the growth in MiB per second of video between the shortest and the longest run.
Resolution hardly changes the growth (frames are streamed), so 360p gives it quickly; one
long 1080p run confirms the absolute peak.

    python -m bench.memory [--height 360] [--minutes 2,10] [--model lipsync-2]
                           [--sync-mode loop] [--speaker auto] [--keep DIR]

`--speaker auto` (active_speaker_detection auto_detect) measures the path that tracks every
face of the video before choosing one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

from bench.engine import MEDIA, make_input

REPO = Path(__file__).resolve().parents[1]
SPEECH = ("jfk_inaugural.flac", "librivox_austen_0870.wav", "arctic_a0009.wav")
RATE = 16_000


def write_speech(path: Path, seconds: float, names: tuple[str, ...] = SPEECH) -> Path:
    """Real read speech (`names` in ../shared/media/speech) with short pauses, looped to
    `seconds` (16 kHz mono WAV)."""
    from openlipsync.media.audio import load_audio

    parts = [load_audio(MEDIA / "speech" / name, RATE).samples for name in names]
    gap = np.zeros(int(0.4 * RATE), np.float32)
    one = np.concatenate([np.concatenate([p, gap]) for p in parts])
    need = round(seconds * RATE)
    samples = np.tile(one, need // len(one) + 1)[:need]
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def peak_rss(video: Path, audio: Path, out: Path, options: list[str]) -> tuple[int, float]:
    """(peak RSS in bytes, wall seconds) of one `openlipsync generate` in a child process;
    `options`: more of its command line."""
    command = [str(Path(sys.executable).with_name("openlipsync")), "generate"]
    command += ["--video", str(video), "--audio", str(audio), "-o", str(out), "--quiet", *options]
    began = time.perf_counter()
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe nobody reads while it runs
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - began
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            raise RuntimeError(f"generate failed: {errors.read().decode()[-2000:]}")
    return usage.ru_maxrss * 1024, wall  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--minutes", default="2,10", help="comma-separated input lengths")
    parser.add_argument("--model", default="lipsync-2")
    parser.add_argument("--sync-mode", default="loop")
    parser.add_argument("--speaker", help="generate --speaker (e.g. auto)")
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the inputs in this folder")
    args = parser.parse_args()
    lengths = sorted(float(m) * 60 for m in args.minutes.split(","))
    options = ["--model", args.model, "--sync-mode", args.sync_mode]
    options += ["--speaker", args.speaker] if args.speaker else []
    with tempfile.TemporaryDirectory(prefix="membench-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        peaks = []
        for seconds in lengths:
            video = folder / f"src_{args.height}p_{seconds:.0f}s.mp4"
            audio = folder / f"speech_{seconds:.0f}s.wav"
            if not video.exists():
                make_input(args.height, seconds, video)
            if not audio.exists():
                write_speech(audio, seconds)
            peak, wall = peak_rss(video, audio, folder / "out.mp4", options)
            peaks.append(peak)
            mib = peak / 2**20
            print(f"{args.height}p {seconds / 60:5.1f} min: peak RSS {mib:7.0f} MiB ({wall:.0f} s)")
        if len(lengths) > 1:
            growth = (peaks[-1] - peaks[0]) / (lengths[-1] - lengths[0]) / 2**20
            # A peak that differs by less than run-to-run noise (tens of MiB) is no growth.
            three_hours = max(peaks) / 2**20 + max(growth, 0.0) * (3 * 3600 - lengths[-1])
            print(f"growth {growth:.3f} MiB/s of video; 3 h extrapolated: {three_hours:.0f} MiB")


if __name__ == "__main__":
    main()
