"""Synthetic MNIST-format archives of any size, written by streaming (one chunk in memory at a time).

Images are 28x28 uint8 with MNIST-like sparsity (about a fifth of the pixels lit, many of those
saturated at 255), so the archives compress about as well as the real ones and the pipeline's
gunzip, hashing and copying see realistic byte counts. Each archive is gzip (level 1, for
speed); the sha256 and size of the uncompressed IDX content are computed on the way and returned
as a ``dataset.files`` override that pins exactly these files, as ``tests/synthetic.py`` does.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CHUNK = 10_000  # images per chunk: 7.8 MB of pixels
_SHAPES = 64


def split_sizes(total: int) -> tuple[int, int]:
    """Train and test counts for ``total`` images, in MNIST's 6:1 proportion."""
    test = total // 7
    return total - test, test


def write_synthetic(folder: Path, n_train: int, n_test: int, seed: int = 0) -> dict[str, dict[str, object]]:
    """Write the four ``.gz`` archives into ``folder``.

    Returns:
        The ``dataset.files`` override (filename, sha256 and size of each uncompressed file).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shapes = _stroke_masks(rng)
    override: dict[str, dict[str, object]] = {}
    for prefix, count in (("train", n_train), ("test", n_test)):
        images = (_image_chunk(rng, shapes, m) for m in _chunks(count))
        labels = (rng.integers(0, 10, m, dtype=np.uint8) for m in _chunks(count))
        override[f"{prefix}_images"] = _write_idx(folder / NAMES[f"{prefix}_images"], 0x0803, (count, 28, 28), images)
        override[f"{prefix}_labels"] = _write_idx(folder / NAMES[f"{prefix}_labels"], 0x0801, (count,), labels)
    return override


def _chunks(count: int) -> Iterator[int]:
    for start in range(0, count, CHUNK):
        yield min(CHUNK, count - start)


def _stroke_masks(rng: np.random.Generator) -> npt.NDArray[np.bool_]:
    """bool (_SHAPES, 28, 28): a few thin arcs each, roughly where MNIST's strokes are."""
    yy, xx = np.mgrid[0:28, 0:28]
    masks = np.zeros((_SHAPES, 28, 28), dtype=bool)
    for k in range(_SHAPES):
        for _ in range(2):
            cy, cx = rng.uniform(9, 19, 2)
            radius, width = rng.uniform(3, 8), rng.uniform(0.9, 1.6)
            masks[k] |= np.abs(np.hypot(yy - cy, xx - cx) - radius) < width
    return masks


def _image_chunk(rng: np.random.Generator, shapes: npt.NDArray[np.bool_], m: int) -> npt.NDArray[np.uint8]:
    values = rng.integers(0, 256, (m, 28, 28), dtype=np.uint8)
    values[values > 128] = 255
    return np.where(shapes[rng.integers(0, len(shapes), m)], values, np.uint8(0))


def _idx_bytes(magic: int, shape: tuple[int, ...], chunks: Iterator[npt.NDArray[np.uint8]]) -> Iterator[bytes]:
    yield struct.pack(">I", magic) + struct.pack(f">{len(shape)}I", *shape)
    for chunk in chunks:
        yield chunk.tobytes()


def _write_idx(path: Path, magic: int, shape: tuple[int, ...], chunks: Iterator[npt.NDArray[np.uint8]],
               level: int = 1) -> dict[str, object]:
    """Gzip an IDX file made of ``magic``, ``shape`` and the uint8 ``chunks``; return its pin."""
    digest = hashlib.sha256()
    size = 0
    deflate = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    with open(path, "wb") as out:
        for data in _idx_bytes(magic, shape, chunks):
            digest.update(data)
            size += len(data)
            out.write(deflate.compress(data))
        out.write(deflate.flush())
    return {"filename": path.name, "sha256": digest.hexdigest(), "size": size}
