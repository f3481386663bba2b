"""Encoding and strict decoding of IDX files (the format MNIST ships in).

An IDX file is: two zero bytes, a type code, the number of dimensions, one big-endian uint32
per dimension, then the values big-endian in C order. Every check runs on the header and the
file size before the payload is read or any array is allocated.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mnist_data.errors import IdxFormatError

TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF = {dt.newbyteorder("="): code for code, dt in TYPE_CODES.items()}
MAX_PAYLOAD = 1 << 40  # 1 TiB: any larger declared payload is corrupt, not data


def encode(array: npt.NDArray) -> bytes:
    """Serialize an array as IDX bytes.

    Args:
        array: Any shape with at least one dimension, of dtype uint8, int8, int16, int32,
            float32 or float64.
    """
    dt = array.dtype.newbyteorder("=")
    if dt not in _CODE_OF or array.ndim < 1 or array.ndim > 255:
        raise ValueError(f"cannot encode dtype {array.dtype} with {array.ndim} dimensions as IDX")
    header = struct.pack(">BBBB", 0, 0, _CODE_OF[dt], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=TYPE_CODES[_CODE_OF[dt]]).tobytes()


def read_header(head: bytes, total_size: int, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """Validate an IDX header against the total size of the file.

    Args:
        head: At least the first 4 bytes of the file (more is fine).
        total_size: Size of the whole file in bytes.
        name: Path or label used in error messages.

    Returns:
        The dtype (big-endian), the shape, and the header length in bytes.
    """
    if len(head) < 4:
        raise IdxFormatError(name, f"file is {total_size} bytes, shorter than the 4-byte magic number")
    if head[:2] != b"\0\0":
        raise IdxFormatError(name, f"magic number starts {head[:4].hex()}, expected 0000{_hint(head)}")
    code, ndim = head[2], head[3]
    if code not in TYPE_CODES:
        known = ", ".join(f"0x{c:02X}" for c in TYPE_CODES)
        raise IdxFormatError(name, f"unknown type code 0x{code:02X}, expected one of {known}")
    if ndim == 0:
        raise IdxFormatError(name, "header declares 0 dimensions, expected at least 1")
    header_len = 4 + 4 * ndim
    if total_size < header_len or len(head) < header_len:
        raise IdxFormatError(name, f"header truncated: {ndim} dimensions need {header_len} bytes, file has {total_size}")
    shape = struct.unpack(f">{ndim}I", head[4:header_len])
    payload = TYPE_CODES[code].itemsize
    for dim in shape:  # Python ints cannot overflow; stop as soon as the product is absurd
        payload *= dim
        if payload > MAX_PAYLOAD:
            raise IdxFormatError(name, f"dimensions {shape} declare more than {MAX_PAYLOAD} bytes of data")
    actual = total_size - header_len
    if actual != payload:
        what = "truncated payload" if actual < payload else "trailing bytes after the payload"
        raise IdxFormatError(name, f"{what}: dimensions {shape} need {payload} bytes, file has {actual}")
    return TYPE_CODES[code], shape, header_len


def decode(data: bytes, name: str = "<bytes>") -> npt.NDArray:
    """Decode IDX bytes into a native-endian array (a read-only view for 1-byte types)."""
    dtype, shape, header_len = read_header(data[: 4 + 4 * 255], len(data), name)
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return array if dtype.itemsize == 1 else array.astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> npt.NDArray:
    """Read and decode an IDX file; its size is checked against the header before reading.

    The payload is read straight into the result array: no second copy of the file in memory.
    """
    path = Path(path)
    try:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise IdxFormatError(path, f"cannot read: {exc.strerror or exc}; run `dvc repro` (or `dvc pull`) to create it") from exc
    with f:
        size = f.seek(0, 2)
        f.seek(0)
        dtype, shape, header_len = read_header(f.read(4 + 4 * 255), size, str(path))
        f.seek(header_len)
        payload = bytearray(size - header_len)
        view = memoryview(payload)
        filled = 0
        while filled < len(payload):
            n = f.readinto(view[filled:])
            if not n:
                raise IdxFormatError(path, f"file shrank while reading: got {filled} of {len(payload)} payload bytes")
            filled += n
    array = np.frombuffer(payload, dtype=dtype).reshape(shape)
    return array if dtype.itemsize == 1 else array.astype(dtype.newbyteorder("="))


def _hint(head: bytes) -> str:
    if head[:2] == b"\x1f\x8b":
        return " (this is a gzip archive: decompress it first)"
    if head.lstrip()[:1] == b"<":
        return " (this looks like an HTML or XML page, not data: the server sent an error page)"
    return ""
