"""Writing files atomically: a temp file beside the target, then os.replace.

A reader never sees a half-written file under its final name. The temp file is removed on any
exception, KeyboardInterrupt included. Temp files left by a killed process (SIGKILL) carry the
target's name and the writer's pid, ``.<name>.<pid>.<random>.part``; the next
``ensure_writable_dir`` of their folder (every write starts with one) removes those whose writer
is gone (never one a live process is still writing).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from mnist_data.errors import OutputError

_SUFFIX = ".part"
_DISK_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM)
_TEMP_NAME = re.compile(r"\..+\.([0-9]+)\.[a-z0-9_]+\.part")  # .<name>.<pid>.<random>.part


def _prefix(path: Path) -> str:
    return f".{path.name}."


def _owner_alive(temp: Path) -> bool:
    """Whether the process that named ``temp`` may still be writing it (unknown owners count as gone)."""
    match = _TEMP_NAME.fullmatch(temp.name)
    if match is None:
        return False
    pid = int(match.group(1))
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but belongs to someone else
        pass
    try:
        modified = temp.stat().st_mtime
    except OSError:
        return False
    return not _dead_or_newer(pid, modified)


def _dead_or_newer(pid: int, modified: float) -> bool:
    """Linux: whether ``pid`` is a zombie (a killed writer nobody reaped), or a process started
    after the temp file was last written (its pid was reused). Elsewhere: False."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return False
    return fields[0] in ("Z", "X") or started > modified + 1


def _sweep(folder: Path) -> None:
    """Remove our temp files in ``folder`` whose writer is gone."""
    for stale in folder.glob(f".*{_SUFFIX}"):
        if _TEMP_NAME.fullmatch(stale.name) and stale.is_file() and not _owner_alive(stale):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def ensure_writable_dir(folder: str | Path) -> None:
    """Create ``folder`` if needed, check that files can be created in it, sweep killed writes' temp files.

    Raises:
        OutputError: The folder cannot be created or written (read-only, permissions, disk full).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OutputError(folder, exc.strerror or str(exc)) from exc
    _sweep(folder)


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``path`` only if the block completes.

    Raises:
        OutputError: The folder is not writable or the disk is full; ``path`` is untouched.
    """
    path = Path(path)
    ensure_writable_dir(path.parent)  # also sweeps temp files that killed writers left there
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f"{_prefix(path)}{os.getpid()}.", suffix=_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise OutputError(path, exc.strerror or str(exc)) from exc
    tmp = Path(tmp_name)
    f = os.fdopen(fd, "wb")
    try:
        try:
            yield f
        except OSError as exc:  # a write in the block: disk full or a size limit is ours to report
            if exc.errno in _DISK_ERRNOS:
                raise OutputError(path, exc.strerror or str(exc)) from exc
            raise
        try:
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError as exc:
            raise OutputError(path, exc.strerror or str(exc)) from exc
    except BaseException:
        with contextlib.suppress(OSError):  # buffered bytes that cannot be written are dropped with the file
            f.close()
        tmp.unlink(missing_ok=True)
        raise
