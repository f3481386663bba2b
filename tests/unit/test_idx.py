"""The IDX codec: every type code round-trips; malformed headers are rejected before reading."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mnist_data.errors import IdxFormatError
from mnist_data.idx import TYPE_CODES, decode, encode, read_idx

DTYPES = [dt.newbyteorder("=") for dt in TYPE_CODES.values()]


@given(
    array=st.sampled_from(DTYPES).flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5))
    )
)
def test_round_trip_all_type_codes(array):
    out = decode(encode(array))
    assert out.dtype == array.dtype and out.shape == array.shape
    np.testing.assert_array_equal(out, array)  # NaNs compare equal here


def test_layout_matches_the_published_format():
    data = encode(np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int16))
    assert data[:4] == b"\x00\x00\x0b\x02"
    assert data[4:12] == b"\x00\x00\x00\x03\x00\x00\x00\x02"
    assert data[12:] == b"\x00\x01\x00\x02\x00\x03\x00\x04\x00\x05\x00\x06"


def test_read_idx_from_file(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    path.write_bytes(encode(images))
    np.testing.assert_array_equal(read_idx(path), images)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00\x00", "shorter than the 4-byte magic"),
        (b"\x1f\x8b\x08\x00" + b"\0" * 20, "gzip archive: decompress it first"),
        (b"<!DOCTYPE html><html>", "HTML or XML page"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown type code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", "header truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "truncated payload: dimensions \\(5,\\) need 5 bytes, file has 2"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "trailing bytes after the payload"),
        (b"\x00\x00\x0e\x03" + b"\xff\xff\xff\xff" * 3, "declare more than"),
    ],
)
def test_malformed_headers_are_rejected(data, match):
    with pytest.raises(IdxFormatError, match=match):
        decode(data, "f.idx")


def test_huge_declared_shape_is_rejected_from_the_file_size_alone(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(b"\x00\x00\x08\x03" + (60000).to_bytes(4, "big") + (2800).to_bytes(4, "big") * 2)
    with pytest.raises(IdxFormatError, match=f"{path}.*truncated payload"):
        read_idx(path)


def test_missing_file_says_how_to_create_it(tmp_path):
    with pytest.raises(IdxFormatError, match=r"nope: .*cannot read: No such file or directory; run `dvc repro`"):
        read_idx(tmp_path / "nope")
    with pytest.raises(IdxFormatError, match="cannot read: Is a directory"):
        read_idx(tmp_path)
