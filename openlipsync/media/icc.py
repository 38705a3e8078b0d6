"""Photos in wide-gamut colour brought to sRGB, the gamut the output (BT.709) is shown in.

A phone's photo (an iPhone's HEIC or JPEG, many Android phones' too) is in Display P3 and says
so in its embedded ICC profile. FFmpeg and libheif hand over its numbers as they are, and read
as sRGB they came out duller than the phone shows them: reds, lips and skin lose saturation.
LittleCMS (in Pillow) converts with the profile, once: a photo is one picture. A profile that
is sRGB already, or that LittleCMS cannot read, leaves the numbers as they are.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_PROBE = np.array(  # greys, primaries, skin and lips: a profile that moves none is sRGB
    [
        [
            [0, 0, 0],
            [128, 128, 128],
            [255, 255, 255],
            [255, 0, 0],
            [0, 255, 0],
            [0, 0, 255],
            [224, 172, 150],
            [150, 60, 60],
        ]
    ],
    np.uint8,
)


def srgb_converter(profile: bytes | None) -> Callable[[np.ndarray], np.ndarray] | None:
    """RGB uint8 (H, W, 3) in the colours of `profile` (the photo's ICC bytes, None when it has
    none) to sRGB; None when there is nothing to convert."""
    if not profile:
        return None
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        transform = ImageCms.buildTransform(source, _SRGB, "RGB", "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None  # a broken profile: the numbers as they are, as every viewer without CMS
    if np.abs(_apply(transform, _PROBE).astype(int) - _PROBE).max() <= 1:
        return None
    return lambda rgb: _apply(transform, rgb)


def embedded_profile(path: Path) -> bytes | None:
    """The ICC profile a still image file carries (JPEG, PNG, WebP, TIFF), read from its
    headers by Pillow; None when it has none or Pillow cannot read the file."""
    try:
        with Image.open(path) as image:
            return image.info.get("icc_profile") or None
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _apply(transform: ImageCms.ImageCmsTransform, rgb: np.ndarray) -> np.ndarray:
    image = ImageCms.applyTransform(Image.fromarray(np.ascontiguousarray(rgb)), transform)
    return np.asarray(image)
