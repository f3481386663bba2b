"""Every IDX defect the decoder knows is one IdxFormatError or DatasetError naming the file, found
from the header and the file size before any payload is read or any array allocated; the decode
stage turns each into one stderr line, exit 1, and leaves no output or temp file behind."""

from __future__ import annotations

import gzip
import os
import re
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mnist_data import checks
from mnist_data.errors import DatasetError, IdxFormatError, MnistDataError
from mnist_data.idx import MAX_PAYLOAD, decode, encode, read_idx
from tests.conftest import ROOT

N = 12
IMAGES = np.arange(N * 28 * 28, dtype=np.uint32).reshape(N, 28, 28).astype(np.uint8)
LABELS = (np.arange(N) % 10).astype(np.uint8)


def header(code: int, *dims: int, ndim: int | None = None) -> bytes:
    return bytes([0, 0, code, len(dims) if ndim is None else ndim]) + struct.pack(f">{len(dims)}I", *dims)


# (file bytes, regex) for defects read_idx itself rejects.
FORMAT_DEFECTS = {
    "empty": (b"", "file is 0 bytes, shorter than the 4-byte magic number"),
    "three-bytes": (b"\0\0\x08", "file is 3 bytes, shorter than the 4-byte magic number"),
    "gzip-magic": (
        gzip.compress(encode(IMAGES), mtime=0),
        r"magic number starts 1f8b0800, expected 0000 \(this is a gzip archive: decompress it first\)",
    ),
    "html-magic": (
        b"<!DOCTYPE html><html>404</html>",
        r"magic number starts 3c21444f, expected 0000 \(this looks like an HTML or XML page",
    ),
    "other-magic": (b"\x01\x02\x08\x03" + bytes(100), "magic number starts 01020803, expected 0000$"),
    "unknown-type": (
        header(0x0A, N, 28, 28) + IMAGES.tobytes(),
        "unknown type code 0x0A, expected one of 0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E",
    ),
    "zero-dims": (header(0x08, ndim=0) + bytes(10), "header declares 0 dimensions, expected at least 1"),
    "header-truncated": (
        bytes([0, 0, 8, 3]) + struct.pack(">I", N),
        "header truncated: 3 dimensions need 16 bytes, file has 8",
    ),
    "ndim-255": (bytes([0, 0, 8, 255]) + bytes(40), "header truncated: 255 dimensions need 1024 bytes, file has 44"),
    "dims-overflow": (
        header(0x08, 2**32 - 1, 2**32 - 1, 2**32 - 1),
        rf"dimensions \(4294967295, 4294967295, 4294967295\) declare more than {MAX_PAYLOAD} bytes of data",
    ),
    "dims-overflow-f8": (
        header(0x0E, 2**20, 2**20, 2**20),
        rf"dimensions \(1048576, 1048576, 1048576\) declare more than {MAX_PAYLOAD} bytes of data",
    ),
    "absurd-memory": (
        header(0x08, 10**6, 1000, 1000) + bytes(64),
        r"truncated payload: dimensions \(1000000, 1000, 1000\) need 1000000000000 bytes, file has 64",
    ),
    "truncated-payload": (
        encode(IMAGES)[:-1],
        rf"truncated payload: dimensions \({N}, 28, 28\) need {N * 784} bytes, file has {N * 784 - 1}",
    ),
    "extra-payload": (
        encode(IMAGES) + b"\0",
        rf"trailing bytes after the payload: dimensions \({N}, 28, 28\) need {N * 784} bytes, file has {N * 784 + 1}",
    ),
    "extra-payload-int32": (
        encode(LABELS.astype(np.int32)) + b"\0\0",
        rf"trailing bytes after the payload: dimensions \({N},\) need {N * 4} bytes",
    ),
}


@pytest.mark.parametrize("case", FORMAT_DEFECTS)
def test_format_defects_are_found_before_allocating(tmp_path, case):
    content, reason = FORMAT_DEFECTS[case]
    path = tmp_path / "file-idx3-ubyte"
    path.write_bytes(content)
    tracemalloc.start()
    try:
        with pytest.raises(IdxFormatError, match=f"^{re.escape(str(path))}: not a valid IDX file: {reason}") as info:
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.path == str(path)
    assert peak < len(content) + (1 << 20), f"peak {peak} bytes"
    with pytest.raises(IdxFormatError, match=reason):
        decode(content, "buffer")


