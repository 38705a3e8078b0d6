"""Face detection that also finds the small faces of wide shots.

MediaPipe's full-range face detector sees the whole frame letterboxed to 192 x 192 px, and
finds nothing narrower than about 7 of those pixels: a face under 1/28 of the frame's long
side (45 px at 720p, 140 px at 4K) reads as "no face", though it has plenty of pixels to
lip-sync. When the whole frame shows no face, `FaceDetector.tiled` looks again on overlapping
tiles of half the long side: twice the magnification, so faces down to about 1/56 of the long
side. Tiles overlap by more than the whole-frame minimum, so a face too small for the whole
frame lies entirely inside some tile; a box that touches a tile's inner edge is a face cut by
that tile (found whole elsewhere, or too large for tiles) and is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

import numpy as np

from openlipsync.engine.native_logs import chatter_hidden, process
from openlipsync.media.picture import Box, Picture

DETECTOR_INPUT = 192  # px: the full-range model's input side
TILE_OVERLAP = 0.25  # of a tile's side
EDGE_MARGIN = 2  # px: a box this close to a tile's inner edge is cut by it


@dataclass(frozen=True)
class FaceBox:
    """A detected face's box in frame pixels."""

    cx: float
    cy: float
    width: float
    height: float

    @property
    def area(self) -> float:
        return self.width * self.height

    def holds(self, other: FaceBox) -> bool:
        """Whether `other`'s centre is inside this box: the same face, seen twice."""
        dx, dy = abs(other.cx - self.cx), abs(other.cy - self.cy)
        return dx < self.width / 2 and dy < self.height / 2


class FaceDetector:
    """MediaPipe's full-range face detector over a whole frame, or over its tiles."""

    def __init__(self) -> None:
        import mediapipe as mp

        with chatter_hidden():
            self._model = mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=0.5
            )

    def whole(self, picture: Picture) -> list[FaceBox]:
        """The faces the detector sees in the whole frame."""
        return self._detect(picture, (0, 0, picture.width, picture.height))

    def tiled(self, picture: Picture) -> list[FaceBox]:
        """The faces found whole inside a tile, each once (tiles overlap), none for frames
        too small to tile."""
        faces: list[FaceBox] = []
        for tile in tiles(picture.width, picture.height):
            inner = _inner_edges(tile, picture.width, picture.height)
            for face in self._detect(picture, tile):
                if _clear_of(face, inner) and not any(seen.holds(face) for seen in faces):
                    faces.append(face)
        return faces

    def warm_up(self, image: np.ndarray) -> None:
        """Load the model and set up its CPU delegate (its first call's cost)."""
        process(self._model, image)

    def close(self) -> None:
        self._model.close()

    def _detect(self, picture: Picture, box: Box) -> list[FaceBox]:
        x0, y0, x1, y1 = box
        whole = box == (0, 0, picture.width, picture.height)
        image = picture.rgb() if whole else picture.region(box)
        result = process(self._model, np.ascontiguousarray(image))
        width, height = x1 - x0, y1 - y0
        return [
            FaceBox(
                x0 + (b.xmin + b.width / 2) * width,
                y0 + (b.ymin + b.height / 2) * height,
                b.width * width,
                b.height * height,
            )
            for b in (d.location_data.relative_bounding_box for d in result.detections or [])
        ]


def tiles(width: int, height: int) -> list[Box]:
    """Square tiles of half the long side, overlapping by TILE_OVERLAP, covering the frame;
    none when a tile would be smaller than the detector's input (nothing left to magnify)."""
    side = ceil(max(width, height) / 2)
    if side < DETECTOR_INPUT:
        return []
    xs, ys = _starts(width, side), _starts(height, side)
    return [(x, y, min(x + side, width), min(y + side, height)) for y in ys for x in xs]


def _starts(length: int, side: int) -> list[int]:
    """Evenly spaced tile origins along one axis, steps at most (1 - TILE_OVERLAP) * side."""
    if length <= side:
        return [0]
    count = ceil((length - side) / ((1 - TILE_OVERLAP) * side)) + 1
    return [round(i * (length - side) / (count - 1)) for i in range(count)]


Edges = tuple[float, float, float, float]  # x0, y0, x1, y1; infinite where there is none


def _inner_edges(tile: Box, width: int, height: int) -> Edges:
    """The tile's edges inside the frame (a frame edge cuts the face, not the tile): each
    edge that is the frame's own is moved out of reach."""
    x0, y0, x1, y1 = tile
    far = float("inf")
    return (
        x0 if x0 > 0 else -far,
        y0 if y0 > 0 else -far,
        x1 if x1 < width else far,
        y1 if y1 < height else far,
    )


def _clear_of(face: FaceBox, edges: Edges) -> bool:
    x0, y0, x1, y1 = edges
    return (
        face.cx - face.width / 2 > x0 + EDGE_MARGIN
        and face.cy - face.height / 2 > y0 + EDGE_MARGIN
        and face.cx + face.width / 2 < x1 - EDGE_MARGIN
        and face.cy + face.height / 2 < y1 - EDGE_MARGIN
    )
