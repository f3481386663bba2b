"""Bad .npz files given to the loader: each is one DatasetError naming the file, found from the
zip directory and the .npy headers; nothing is unpickled, decompressed or allocated to the
declared size first."""

from __future__ import annotations

import gzip
import io
import struct
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_data import read_data_sets
from mnist_data.artifacts import SPLITS, load_split, save_split
from mnist_data.errors import DatasetError
from mnist_data.npz import MAX_HEADER, write_npz

N = 8
NAMES = tuple(str(i) for i in range(10))


def arrays() -> dict[str, np.ndarray]:
    """The members of a valid split, as save_split writes them."""
    rng = np.random.default_rng(0)
    return {
        "images": rng.uniform(-0.5, 0.5, (N, 28, 28)).astype(np.float32),
        "labels": (np.arange(N) % 10).astype(np.uint8),
        "normalize_range": np.array([-0.5, 0.5]),
        "class_names": np.array(NAMES),
    }


def npy(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, version=version, allow_pickle=True)
    return buf.getvalue()


def npy_with_header(header: str, payload: bytes) -> bytes:
    """A version 1.0 .npy with exactly this header text (padded as numpy pads it)."""
    text = header.encode("latin1")
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload


def write_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED,
              extra: list[tuple[str, bytes]] = ()) -> Path:  # type: ignore[assignment]
    with zipfile.ZipFile(path, "w", compression) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": wanted here
        for name, content in [*members.items(), *extra]:
            zf.writestr(name, content)
    return path


def members(**replace: object) -> dict[str, bytes]:
    """The valid members as .npy bytes, with some replaced (an ndarray) or removed (None)."""
    out = {}
    for name, array in {**arrays(), **replace}.items():
        if array is not None:
            out[f"{name}.npy"] = array if isinstance(array, bytes) else npy(np.asarray(array))
    return out


def good_split(path: Path) -> Path:
    a = arrays()
    save_split(path, a["images"], a["labels"], -0.5, 0.5, NAMES)
    return path