# (images, labels, regex) pairs that are valid IDX but not an MNIST-format dataset.
LABEL_10_AT_5 = np.where(np.arange(N) == 5, 10, LABELS).astype(np.uint8)
DATASET_DEFECTS = {
    "images-ndim-2": (encode(IMAGES.reshape(N, 784)), encode(LABELS), r"images have shape \(12, 784\), expected \(N, 28, 28\)"),
    "images-wrong-size": (
        encode(IMAGES[:, :, :27].copy()), encode(LABELS), r"images have shape \(12, 28, 27\), expected \(N, 28, 28\)",
    ),
    "images-int32": (encode(IMAGES.astype(np.int32)), encode(LABELS), "images have dtype int32, expected uint8"),
    "labels-ndim-2": (
        encode(IMAGES), encode(LABELS.reshape(N, 1)), r"labels have shape \(12, 1\) and dtype uint8, expected \(N,\) uint8",
    ),
    "labels-int8": (
        encode(IMAGES), encode(LABELS.astype(np.int8)), r"labels have shape \(12,\) and dtype int8, expected \(N,\) uint8",
    ),
    "label-10": (encode(IMAGES), encode(LABEL_10_AT_5), r"label 10 at index 5 is outside 0\.\.9"),
    "label-255": (encode(IMAGES), encode(np.full(N, 255, np.uint8)), r"label 255 at index 0 is outside 0\.\.9"),
    "count-mismatch": (encode(IMAGES), encode(LABELS[:-1]), "12 images but 11 labels; expected equal counts"),
}


@pytest.mark.parametrize("case", DATASET_DEFECTS)
def test_dataset_defects(tmp_path, case):
    images, labels, reason = DATASET_DEFECTS[case]
    with pytest.raises(DatasetError, match=reason):
        imgs, lbls = decode(images, "images"), decode(labels, "labels")
        checks.check_images(imgs, "images")
        checks.check_labels(lbls, "labels")
        checks.check_counts(imgs, lbls, "images + labels")


def run_decode(tmp_path: Path, images: bytes, labels: bytes) -> tuple[subprocess.CompletedProcess[str], Path]:
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    (raw / "images").write_bytes(images)
    (raw / "labels").write_bytes(labels)
    out = tmp_path / "out" / "train.npz"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "stages.decode", "--split", str(raw / "images"), str(raw / "labels"), str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    return result, out


ALL_DEFECTS = {
    **{f"images-{k}": (content, encode(LABELS), reason) for k, (content, reason) in FORMAT_DEFECTS.items()},
    "labels-gzip": (encode(IMAGES), gzip.compress(encode(LABELS)), "this is a gzip archive"),
    **DATASET_DEFECTS,
}


@pytest.mark.parametrize("case", ["images-gzip-magic", "images-html-magic", "images-dims-overflow", "images-absurd-memory",
                                  "images-truncated-payload", "labels-gzip", "label-10", "count-mismatch", "images-ndim-2"])
def test_the_decode_stage_reports_one_line_and_leaves_nothing(tmp_path, case):
    images, labels, reason = ALL_DEFECTS[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "train.npz").write_bytes(b"previous output")  # as if from an earlier good run
    result, out = run_decode(tmp_path, images, labels)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("decode: error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(reason, lines[0]), lines[0]
    assert "dvc checkout" in lines[0]
    assert out.read_bytes() == b"previous output"
    assert sorted(p.name for p in out_dir.iterdir()) == ["train.npz"]


def test_the_decode_stage_accepts_a_valid_pair(tmp_path):
    # The control for the test above: the same harness with good files succeeds.
    result, out = run_decode(tmp_path, encode(IMAGES), encode(LABELS))
    assert result.returncode == 0, result.stderr
    with np.load(out) as npz:
        np.testing.assert_array_equal(npz["images"], IMAGES)
        np.testing.assert_array_equal(npz["labels"], LABELS)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=3))
def test_any_bytes_decode_to_a_matching_array_or_one_idx_error(data, code_index):
    # Lead with a plausible header often, so the fuzzing reaches the dimension and size checks.
    content = bytes([0, 0, (0x08, 0x0B, 0x0D, 0x0A)[code_index]]) + data if code_index < 3 else data
    try:
        array = decode(content, "fuzz")
    except IdxFormatError:
        return
    except MnistDataError as exc:  # pragma: no cover - a wrong error class is a failure too
        raise AssertionError(f"wrong error class {type(exc).__name__}") from exc
    assert 4 + 4 * array.ndim + array.nbytes == len(content)
    assert encode(array) == content
