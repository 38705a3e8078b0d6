"""HDR video (PQ or HLG) shown in SDR: what an H.264 output can carry and every player shows.

Phones record HDR by default (an iPhone's camera writes 10-bit HEVC in HLG). The output is
8-bit H.264, and 8 bits of PQ or HLG band in smooth gradients, while players that ignore the
tags (and many that honour them on SDR screens) show such a picture washed out and grey.
So the reader converts HDR pictures to BT.709 SDR as it decodes them, the way streaming
services make the SDR renditions of HDR uploads (ITU-R BT.2408's levels): HDR reference white
(203 cd/m2) becomes SDR white, everything up to `KNEE` of it (faces, skin, most of a scene)
keeps its exact brightness and colour, brighter highlights roll off smoothly to white, and
BT.2020 colours outside BT.709 are desaturated toward their own luminance, keeping their hue.

The mapping is one 3D table (`LUT_POINTS` per side, tetrahedral interpolation) applied by
FFmpeg's lut3d filter between two swscale conversions: about 11 ms of wall time a 1080p frame
(bench/hdr.py), where the same arithmetic in numpy took 200. The engine downstream sees an
ordinary 8-bit BT.709 video.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from fractions import Fraction
from pathlib import Path

import av
import av.filter
import numpy as np

from openlipsync.media.probe import Colour

PQ, HLG = 16, 18
"""AVColorTransferCharacteristic of SMPTE ST 2084 and ARIB STD-B67: the two HDR transfers."""
SDR = Colour(matrix=1, primaries=1, transfer=1)
"""BT.709 throughout: what a tone-mapped picture is."""

REFERENCE_WHITE = 203.0  # cd/m2: HDR reference white (BT.2408), SDR's 100 %
HLG_PEAK = 1000.0  # cd/m2: the nominal HLG display, whose system gamma is 1.2
KNEE = 0.75  # of reference white: below it SDR shows what HDR showed, above it highlights roll off
LUT_POINTS = 33  # 65 changes no pixel by more than the 4:2:0 output does, at 8x the table

_BT2020_LUMA = np.array([0.2627, 0.6780, 0.0593])
_BT709_LUMA = np.array([0.2126, 0.7152, 0.0722])
_BT2020_TO_BT709 = np.array(
    [
        [1.6605, -0.5876, -0.0728],
        [-0.1246, 1.1329, -0.0083],
        [-0.0182, -0.1006, 1.1187],
    ]
)


def is_hdr(colour: Colour) -> bool:
    return colour.transfer in (PQ, HLG)


def shown_colour(colour: Colour) -> Colour:
    """How the reader's pictures of a video of `colour` are coded."""
    return SDR if is_hdr(colour) else colour


def pq_to_light(signal: np.ndarray) -> np.ndarray:
    """SMPTE ST 2084 EOTF: signal 0..1 to cd/m2."""
    m1, m2, c1, c2, c3 = 0.1593017578125, 78.84375, 0.8359375, 18.8515625, 18.6875
    power = np.power(np.clip(signal, 0, 1), 1 / m2)
    return 10000 * np.power(np.maximum(power - c1, 0) / (c2 - c3 * power), 1 / m1)


def hlg_to_light(signal: np.ndarray) -> np.ndarray:
    """ARIB STD-B67 inverse OETF then the BT.2100 OOTF of a 1000 cd/m2 display: RGB (..., 3)
    signal 0..1 to cd/m2 (the OOTF works on the scene luminance, so on all three channels)."""
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    x = np.clip(signal, 0, 1)
    scene = np.where(x <= 0.5, x * x / 3, (np.exp((x - c) / a) + b) / 12)
    luminance = np.maximum(scene @ _BT2020_LUMA, 1e-12)[..., None]
    return HLG_PEAK * luminance**0.2 * scene


def roll_off(level: np.ndarray) -> np.ndarray:
    """Relative level (1 = reference white) to SDR level 0..1: the identity up to KNEE, then
    a shoulder with the same slope there that approaches white (1.0 is 0.91, 2.0 is 0.998)."""
    span = 1 - KNEE
    above = KNEE + span * (1 - np.exp(-(np.maximum(level, KNEE) - KNEE) / span))
    return np.where(level <= KNEE, level, above)


