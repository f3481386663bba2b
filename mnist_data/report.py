"""Describing the processed splits: metrics, class distributions and a grid of sample images.

Everything here works on splits as :func:`mnist_data.artifacts.load_split` returns them. The
metrics are JSON that ``dvc metrics show``/``diff`` read; the class distributions are one small
CSV per split for ``dvc plots show``; the sample grid is a PNG with one row per class.
Statistics over the images run in chunks, so no image-sized float64 temporary is ever made.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from mnist_data.artifacts import Split, load_split
from mnist_data.atomic import atomic_output
from mnist_data.errors import DatasetError

CHUNK = 1 << 20  # values per chunk of the pixel statistics: an 8 MB float64 temporary at most
SIGNIFICANT = 10  # digits kept of float metrics, so the file is the same on every machine
SAMPLES_PER_CLASS = 12
ZOOM = 2
DISTRIBUTION_FIELDS = ("class", "count", "fraction")

_GAP, _MARGIN = 4, 16
_INK, _PAPER, _EMPTY, _MUTED = 30, 255, 232, 110


def pixel_stats(images: npt.NDArray[np.floating], chunk: int = CHUNK) -> tuple[float, float]:
    """Mean and population standard deviation of every pixel value.

    Chunks are combined with Chan et al.'s pairwise update, which stays accurate where the
    textbook ``E[x^2] - E[x]^2`` cancels catastrophically.

    Args:
        images: Float array of any shape (a memory map is read chunk by chunk, never copied whole).
        chunk: Values per chunk; each chunk is copied once to float64.

    Returns:
        ``(mean, std)`` as Python floats; ``(nan, nan)`` for an empty array.
    """
    flat = images.reshape(-1)
    count, mean, m2 = 0, 0.0, 0.0
    for start in range(0, flat.size, chunk):
        block = flat[start : start + chunk].astype(np.float64)
        n = block.size
        block_mean = float(block.mean())
        block -= block_mean
        np.multiply(block, block, out=block)
        block_m2 = float(block.sum())
        delta = block_mean - mean
        total = count + n
        mean += delta * n / total
        m2 += block_m2 + delta * delta * count * n / total
        count = total
    if count == 0:
        return float("nan"), float("nan")
    return mean, (m2 / count) ** 0.5


def class_labels(class_names: Sequence[str]) -> list[str]:
    """Display names of the classes that sort in class order: ``"3"``, or ``"3 Dress"``."""
    return [name if name == str(i) else f"{i} {name}" for i, name in enumerate(class_names)]


def class_counts(split: Split) -> npt.NDArray[np.int64]:
    """int64 (K,): the number of examples of each of the split's ``K`` classes."""
    return np.bincount(np.asarray(split.labels), minlength=len(split.class_names)).astype(np.int64)


def split_metrics(split: Split) -> dict[str, Any]:
    """The metrics of one split: example count, per-class counts, pixel mean and std.

    Class counts are keyed by class name. Pixel statistics are over the normalized values as
    stored (so they move with ``normalize.low``/``high``); ``None`` for an empty split.
    """
    mean, std = pixel_stats(split.images)
    empty = len(split.labels) == 0
    return {
        "num_examples": len(split.labels),
        "class_counts": dict(zip(split.class_names, (int(c) for c in class_counts(split)), strict=True)),
        "pixel_mean": None if empty else _round(mean),
        "pixel_std": None if empty else _round(std),
    }


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's content, read in 1 MiB blocks.

    Raises:
        DatasetError: The file cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError as exc:
        raise DatasetError(path, f"cannot read: {exc.strerror or exc}; run `dvc repro` or `dvc pull` first") from exc
    return digest.hexdigest()


def metrics(splits: Mapping[str, Split], raw_files: Sequence[str | Path], dataset: str) -> dict[str, Any]:
    """All metrics: the dataset name, each split's :func:`split_metrics`, the raw files' digests.

    Args:
        splits: Loaded splits by name, in the order they should appear.
        raw_files: The raw IDX files the splits were made from; keyed by file name.
        dataset: The dataset's name, e.g. ``mnist``.
    """
    out: dict[str, Any] = {"dataset": dataset}
    out.update({name: split_metrics(split) for name, split in splits.items()})
    out["raw"] = {Path(p).name: {"sha256": file_sha256(p), "bytes": Path(p).stat().st_size} for p in raw_files}
    return out


def class_distribution(split: Split) -> list[dict[str, Any]]:
    """Rows ``{class, count, fraction}`` of one split, one per class, in class order."""
    counts = class_counts(split)
    total = int(counts.sum())
    return [
        {"class": label, "count": int(c), "fraction": _round(int(c) / total) if total else 0.0}
        for label, c in zip(class_labels(split.class_names), counts, strict=True)
    ]


