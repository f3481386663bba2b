"""Deterministic .npz writing and safe, memory-mapped .npz reading.

Writing: members are stored uncompressed with fixed timestamps and attributes, and each
member's data starts on a 64-byte boundary, so the same arrays always give the same bytes and
every array can be memory-mapped in place. ``numpy.load`` reads the files as usual.

Reading: only the zip directory, the local headers and the .npy headers are parsed; nothing is
unpickled, nothing is decompressed, and every declared size is checked against the bytes that
are really in the file before an array is mapped. Arrays come back as read-only memory maps, so
loading costs no copy of the data and leaves no file handle open.
"""

from __future__ import annotations

import ast
import mmap
import re
import struct
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mnist_data.atomic import atomic_output
from mnist_data.errors import DatasetError

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_ALIGN = 64
_PAD_ID = 0xD935  # the extra-field id zipalign uses for padding
_LOCAL = struct.Struct("<4s5H3L2H")
MAX_HEADER = 4096  # .npy headers numpy writes for these arrays are < 200 bytes
MAX_MEMBERS = 16
_BLOCK_BYTES = 1 << 24
MAX_ARRAY_BYTES = 1 << 40  # 1 TiB: any larger declared array is a corrupt header, not data


@dataclass(frozen=True)
class Blocks:
    """An array that write_npz writes block by block along its first axis, never whole in memory.

    Attributes:
        shape: Shape of the whole array (at least one dimension).
        dtype: Its dtype.
        blocks: Called once; yields arrays of ``dtype`` whose shapes are ``(k, *shape[1:])`` and
            whose ``k`` add up to ``shape[0]``.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    blocks: Callable[[], Iterable[npt.NDArray]]


def as_blocks(array: npt.NDArray) -> Blocks:
    """``array`` (at least 1-d) as Blocks of about 16 MiB each: views, no copies of C-contiguous data."""
    rows = max(1, _BLOCK_BYTES // max(1, array[:1].nbytes))
    return Blocks(array.shape, array.dtype, lambda: (array[i : i + rows] for i in range(0, len(array), rows)))


def write_npz(path: str | Path, arrays: Mapping[str, npt.NDArray | Blocks]) -> None:
    """Write ``arrays`` to ``path`` atomically as a deterministic, uncompressed .npz.

    Arrays are streamed in blocks (Blocks, or 16 MiB slices of an ndarray), so writing needs no
    second copy of the data; the bytes equal what ``numpy.savez`` would store for each member.
    """
    with atomic_output(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in arrays.items():
            source = value if isinstance(value, Blocks) else as_blocks(np.atleast_1d(np.asanyarray(value)))
            dtype = np.dtype(source.dtype)
            if dtype.hasobject:
                raise TypeError(f"{name}: object arrays cannot be saved without pickle")
            shape = tuple(int(d) for d in source.shape)
            info = zipfile.ZipInfo(name + ".npy", date_time=_FIXED_TIME)
            info.create_system = 3
            info.external_attr = 0o644 << 16
            info.file_size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize + MAX_HEADER  # decides zip64 up front
            offset = f.tell() + _LOCAL.size + len(info.filename.encode()) + 4
            pad = -offset % _ALIGN
            info.extra = struct.pack("<HH", _PAD_ID, pad) + b"\0" * pad
            with zf.open(info, "w", force_zip64=False) as member:
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(member, header)
                rows = 0
                for block in source.blocks():
                    block = np.ascontiguousarray(block, dtype=dtype)
                    if block.shape[1:] != shape[1:]:
                        raise ValueError(f"{name}: block of shape {block.shape} does not fit an array of shape {shape}")
                    member.write(block.data)
                    rows += block.shape[0]
                if rows != shape[0]:
                    raise ValueError(f"{name}: blocks gave {rows} rows, the declared shape {shape} needs {shape[0]}")


def read_npz(path: str | Path, expected: Mapping[str, tuple[str, int]]) -> dict[str, npt.NDArray]:
    """Map the arrays of an .npz written by :func:`write_npz`, checking every header first.

    Args:
        path: The .npz file.
        expected: For each required array, its dtype string (e.g. ``"<f4"``; ``"<U"`` for
            unicode of any width) and number of dimensions. The file must hold exactly these.

    Returns:
        Read-only arrays backed by one memory map of the file, one per expected name.

    Raises:
        DatasetError: The file is missing, not a zip, holds other arrays, or any header or
            size is wrong.
    """
    path = Path(path)
    try:
        file_size = path.stat().st_size
        with open(path, "rb") as f:
            magic = f.read(4)
            if magic != b"PK\x03\x04":
                raise DatasetError(path, f"not an .npz (zip) file: starts with {magic!r}{_hint(magic)}")
            try:
                with zipfile.ZipFile(f) as zf:
                    infos = zf.infolist()
            except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
                raise DatasetError(path, f"not a readable zip file ({exc}); the file is truncated or corrupt") from exc
            if len(infos) > MAX_MEMBERS:
                raise DatasetError(path, f"holds {len(infos)} members, expected {len(expected)}")
            names = {i.filename.removesuffix(".npy"): i for i in infos if i.filename.endswith(".npy")}
            if len(names) != len(infos) or set(names) != set(expected):
                raise DatasetError(
                    path, f"holds arrays {sorted(i.filename for i in infos)}, expected exactly "
                    f"{sorted(n + '.npy' for n in expected)}"
                )
            layout = {n: _member_layout(f, path, file_size, names[n], *expected[n]) for n in expected}
    except FileNotFoundError as exc:
        raise DatasetError(path, "file not found; run `dvc repro` or `dvc pull` to create it") from exc
    except OSError as exc:
        raise DatasetError(path, f"cannot read: {exc.strerror or exc}") from exc
    # One read-only map of the whole file backs every array. The map holds one descriptor
    # (mmap duplicates it) until the last array is released; our own handle is closed here.
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    out = {}
    for name, (dtype, shape, offset) in layout.items():
        count = int(np.prod(shape, dtype=np.int64))
        out[name] = np.frombuffer(mapped, dtype=dtype, count=count, offset=offset).reshape(shape)
    return out


def _member_layout(
    f, path: Path, file_size: int, info: zipfile.ZipInfo, dtype: str, ndim: int
) -> tuple[np.dtype, tuple[int, ...], int]:
    member = info.filename
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        raise DatasetError(path, f"{member} is compressed or encrypted; expected stored (re-run the pipeline to rewrite it)")
    if info.header_offset + _LOCAL.size > file_size:
        raise DatasetError(path, f"{member}: local header lies past the end of the file ({file_size} bytes)")
    f.seek(info.header_offset)
    sig, *_, name_len, extra_len = _LOCAL.unpack(f.read(_LOCAL.size))
    if sig != b"PK\x03\x04" or f.read(name_len).decode("utf-8", "replace") != member:
        raise DatasetError(path, f"{member}: local header does not match the zip directory")
    start = info.header_offset + _LOCAL.size + name_len + extra_len
    if info.compress_size != info.file_size or start + info.file_size > file_size:
        raise DatasetError(
            path, f"{member}: declares {info.file_size} bytes at offset {start}, but the file has {file_size} bytes (truncated?)"
        )
    f.seek(start)
    head = f.read(min(info.file_size, 10 + MAX_HEADER))
    if head[:6] != b"\x93NUMPY" or len(head) < 10:
        raise DatasetError(path, f"{member}: not a .npy array (bad magic {head[:6]!r})")
    major = head[6]
    if len(head) < (10 if major == 1 else 12):
        raise DatasetError(path, f"{member}: .npy header truncated ({len(head)} bytes)")
    if major == 1:
        hlen, hstart = struct.unpack("<H", head[8:10])[0], 10
    elif major in (2, 3):
        hlen, hstart = struct.unpack("<I", head[8:12])[0], 12
    else:
        raise DatasetError(path, f"{member}: unsupported .npy format version {major}")
    if hlen > MAX_HEADER or hstart + hlen > len(head):
        raise DatasetError(path, f"{member}: .npy header of {hlen} bytes, expected at most {MAX_HEADER}")
    try:
        header = ast.literal_eval(head[hstart : hstart + hlen].decode("latin1"))
        descr, fortran, shape = header["descr"], header["fortran_order"], header["shape"]
    except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError) as exc:
        raise DatasetError(path, f"{member}: unreadable .npy header") from exc
    if not _dtype_matches(descr, dtype) or fortran is not False:
        raise DatasetError(path, f"{member}: dtype {descr!r} (fortran_order={fortran}), expected {dtype!r} in C order")
    found = np.dtype(descr)
    if not (isinstance(shape, tuple) and len(shape) == ndim and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise DatasetError(path, f"{member}: shape {shape!r}, expected {ndim} non-negative dimensions")
    data_bytes = info.file_size - hstart - hlen
    needed, span = found.itemsize, found.itemsize  # span ignores zero dims: numpy refuses absurd ones even then
    for d in shape:
        needed *= d
        span *= max(d, 1)
    if span > MAX_ARRAY_BYTES:
        raise DatasetError(path, f"{member}: shape {shape} declares more than {MAX_ARRAY_BYTES} bytes; the header is corrupt")
    if needed != data_bytes:
        raise DatasetError(path, f"{member}: shape {shape} needs {needed} bytes of data, the member holds {data_bytes}")
    return found, shape, start + hstart + hlen


def _dtype_matches(descr: object, expected: str) -> bool:
    if expected == "<U":  # unicode of any width, little-endian: never an object or pickle
        return isinstance(descr, str) and re.fullmatch(r"<U[1-9][0-9]{0,3}", descr) is not None
    return descr == np.dtype(expected).str


def _hint(magic: bytes) -> str:
    if magic[:2] == b"\x93N":
        return " (a bare .npy file renamed .npz)"
    if magic[:2] == b"\x1f\x8b":
        return " (a gzip file)"
    return ""

