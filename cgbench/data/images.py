"""Image files as the suite reads them, in one place: opened behind one guard (an empty, cut-short
or non-image file is a one-line :class:`~cgbench.errors.DataError` naming it, wherever it sorts),
and converted to 8-bit RGB or label ids only where the conversion is exact.

Pillow opens images in many modes. Those with one exact RGB value per pixel convert: RGB, grey
(L), 1-bit, palette (P); grey of more bits (I;16, I, F) when every value is an integer of 0-255;
and a mode with transparency (RGBA, LA, PA, palette with a transparent entry) when every pixel is
opaque. Any other (a transparent pixel, 16-bit values above 255, CMYK, YCbCr, LAB, HSV: colour
spaces whose RGB depends on a profile) is refused with the fix, never guessed.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from cgbench.errors import DataError

#: Modes with one exact RGB value per pixel.
EXACT_RGB = ("RGB", "L", "1", "P")
#: Grey modes of more than 8 bits: exact when every value is an integer of 0-255.
WIDE_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
#: Modes with an alpha channel: exact when every pixel is opaque.
WITH_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


def open_image(path: Path, data: bytes | None = None) -> Image.Image:
    """The image in ``path`` (or its bytes ``data``), decoded; an empty, truncated or non-image
    file, or one too large to decode safely, is a one-line error naming the file."""
    try:
        image = Image.open(BytesIO(data) if data is not None else path)
        image.load()
        return image
    except Image.UnidentifiedImageError:
        reason = "an empty file" if not _size(path, data) else "not a PNG or JPEG image"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        reason = str(err) or type(err).__name__
    raise DataError(f"cannot read image {path} ({reason}): re-generate or replace the file")


def _size(path: Path, data: bytes | None) -> int:
    try:
        return len(data) if data is not None else path.stat().st_size
    except OSError:
        return 0


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of the image in ``path``, behind the same guard as :func:`open_image`."""
    with open_image(path) as image:
        return image.size


def _refuse(path: Path, problem: str, fix: str) -> DataError:
    return DataError(f"image {path} {problem}; {fix}")


def _opaque(image: Image.Image, path: Path) -> Image.Image:
    """``image`` without its alpha channel, which must be opaque everywhere."""
    if image.mode == "P":
        image = image.convert("RGBA")  # the palette's transparent entry becomes alpha
    alpha = np.asarray(image.getchannel("A"))
    if alpha.min(initial=255) < 255:
        raise _refuse(path, f"has {int((alpha < 255).sum())} transparent pixel(s) (mode {image.mode})",
                      "save it without transparency, as RGB")
    return image.convert("RGB")


def _narrow_grey(image: Image.Image, path: Path) -> Image.Image:
    """A grey image of more than 8 bits as 8-bit grey, when every value fits exactly."""
    values = np.asarray(image)
    if values.size and (values.min() < 0 or values.max() > 255 or not np.array_equal(values, np.round(values))):
        raise _refuse(path, f"is a {image.mode} grey image with values of {values.min():g} to {values.max():g}, "
                      "which 8 bits cannot hold exactly", "save it as 8-bit (grey or RGB)")
    return Image.fromarray(values.astype(np.uint8), "L")


def rgb_image(image: Image.Image, path: Path) -> Image.Image:
    """``image`` as an 8-bit RGB image, converted exactly (see the module) or refused in one line."""
    if image.mode in WITH_ALPHA or (image.mode == "P" and "transparency" in image.info):
        return _opaque(image, path)
    if image.mode in WIDE_GREY:
        image = _narrow_grey(image, path)
    if image.mode not in EXACT_RGB:
        raise _refuse(path, f"is a {image.mode} image, whose RGB colours cannot be computed exactly",
                      "save it as RGB (8 bits per channel)")
    return image if image.mode == "RGB" else image.convert("RGB")


def rgb_array(path: Path) -> np.ndarray:
    """The image in ``path`` as a writable (H, W, 3) uint8 RGB array (see :func:`rgb_image`)."""
    with open_image(path) as image:
        return np.array(rgb_image(image, path))


def label_ids(image: Image.Image, path: Path) -> np.ndarray:
    """A label-id image (one id of 0-255 per pixel: grey of any integer width, or palette indices)
    as a writable (H, W) uint8 array; anything else is refused in one line."""
    if image.mode not in ("L", "P", "I;16", "I;16L", "I;16B", "I;16N", "I"):
        raise _refuse(path, f"is a {image.mode} image, not a single-channel label-id image",
                      "replace it with the dataset's *_gtFine_labelIds.png")
    ids = np.asarray(image)
    if ids.size and (ids.min() < 0 or ids.max() > 255):
        raise _refuse(path, f"holds label ids up to {ids.max()}, beyond 255",
                      "replace it with the dataset's *_gtFine_labelIds.png")
    return ids.astype(np.uint8)