def sample_grid(split: Split, title: str, per_class: int = SAMPLES_PER_CLASS, zoom: int = ZOOM) -> Image.Image:
    """A grayscale picture of the first ``per_class`` examples of each class, one row per class.

    Digits are drawn as the dataset stores them (light strokes on black), with pixel values
    scaled back from ``[low, high]`` to 0..255 and each pixel enlarged ``zoom`` times. Each row
    is labelled with its class name and the class's number of examples; a class with fewer
    than ``per_class`` examples shows light grey empty cells.

    Args:
        split: The split to draw from.
        title: Heading drawn above the grid.
        per_class: Examples per row.
        zoom: Screen pixels per image pixel.

    Returns:
        A mode ``"L"`` image.
    """
    if per_class < 1 or zoom < 1:
        raise ValueError(f"per_class and zoom must be >= 1, got {per_class} and {zoom}")
    labels = np.asarray(split.labels)
    counts = class_counts(split)
    title_font, label_font, note_font = _font(18), _font(16), _font(12)
    names = class_labels(split.class_names)
    notes = [f"{int(c):,} examples" for c in counts]
    tile = 28 * zoom
    label_w = max(_text_width(t, f) for t, f in [*((n, label_font) for n in names), *((n, note_font) for n in notes)])
    heading = f"{title}: first {per_class} of each class"
    title_h = 18 + 2 * _GAP + 8
    grid_w = per_class * (tile + _GAP) - _GAP
    width = max(_MARGIN + label_w + 2 * _GAP + grid_w + _MARGIN, 2 * _MARGIN + _text_width(heading, title_font))
    height = _MARGIN + title_h + len(names) * (tile + _GAP) - _GAP + _MARGIN
    canvas = Image.new("L", (width, height), _PAPER)
    draw = ImageDraw.Draw(canvas)
    draw.text((_MARGIN, _MARGIN), heading, fill=_INK, font=title_font)
    left = _MARGIN + label_w + 2 * _GAP
    for k, (name, note) in enumerate(zip(names, notes, strict=True)):
        top = _MARGIN + title_h + k * (tile + _GAP)
        middle = top + tile // 2
        draw.text((left - 2 * _GAP, middle - 1), name, fill=_INK, font=label_font, anchor="rs")
        draw.text((left - 2 * _GAP, middle + 3), note, fill=_MUTED, font=note_font, anchor="rt")
        rows = np.flatnonzero(labels == k)[:per_class]
        pixels = _to_uint8(np.asarray(split.images[rows]), split.low, split.high)
        for j in range(per_class):
            x = left + j * (tile + _GAP)
            if j < len(rows):
                digit = Image.fromarray(np.ascontiguousarray(pixels[j]), mode="L").resize((tile, tile), Image.Resampling.NEAREST)
                canvas.paste(digit, (x, top))
            else:
                draw.rectangle((x, top, x + tile - 1, top + tile - 1), fill=_EMPTY)
    return canvas


def write_report(splits: Mapping[str, tuple[str | Path, str | Path]], raw_files: Sequence[str | Path],
                 metrics_path: str | Path, samples_path: str | Path, dataset: str, title: str,
                 sample_split: str = "test") -> None:
    """Load the splits and write the metrics JSON, one class-distribution CSV per split and the grid.

    Args:
        splits: For each split name, ``(its .npz, the CSV to write its class distribution to)``.
        raw_files: The raw IDX files, for their digests.
        metrics_path: Where the metrics JSON goes.
        samples_path: Where the sample grid PNG goes.
        dataset: The dataset's name (``mnist``), stored in the metrics.
        title: The dataset's title (``MNIST``), drawn on the grid.
        sample_split: Which split the grid shows.

    Raises:
        DatasetError: A split or raw file is missing or invalid, or ``sample_split`` is not a split.
    """
    if sample_split not in splits:
        raise DatasetError(samples_path, f"the sample grid needs split {sample_split!r}, got only {sorted(splits)}")
    loaded = {name: load_split(npz) for name, (npz, _) in splits.items()}
    for name, (_, csv_path) in splits.items():
        _write_bytes(csv_path, _csv_bytes(class_distribution(loaded[name])))
    text = json.dumps(metrics(loaded, raw_files, dataset), indent=2, ensure_ascii=False) + "\n"
    _write_bytes(metrics_path, text.encode("utf-8"))
    png = io.BytesIO()
    sample_grid(loaded[sample_split], f"{title}, {sample_split} split").save(png, format="PNG", optimize=True)
    _write_bytes(samples_path, png.getvalue())


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT}g}")


def _to_uint8(images: npt.NDArray[np.floating], low: float, high: float) -> npt.NDArray[np.uint8]:
    scaled = (images.astype(np.float64) - low) * (255.0 / (high - low))
    return np.rint(scaled).clip(0, 255).astype(np.uint8)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled font: the same glyphs, hence the same PNG bytes, on every machine.
    return ImageFont.load_default(size=size)


def _text_width(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    left, _, right, _ = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    return int(right - left)


def _csv_bytes(rows: Sequence[Mapping[str, Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=DISTRIBUTION_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_output(path) as f:
        f.write(data)
