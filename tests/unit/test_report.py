"""The report: exact pixel statistics in bounded memory, class counts, digests, CSVs and the sample grid."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_data.artifacts import Split, load_split, save_split
from mnist_data.errors import DatasetError
from mnist_data.report import (
    class_distribution,
    class_labels,
    file_sha256,
    metrics,
    pixel_stats,
    sample_grid,
    split_metrics,
    write_report,
)
from mnist_data.transforms import scale_table
from stages.report import main as report_main

ROOT = Path(__file__).resolve().parents[2]
DIGITS = tuple(str(i) for i in range(10))
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
PAPER = 255


def _pixels(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """uint8 (N, 28, 28) images in 0..199 (never the grid's white paper), each one different."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 200, (len(labels), 28, 28), dtype=np.uint8)


def _split(tmp_path: Path, name: str, labels: list[int], low: float = -0.5, high: float = 0.5,
           class_names: tuple[str, ...] = DIGITS, seed: int = 0) -> tuple[Split, np.ndarray]:
    """Save and load a real split file; return it with the uint8 pixels it was made from."""
    lab = np.array(labels, dtype=np.uint8)
    pixels = _pixels(lab, seed)
    path = tmp_path / f"{name}.npz"
    save_split(path, scale_table(low, high)[pixels], lab, low, high, class_names)
    return load_split(path), pixels


# --- pixel statistics -------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 784, 1000, 1 << 20])
def test_pixel_stats_equal_numpy_in_float64_for_any_chunking(chunk):
    images = np.random.default_rng(1).normal(0.2, 0.3, (50, 28, 28)).astype(np.float32)
    mean, std = pixel_stats(images, chunk=chunk)
    assert mean == pytest.approx(images.astype(np.float64).mean(), rel=1e-12, abs=1e-15)
    assert std == pytest.approx(images.astype(np.float64).std(), rel=1e-12)


def test_pixel_stats_stay_accurate_far_from_zero():
    # E[x^2] - E[x]^2 would lose every digit here; the pairwise update must not.
    images = (1e4 + np.random.default_rng(2).normal(0, 1e-2, 400 * 784)).astype(np.float32).reshape(-1, 28, 28)
    exact = images.astype(np.float64)
    mean, std = pixel_stats(images, chunk=4096)
    assert mean == pytest.approx(exact.mean(), rel=1e-13)
    assert std == pytest.approx(exact.std(), rel=1e-9)


def test_pixel_stats_of_nothing_are_nan():
    mean, std = pixel_stats(np.empty((0, 28, 28), np.float32))
    assert np.isnan(mean) and np.isnan(std)


def test_pixel_stats_make_no_image_sized_float64_temporary():
    images = np.zeros((3000, 28, 28), np.float32)  # 9.4 MB; a float64 copy would be 18.8 MB
    tracemalloc.start()
    try:
        pixel_stats(images, chunk=1 << 16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 8 * (1 << 16) + 100_000, f"peak {peak} bytes"


# --- metrics and distributions ---------------------------------------------------------------------


def test_split_metrics_count_by_class_name_and_describe_the_stored_values(tmp_path):
    split, pixels = _split(tmp_path, "test", [3, 1, 3, 9, 3, 0], class_names=FASHION)
    m = split_metrics(split)
    assert m["num_examples"] == 6
    assert m["class_counts"] == dict.fromkeys(FASHION, 0) | {"Dress": 3, "Trouser": 1, "Ankle boot": 1, "T-shirt/top": 1}
    values = scale_table(-0.5, 0.5)[pixels].astype(np.float64)
    assert m["pixel_mean"] == pytest.approx(values.mean(), rel=1e-9)
    assert m["pixel_std"] == pytest.approx(values.std(), rel=1e-9)


def test_an_empty_split_has_counts_but_no_pixel_statistics(tmp_path):
    split, _ = _split(tmp_path, "validation", [])
    m = split_metrics(split)
    assert m == {"num_examples": 0, "class_counts": dict.fromkeys(DIGITS, 0), "pixel_mean": None, "pixel_std": None}
    assert json.loads(json.dumps(m)) == m  # valid JSON: no NaN
    assert [r["fraction"] for r in class_distribution(split)] == [0.0] * 10


def test_metrics_hold_each_split_and_the_raw_files_digests(tmp_path):
    train, _ = _split(tmp_path, "train", [0, 1, 1])
    test, _ = _split(tmp_path, "test", [2], seed=1)
    raw = tmp_path / "t10k-labels-idx1-ubyte"
    raw.write_bytes(b"\x00\x00\x08\x01" + bytes(3_000_000))  # crosses the 1 MiB read blocks
    m = metrics({"train": train, "test": test}, [raw], "mnist")
    assert list(m) == ["dataset", "train", "test", "raw"]
    assert m["dataset"] == "mnist"
    assert m["train"]["class_counts"]["1"] == 2 and m["test"]["num_examples"] == 1
    assert m["raw"] == {raw.name: {"sha256": hashlib.sha256(raw.read_bytes()).hexdigest(), "bytes": 3_000_004}}


def test_a_missing_raw_file_is_a_dataset_error_naming_it(tmp_path):
    with pytest.raises(DatasetError, match=r"nowhere-idx1-ubyte: cannot read: .*run `dvc repro` or `dvc pull`"):
        file_sha256(tmp_path / "nowhere-idx1-ubyte")


def test_class_distribution_rows_are_in_class_order_with_sortable_labels(tmp_path):
    split, _ = _split(tmp_path, "train", [1, 1, 1, 4], class_names=FASHION)
    rows = class_distribution(split)
    assert [r["class"] for r in rows] == ["0 T-shirt/top", "1 Trouser", "2 Pullover", "3 Dress", "4 Coat",
                                          "5 Sandal", "6 Shirt", "7 Sneaker", "8 Bag", "9 Ankle boot"]
    assert [r["count"] for r in rows] == [0, 3, 0, 0, 1, 0, 0, 0, 0, 0]
    assert [r["fraction"] for r in rows] == [0, 0.75, 0, 0, 0.25, 0, 0, 0, 0, 0]
    assert class_labels(DIGITS) == list(DIGITS)  # digits need no id in front


# --- the sample grid ------------------------------------------------------------------------------


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _tiles(canvas: np.ndarray, rows: int, cols: int, size: int) -> list[list[np.ndarray]]:
    """Locate the grid from the picture alone: tiles are ink from edge to edge, paper lies between them."""
    bottom = int(np.flatnonzero((canvas != PAPER).any(axis=1))[-1]) + 1
    col_runs = _runs((canvas[bottom - size : bottom] != PAPER).any(axis=0))[-cols:]
    assert all(length == size for _, length in col_runs), col_runs
    x0, x1 = col_runs[0][0], col_runs[-1][0] + size
    row_runs = _runs((canvas[:, x0:x1] != PAPER).any(axis=1))[-rows:]
    assert all(length == size for _, length in row_runs), row_runs
    return [[canvas[y : y + size, x : x + size] for x, _ in col_runs] for y, _ in row_runs]


def test_sample_grid_shows_the_first_examples_of_each_class_row_by_row(tmp_path):
    labels = [k for _ in range(4) for k in range(10)] + [7, 7]  # class 7 has 6 examples, the others 4
    split, pixels = _split(tmp_path, "test", labels, low=0.0, high=1.0)
    image = sample_grid(split, "MNIST, test split", per_class=5, zoom=2)
    assert image.mode == "L"
    canvas = np.asarray(image)
    tiles = _tiles(canvas, rows=10, cols=5, size=56)
    lab = np.array(labels)
    for k in range(10):
        which = np.flatnonzero(lab == k)
        for j in range(5):
            if j < len(which):
                expected = np.kron(pixels[which[j]], np.ones((2, 2), np.uint8))  # each pixel as a 2x2 block
                np.testing.assert_array_equal(tiles[k][j], expected, err_msg=f"class {k}, example {j}")
            else:
                assert (tiles[k][j] == tiles[k][j][0, 0]).all() and tiles[k][j][0, 0] > 200, "empty cell"
    first_tile_x = _runs((canvas[-100:] != PAPER).any(axis=0))[-5][0]
    for k, (top, height) in enumerate(_runs((canvas[:, first_tile_x:] != PAPER).any(axis=1))[-10:]):
        assert (canvas[top : top + height, :first_tile_x] < 128).any(), f"row {k} has no label"


def test_sample_grid_undoes_any_normalize_range(tmp_path):
    a, _ = _split(tmp_path, "a", list(range(10)), low=-0.5, high=0.5)
    b, _ = _split(tmp_path, "b", list(range(10)), low=-3.0, high=7.5)  # same pixels, another range
    assert np.array_equal(np.asarray(sample_grid(a, "t", per_class=1)), np.asarray(sample_grid(b, "t", per_class=1)))


def test_sample_grid_makes_room_for_long_class_names(tmp_path):
    short, _ = _split(tmp_path, "digits", list(range(10)))
    long, _ = _split(tmp_path, "fashion", list(range(10)), class_names=FASHION)
    narrow, wide = sample_grid(short, "x", per_class=3), sample_grid(long, "x", per_class=3)
    assert wide.width > narrow.width and wide.height == narrow.height
    _tiles(np.asarray(wide), rows=10, cols=3, size=56)  # labels never run into the tiles


# --- writing the report, and the stage ------------------------------------------------------------


def _files(tmp_path: Path) -> tuple[dict[str, tuple[Path, Path]], list[Path]]:
    splits = {}
    for seed, (name, labels) in enumerate({"train": [0, 1, 2, 2], "validation": [1], "test": [0, 1, 2, 3, 3]}.items()):
        _split(tmp_path, name, labels, seed=seed)
        splits[name] = (tmp_path / f"{name}.npz", tmp_path / "reports" / "classes" / f"{name}.csv")
    raw = [tmp_path / "train-images-idx3-ubyte", tmp_path / "t10k-labels-idx1-ubyte"]
    for i, p in enumerate(raw):
        p.write_bytes(bytes([i]) * 100)
    return splits, raw


def test_write_report_writes_json_csvs_and_png_the_same_way_every_time(tmp_path):
    splits, raw = _files(tmp_path)
    out = tmp_path / "reports"
    write_report(splits, raw, out / "metrics.json", out / "samples.png", "mnist", "MNIST")
    first = {p.name: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert sorted(first) == ["metrics.json", "samples.png", "test.csv", "train.csv", "validation.csv"]
    m = json.loads(first["metrics.json"])
    assert m["test"]["class_counts"] == {"0": 1, "1": 1, "2": 1, "3": 2, "4": 0, "5": 0, "6": 0, "7": 0, "8": 0, "9": 0}
    assert m["raw"]["t10k-labels-idx1-ubyte"]["sha256"] == hashlib.sha256(bytes([1]) * 100).hexdigest()
    rows = list(csv.DictReader(io.StringIO(first["test.csv"].decode())))
    assert rows[3] == {"class": "3", "count": "2", "fraction": "0.4"}
    assert Image.open(io.BytesIO(first["samples.png"])).format == "PNG"

    write_report(splits, raw, out / "metrics.json", out / "samples.png", "mnist", "MNIST")
    assert {p.name: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == first
    assert not [p for p in out.rglob("*.part")]


def test_write_report_needs_the_sample_split(tmp_path):
    splits, raw = _files(tmp_path)
    del splits["test"]
    with pytest.raises(DatasetError, match=r"samples.png: the sample grid needs split 'test', got only \['train', 'valid"):
        write_report(splits, raw, tmp_path / "m.json", tmp_path / "samples.png", "mnist", "MNIST")


def test_stage_writes_the_report_and_turns_a_missing_split_into_one_line(tmp_path, capsys):
    splits, raw = _files(tmp_path)
    args = [a for name, (npz, out) in splits.items() for a in ("--split", name, str(npz), str(out))]
    args += [a for p in raw for a in ("--raw", str(p))]
    args += ["--metrics", str(tmp_path / "m.json"), "--samples", str(tmp_path / "s.png"), "--params", str(ROOT / "params.yaml")]
    assert report_main(args) == 0
    assert json.loads((tmp_path / "m.json").read_text())["dataset"] == "mnist"

    splits["train"][0].unlink()
    assert report_main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("report: error: ") and "train.npz: file not found" in err