def to_sdr(signal: np.ndarray, transfer: int) -> np.ndarray:
    """HDR R'G'B' (BT.2020, ..., 3, values 0..1) to BT.709 SDR R'G'B' (display gamma 2.4)."""
    light = pq_to_light(signal) if transfer == PQ else hlg_to_light(signal)
    rgb = (light / REFERENCE_WHITE) @ _BT2020_TO_BT709.T
    rgb = _into_gamut(rgb)
    peak = rgb.max(axis=-1, keepdims=True)
    rgb = rgb * np.where(peak > 0, roll_off(peak) / np.maximum(peak, 1e-12), 0)
    return np.clip(rgb, 0, 1) ** (1 / 2.4)


def _into_gamut(rgb: np.ndarray) -> np.ndarray:
    """Colours with a negative BT.709 component moved toward their luminance until none is:
    hue kept, saturation given up (clipping the channel would shift the hue instead)."""
    luminance = np.maximum(rgb @ _BT709_LUMA, 0)[..., None]
    low = rgb.min(axis=-1, keepdims=True)
    keep = np.where(low < 0, luminance / np.maximum(luminance - low, 1e-12), 1)
    return luminance + (rgb - luminance) * keep


_CHROMA = "bilinear"  # for 4:2:0 <-> 4:4:4: swscale's bicubic cost a third more, unseen


class ToneMapper:
    """Frames of an HDR video as 8-bit 4:2:0 BT.709 SDR frames. Thread-safe (one graph;
    a new one when the stream changes size or format: a filter graph is built for one)."""

    def __init__(self, transfer: int) -> None:
        self._table = _table_file(transfer)
        self._lock = threading.Lock()
        self._graph: av.filter.Graph | None = None
        self._shape: tuple | None = None

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        shape = (frame.width, frame.height, frame.format.name, frame.colorspace, frame.color_range)
        with self._lock:
            if self._graph is None or shape != self._shape:
                self._graph, self._shape = self._build(frame), shape
            self._graph.push(frame)
            out = self._graph.pull()
        out.color_primaries, out.color_trc = SDR.primaries, SDR.transfer
        return out

    def _build(self, frame: av.VideoFrame) -> av.filter.Graph:
        # an HDR stream's matrix is BT.2020's unless it says otherwise
        matrix = "bt709" if int(frame.colorspace) == 1 else "bt2020"
        rng = "pc" if int(frame.color_range) == 2 else "tv"
        graph = av.filter.Graph()
        chain = [
            graph.add_buffer(
                width=frame.width,
                height=frame.height,
                format=frame.format.name,
                time_base=frame.time_base or Fraction(1, 1000),
            ),
            graph.add("scale", f"in_color_matrix={matrix}:in_range={rng}:flags={_CHROMA}"),
            graph.add("format", "gbrp16le"),
            graph.add("lut3d", f"file={self._table}:interp=tetrahedral"),
            graph.add("scale", f"out_color_matrix=bt709:out_range=tv:flags={_CHROMA}"),
            graph.add("format", "yuv420p"),
            graph.add("buffersink"),
        ]
        for upstream, downstream in zip(chain, chain[1:], strict=False):
            upstream.link_to(downstream)
        graph.configure()
        return graph


_tables: dict[int, Path] = {}
_tables_lock = threading.Lock()


def _table_file(transfer: int) -> Path:
    """The .cube file of `to_sdr` for `transfer` (lut3d reads tables from files only), named by
    its content in a folder of this user's under the temporary directory: written once, then
    shared by every process (a worker's pool processes end without running atexit hooks, so a
    private folder per process would be left behind by each)."""
    with _tables_lock:
        if transfer not in _tables:
            _tables[transfer] = _write_table(transfer)
        return _tables[transfer]


def _write_table(transfer: int) -> Path:
    axis = np.linspace(0, 1, LUT_POINTS)
    blue, green, red = np.meshgrid(axis, axis, axis, indexing="ij")  # .cube: red runs fastest
    grid = np.stack([red, green, blue], axis=-1).reshape(-1, 3)
    values = to_sdr(grid, transfer)
    text = f"LUT_3D_SIZE {LUT_POINTS}\n" + "%.6f %.6f %.6f\n" * len(values) % tuple(values.ravel())
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"openlipsync-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"to-sdr-{transfer}-{digest}.cube"
    if not path.is_file() or path.read_text() != text:  # absent, or damaged since
        part = folder / f".{path.name}.{os.getpid()}.part"
        part.write_text(text)
        os.replace(part, path)  # whole or absent, whichever process writes it
    return path
