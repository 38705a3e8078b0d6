"""Model ids of the API mapped to engine configurations (speed against care)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    quality: str  # renderer quality: fast | standard | pro
    crf: int  # x264 constant rate factor of the output
    x264: str  # x264 speed preset: the encoder is a third of the run time at 720p


# The same frames give the same bytes with ultrafast and superfast, but not with veryfast (pro):
# the x264 inside PyAV's wheels reads uninitialised stack memory when mbtree, B-frames and
# subpel refinement >= 2 are all on (valgrind: "use of uninitialised value ... created by a
# stack allocation" under x264_encoder_encode; MALLOC_PERTURB_ changes the bitstream). The
# pictures are the same before encoding, and differ by the encoder's noise after. Turning off
# mbtree or subme 2 makes it repeatable but costs 0.3-1 dB at the same size, so pro keeps it.
# tests/test_media_encode.py holds the other presets to repeatable output.


PRESETS: dict[str, Preset] = {
    "lipsync-1.9.0-beta": Preset(quality="fast", crf=20, x264="ultrafast"),
    "lipsync-2": Preset(quality="standard", crf=18, x264="superfast"),
    "lipsync-2-pro": Preset(quality="pro", crf=16, x264="veryfast"),
    "sync-3": Preset(quality="standard", crf=18, x264="superfast"),
    "react-1": Preset(quality="standard", crf=18, x264="superfast"),
}


def preset_for(model: str) -> Preset:
    return PRESETS.get(model, PRESETS["lipsync-2"])
