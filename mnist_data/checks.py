"""Checks that arrays form an MNIST-format dataset: shapes, dtypes, label range, counts.

Used by the decode stage on freshly decoded IDX data and by the loader on every load, so both
reject the same things with the same messages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from mnist_data.errors import DatasetError

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
_CHUNK = 1 << 22  # elements per chunk when scanning, to keep temporaries small


def check_images(images: npt.NDArray, source: str | Path, dtype: npt.DTypeLike = np.uint8) -> None:
    """Images must be (N, 28, 28) of ``dtype``."""
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DatasetError(source, f"images have shape {images.shape}, expected (N, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]})")
    if images.dtype != np.dtype(dtype):
        raise DatasetError(source, f"images have dtype {images.dtype}, expected {np.dtype(dtype)}")


def check_labels(labels: npt.NDArray, source: str | Path, num_classes: int = NUM_CLASSES) -> None:
    """Labels must be (N,) uint8, each in 0..num_classes-1."""
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DatasetError(source, f"labels have shape {labels.shape} and dtype {labels.dtype}, expected (N,) uint8")
    if labels.size and int(labels.max()) >= num_classes:
        bad = int(np.argmax(labels >= num_classes))
        raise DatasetError(source, f"label {int(labels[bad])} at index {bad} is outside 0..{num_classes - 1}")


def check_counts(images: npt.NDArray, labels: npt.NDArray, source: str | Path) -> None:
    """There must be exactly one label per image."""
    if len(images) != len(labels):
        raise DatasetError(source, f"{len(images)} images but {len(labels)} labels; expected equal counts")


def check_range(images: npt.NDArray, low: float, high: float, source: str | Path) -> None:
    """Every value must lie in [low, high] as float32 (the ends of the scale); NaN fails too.

    Compared in the images' own dtype whatever numpy's promotion rules, and in chunks: no
    full-size temporaries.
    """
    flat = images.reshape(-1)
    low_, high_ = flat.dtype.type(low), flat.dtype.type(high)
    for start in range(0, flat.size, _CHUNK):
        chunk = flat[start : start + _CHUNK]
        lo, hi = chunk.min(), chunk.max()
        if not (lo >= low_ and hi <= high_):  # NaN makes both comparisons false
            bad = start + int(np.argmax(~((chunk >= low_) & (chunk <= high_))))
            raise DatasetError(source, f"image value {float(flat[bad])} at flat index {bad} is outside [{low}, {high}] (or NaN)")
