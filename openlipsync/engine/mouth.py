"""Mouth geometry on the 478-point MediaPipe face mesh, shared by every engine stage.

All measures are divided by the face's inter-ocular distance so that they compare across frames,
zoom levels and people; a value of 0.3 for `open` means the inner lips are 0.3 eye-distances apart.
"""

from __future__ import annotations

import numpy as np

# Landmark indices of the MediaPipe face mesh (canonical 468 + 10 iris points).
LIPS_OUTER = [
    61,
    185,
    40,
    39,
    37,
    0,
    267,
    269,
    270,
    409,
    291,
    375,
    321,
    405,
    314,
    17,
    84,
    181,
    91,
    146,
]
LIPS_INNER = [
    78,
    191,
    80,
    81,
    82,
    13,
    312,
    311,
    310,
    415,
    308,
    324,
    318,
    402,
    317,
    14,
    87,
    178,
    88,
    95,
]
UPPER_INNER_MID, LOWER_INNER_MID = 13, 14
UPPER_OUTER_MID, LOWER_OUTER_MID = 0, 17
MOUTH_LEFT, MOUTH_RIGHT = 61, 291
EYE_OUTER_RIGHT, EYE_OUTER_LEFT = 33, 263
NOSE_TIP, SUBNASALE, CHIN = 1, 2, 152
# Jaw line from ear to ear under the chin (lower half of the face oval).
JAW_LINE = [
    234,
    93,
    132,
    58,
    172,
    136,
    150,
    149,
    176,
    148,
    152,
    377,
    400,
    378,
    379,
    365,
    397,
    288,
    361,
    323,
    454,
]

SHAPE_FIELDS = ("open", "jaw", "width")
"""Columns of a mouth-shape array: inner-lip gap, nose-to-chin distance, mouth-corner distance."""


def face_scale(landmarks: np.ndarray) -> np.ndarray:
    """Inter-ocular distance per frame; (..., 478, 2) -> (...)."""
    return np.linalg.norm(
        landmarks[..., EYE_OUTER_LEFT, :] - landmarks[..., EYE_OUTER_RIGHT, :], axis=-1
    )


def mouth_shape(landmarks: np.ndarray) -> np.ndarray:
    """Measured (open, jaw, width) per frame in eye-distance units; (..., 478, 2) -> (..., 3).

    NaN landmarks (face lost) give NaN rows, so callers can mask them out.
    """
    scale = face_scale(landmarks)

    def dist(a: int, b: int) -> np.ndarray:
        return np.linalg.norm(landmarks[..., a, :] - landmarks[..., b, :], axis=-1)

    columns = (
        dist(UPPER_INNER_MID, LOWER_INNER_MID),
        dist(SUBNASALE, CHIN),
        dist(MOUTH_LEFT, MOUTH_RIGHT),
    )
    return np.stack([c / scale for c in columns], axis=-1).astype(np.float32)
