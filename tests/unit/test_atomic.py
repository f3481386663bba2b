"""Atomic writes: the target appears only complete; our own OS failures are one OutputError."""

from __future__ import annotations

import pytest

from mnist_data.atomic import atomic_output
from mnist_data.errors import OutputError


def test_target_appears_only_when_the_block_completes(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_output(target) as f:
        f.write(b"half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_output(target) as f:
        f.write(b"whole")
    assert target.read_bytes() == b"whole" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_a_directory_in_the_way_is_an_output_error_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    target.mkdir()
    with pytest.raises(OutputError, match=r"out.bin: cannot write: Is a directory"), atomic_output(target) as f:
        f.write(b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
