"""Pixel scaling and the train/validation split, exact and bit-reproducible.

Scaling goes through a 256-entry table computed in float64 and rounded once to float32, so each
value is the float32 nearest to ``low + x * (high - low) / 255`` on every machine, and no
float64 image-sized temporary is ever made.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from mnist_data.errors import DatasetError, ParamsError

_CHUNK = 1 << 22


def scale_table(low: float, high: float) -> npt.NDArray[np.float32]:
    """float32 (256,): the normalized value of each pixel value 0..255."""
    return (low + np.arange(256, dtype=np.float64) * ((high - low) / 255.0)).astype(np.float32)


def normalize(images: npt.NDArray[np.uint8], low: float, high: float) -> npt.NDArray[np.float32]:
    """Map uint8 pixels 0..255 linearly onto [low, high].

    Args:
        images: uint8, any shape.
        low: Value pixel 0 maps to.
        high: Value pixel 255 maps to; must exceed ``low``.

    Returns:
        float32, same shape, values in [low, high].
    """
    if images.dtype != np.uint8:
        raise TypeError(f"normalize expects uint8 images, got {images.dtype}")
    return scale_table(low, high)[images]


def normalize_blocks(images: npt.NDArray[np.uint8], low: float, high: float,
                     rows: int = 4096) -> Iterator[npt.NDArray[np.float32]]:
    """:func:`normalize` applied ``rows`` images at a time, so no image-sized result is ever allocated."""
    for start in range(0, len(images), rows):
        yield normalize(images[start : start + rows], low, high)


def denormalize(images: npt.NDArray[np.float32], low: float, high: float, source: str = "<array>") -> npt.NDArray[np.uint8]:
    """Recover the uint8 pixels that :func:`normalize` mapped onto [low, high], exactly.

    Raises:
        DatasetError: A value is not one that ``normalize(low, high)`` produces.
    """
    table = scale_table(low, high)
    out = np.empty(images.shape, dtype=np.uint8)
    src, dst = images.reshape(-1), out.reshape(-1)
    scale = np.float32(255.0 / (high - low))
    for start in range(0, src.size, _CHUNK):
        chunk = src[start : start + _CHUNK]
        pixels = np.rint((chunk - np.float32(low)) * scale).clip(0, 255).astype(np.uint8)
        if not np.array_equal(table[pixels], chunk):
            bad = start + int(np.argmax(table[pixels] != chunk))
            raise DatasetError(source, f"value {float(src[bad])} at flat index {bad} is not a pixel scaled onto [{low}, {high}]")
        dst[start : start + _CHUNK] = pixels
    return out


def split_validation(n: int, validation_size: int) -> tuple[slice, slice]:
    """Slices of the training rows: (validation = first ``validation_size``, train = the rest)."""
    if not 0 <= validation_size <= n:
        raise ParamsError(
            "split.validation_size", f"is {validation_size}, expected 0..{n} (the training file has {n} examples)"
        )
    return slice(0, validation_size), slice(validation_size, n)