class Trap:
    """Unpickling this creates a file: proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return (Path.touch, (self.marker,))


def test_the_harness_builds_a_loadable_split(tmp_path):
    # The control for every case below: unmodified members load.
    split = load_split(write_zip(tmp_path / "train.npz", members()), verify="always")
    np.testing.assert_array_equal(split.images, arrays()["images"])
    assert split.class_names == NAMES
    assert load_split(good_split(tmp_path / "saved.npz")).labels.tolist() == arrays()["labels"].tolist()


@pytest.mark.parametrize("member", ["images", "class_names"])
def test_a_pickled_object_array_is_rejected_and_never_unpickled(tmp_path, member):
    marker = tmp_path / "pickle-ran"
    path = write_zip(tmp_path / "train.npz", members(**{member: np.array([Trap(marker)] * N, dtype=object)}))
    with pytest.raises(DatasetError, match=rf"{member}.npy: dtype '\|O' \(fortran_order=False\), expected"):
        load_split(path)
    with pytest.raises(DatasetError, match=r"dtype '\|O'"):
        read_data_sets_from(tmp_path, path)
    assert not marker.exists()
    with np.load(path, allow_pickle=True) as npz:  # the bait is live: numpy, allowed to, runs it
        npz[f"{member}"]
    assert marker.exists()


def read_data_sets_from(folder: Path, bad: Path) -> None:
    """Load a folder whose other splits are valid and whose ``bad.name`` is ``bad``."""
    target = folder / "splits"
    target.mkdir(exist_ok=True)
    for split in SPLITS:
        good_split(target / f"{split}.npz")
    (target / "train.npz").write_bytes(bad.read_bytes())
    read_data_sets(target)


def case_zip(replace: dict[str, object] | None = None, extra: dict[str, bytes] | None = None,
             compression: int = zipfile.ZIP_STORED) -> Callable[[Path], Path]:
    return lambda path: write_zip(path, members(**(replace or {})), compression, list((extra or {}).items()))


def case_bytes(make: Callable[[bytes], bytes]) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        content = make(good_split(path).read_bytes())
        path.write_bytes(content)
        return path

    return build


EXPECTED = r"expected exactly \['class_names.npy', 'images.npy', 'labels.npy', 'normalize_range.npy'\]"
BAD = arrays()


def with_value(flat_index: int, value: float) -> np.ndarray:
    images = BAD["images"].copy()
    images.reshape(-1)[flat_index] = value
    return images


def declared(descr: str, shape: str, payload: bytes) -> bytes:
    """A .npy whose header says ``descr`` and ``shape`` (as text), followed by ``payload``."""
    return npy_with_header(f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}", payload)


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing-array": (
        case_zip({"labels": None}),
        rf"holds arrays \['class_names.npy', 'images.npy', 'normalize_range.npy'\], {EXPECTED}",
    ),
    "extra-array": (case_zip(extra={"secret.npy": npy(np.zeros(3))}), EXPECTED),
    "not-npy-member": (case_zip(extra={"README.txt": b"hello"}), EXPECTED),
    "duplicate-member": (case_zip(extra={"labels.npy": npy(BAD["labels"])}), EXPECTED),
    "too-many-members": (case_zip(extra={f"x{i}.npy": b"" for i in range(17)}), "holds 21 members, expected 4"),
    "images-float64": (
        case_zip({"images": BAD["images"].astype(np.float64)}), r"images.npy: dtype '<f8' .*expected '<f4' in C order",
    ),
    "labels-int64": (case_zip({"labels": BAD["labels"].astype(np.int64)}), r"labels.npy: dtype '<i8' .*expected '\|u1'"),
    "big-endian": (case_zip({"images": BAD["images"].astype(">f4")}), r"images.npy: dtype '>f4'"),
    "fortran-order": (
        case_zip({"images": np.asfortranarray(BAD["images"])}), r"images.npy: dtype '<f4' \(fortran_order=True\)",
    ),
    "images-2d": (
        case_zip({"images": BAD["images"].reshape(N, 784)}), r"images.npy: shape \(8, 784\), expected 3 non-negative dimensions",
    ),
    "images-27-wide": (
        case_zip({"images": BAD["images"][:, :, :27].copy()}), r"images have shape \(8, 28, 27\), expected \(N, 28, 28\)",
    ),
    "labels-2d": (
        case_zip({"labels": BAD["labels"].reshape(N, 1)}), r"labels.npy: shape \(8, 1\), expected 1 non-negative dimensions",
    ),
    "nan": (
        case_zip({"images": with_value(100, np.nan)}),
        r"image value (np.float32\()?nan\)? at flat index 100 is outside \[-0.5, 0.5\] \(or NaN\)",
    ),
    "out-of-range": (
        case_zip({"images": with_value(7, 2.0)}), r"image value (np.float32\()?2.0\)? at flat index 7 is outside \[-0.5, 0.5\]",
    ),
    "infinity": (
        case_zip({"images": np.full((N, 28, 28), -np.inf, np.float32)}),
        r"image value (np.float32\()?-inf\)? at flat index 0 is outside",
    ),
    "label-10": (case_zip({"labels": np.full(N, 10, np.uint8)}), r"label 10 at index 0 is outside 0\.\.9"),
    "count-mismatch": (case_zip({"labels": BAD["labels"][:-1]}), "8 images but 7 labels; expected equal counts"),
    "bad-range": (
        case_zip({"normalize_range": np.array([0.5, -0.5])}),
        r"normalize_range is \[0.5, -0.5\], expected two finite numbers low < high",
    ),
    "nan-range": (case_zip({"normalize_range": np.array([np.nan, 1.0])}), r"normalize_range is \[nan, 1.0\]"),
    "no-class-names": (case_zip({"class_names": np.array([], dtype="<U1")}), "class_names is empty"),
    "truncated-half": (
        case_bytes(lambda b: b[: len(b) // 2]), r"not a readable zip file .*the file is truncated or corrupt",
    ),
    "truncated-no-directory": (case_bytes(lambda b: b[: b.rfind(b"PK\x01\x02") - 100]), "not a readable zip file"),
    "truncated-last-byte": (case_bytes(lambda b: b[:-1]), "not a readable zip file"),
    "empty-file": (case_bytes(lambda b: b""), r"not an .npz \(zip\) file: starts with b''"),
    "text-file": (case_bytes(lambda b: b"hello, I am not a zip\n"), r"not an .npz \(zip\) file: starts with b'hell'"),
    "npy-renamed": (
        case_bytes(lambda b: npy(BAD["images"])),
        r"not an .npz \(zip\) file: starts with b'\\x93NUM' \(a bare .npy file renamed .npz\)",
    ),
    "gzip-renamed": (case_bytes(lambda b: gzip.compress(b)), r"\(a gzip file\)"),
    "huge-shape": (
        case_zip({"images": declared("<f4", "(1000000000000, 28, 28)", bytes(64))}),
        r"images.npy: shape \(1000000000000, 28, 28\) declares more than \d+ bytes; the header is corrupt",
    ),
    "huge-shape-expression": (
        case_zip({"images": declared("<f4", "(0, 2**64, 28)", b"")}), "images.npy: unreadable .npy header",
    ),
    "huge-shape-zero-rows": (
        case_zip({"images": declared("<f4", "(0, 18446744073709551616, 28)", b"")}),
        r"images.npy: shape \(0, 18446744073709551616, 28\) declares more than \d+ bytes",
    ),
    "more-rows-than-data": (
        case_zip({"images": declared("<f4", "(9, 28, 28)", BAD["images"].tobytes())}),
        r"images.npy: shape \(9, 28, 28\) needs 28224 bytes of data, the member holds 25088",
    ),
    "negative-dim": (
        case_zip({"labels": declared("|u1", "(-8,)", bytes(8))}),
        r"labels.npy: shape \(-8,\), expected 1 non-negative dimensions",
    ),
    "header-too-long": (
        case_zip({"labels": b"\x93NUMPY\x02\x00" + struct.pack("<I", 10**6) + b"{" * 100}),
        rf"labels.npy: .npy header of 1000000 bytes, expected at most {MAX_HEADER}",
    ),
    "header-code": (
        case_zip({"labels": npy_with_header("__import__('os').system('false')", bytes(8))}), "labels.npy: unreadable .npy header",
    ),
    "header-not-dict": (case_zip({"labels": npy_with_header("[1, 2, 3]", bytes(8))}), "labels.npy: unreadable .npy header"),
    "npy-version-9": (case_zip({"labels": b"\x93NUMPY\x09\x00" + bytes(100)}), "labels.npy: unsupported .npy format version 9"),
    "not-npy-content": (
        case_zip({"labels": b"just some bytes, not an array"}), r"labels.npy: not a .npy array \(bad magic b'just s'\)",
    ),
    "deflated": (case_zip(compression=zipfile.ZIP_DEFLATED), "is compressed or encrypted; expected stored"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_npz_is_one_dataset_error_naming_the_file(tmp_path, case):
    build, reason = CASES[case]
    path = build(tmp_path / "train.npz")
    with pytest.raises(DatasetError, match=reason) as info:
        load_split(path, verify="always")
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: ")
    with pytest.raises(DatasetError, match=reason):
        read_data_sets_from(tmp_path, path)


def test_a_missing_file_says_how_to_create_it(tmp_path):
    with pytest.raises(DatasetError, match=r"train.npz: file not found; run `dvc repro` or `dvc pull` to create it"):
        load_split(tmp_path / "train.npz")
    with pytest.raises(DatasetError, match="file not found"):
        read_data_sets(tmp_path)


def test_a_folder_in_place_of_the_file_is_a_dataset_error(tmp_path):
    (tmp_path / "train.npz").mkdir()
    with pytest.raises(DatasetError, match="train.npz: (cannot read|not an .npz)"):
        load_split(tmp_path / "train.npz")


def _stored_member_lying_about_its_size(path: Path) -> Path:
    """A valid split whose directory says labels.npy is 10 GB (a stored 'bomb')."""
    good_split(path)
    content = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("labels.npy")
    # Patch the central directory entry of labels.npy: its compressed and uncompressed sizes.
    start = 0
    while (start := content.find(b"PK\x01\x02", start)) != -1:
        name_len = struct.unpack_from("<H", content, start + 28)[0]
        if content[start + 46 : start + 46 + name_len] == b"labels.npy":
            struct.pack_into("<II", content, start + 20, 10**10 % 2**32, 10**10 % 2**32)
        start += 4
    path.write_bytes(bytes(content))
    assert info.file_size < 1000
    return path


def test_a_member_declaring_more_bytes_than_the_file_holds(tmp_path):
    path = _stored_member_lying_about_its_size(tmp_path / "train.npz")
    reason = r"labels.npy: declares \d+ bytes at offset \d+, but the file has \d+ bytes \(truncated\?\)"
    with pytest.raises(DatasetError, match=reason):
        load_split(path)


def test_a_zip_bomb_is_rejected_without_inflating(tmp_path):
    path = tmp_path / "train.npz"
    images = declared("<f4", "(100000, 28, 28)", b"")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, content in members(images=None).items():
            zf.writestr(name, content)
        info = zipfile.ZipInfo("images.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as member:
            member.write(images)
            zeros = bytes(1 << 20)
            for _ in range(300):  # 300 MB of zeros: about 300 KB on disk
                member.write(zeros)
    assert path.stat().st_size < 1 << 20
    assert_rejected_without_allocating(path, "images.npy is compressed or encrypted; expected stored")


def test_a_huge_declared_shape_allocates_nothing(tmp_path):
    path = CASES["huge-shape"][0](tmp_path / "train.npz")
    assert_rejected_without_allocating(path, "declares more than")


def assert_rejected_without_allocating(path: Path, match: str) -> None:
    """load_split raises DatasetError(match) while Python allocates under 4 MiB in all."""
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match=match):
            load_split(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"peak {peak} bytes"


def test_write_npz_refuses_object_arrays(tmp_path):
    with pytest.raises(TypeError, match="object arrays cannot be saved without pickle"):
        write_npz(tmp_path / "x.npz", {"images": np.array([object()])})
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def valid_bytes(tmp_path_factory) -> bytes:
    return good_split(tmp_path_factory.mktemp("valid") / "train.npz").read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_corruption_is_a_dataset_error_or_a_valid_split(tmp_path_factory, valid_bytes, data):
    content = bytearray(valid_bytes)
    how = data.draw(st.sampled_from(["flip", "cut", "zero-run"]))
    at = data.draw(st.integers(min_value=0, max_value=len(content) - 1))
    if how == "flip":
        content[at] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
    elif how == "cut":
        del content[at:]
    else:
        content[at : at + 16] = bytes(len(content[at : at + 16]))
    path = tmp_path_factory.mktemp("fuzz") / "train.npz"
    path.write_bytes(bytes(content))
    try:
        split = load_split(path, verify="always")
    except DatasetError as exc:
        assert str(exc).startswith(str(path))
        return
    # Accepted: then it is a dataset in every respect the loader promises.
    assert split.images.dtype == np.float32 and split.images.shape[1:] == (28, 28)
    assert len(split.images) == len(split.labels) and int(split.labels.max()) < len(split.class_names)
    assert np.isfinite(split.images).all() and split.low <= split.images.min() and split.images.max() <= split.high



def test_a_truncated_version_2_npy_header_is_a_dataset_error(tmp_path):
    path = tmp_path / "train.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for name in ("images", "labels", "normalize_range", "class_names"):
            zf.writestr(f"{name}.npy", b"\x93NUMPY\x02\x00\x00\x00")
    with pytest.raises(DatasetError, match=r"train.npz: .*\.npy header truncated \(10 bytes\)"):
        load_split(path)
