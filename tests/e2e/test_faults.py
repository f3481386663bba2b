"""Faults through the real stages and `dvc repro`: every failure is one clear error naming the
stage, nothing half-written is left under a final name, and the next run recovers by itself."""

from __future__ import annotations

import ast
import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from mnist_data import read_data_sets
from mnist_data.atomic import atomic_output, ensure_writable_dir
from mnist_data.idx import encode
from tests.conftest import ROOT, Project
from tests.faultserver import FaultServers, files, ok, refused_url, sequence, stall, status
from tests.synthetic import NAMES, Synthetic, make_synthetic

RAW = Path("data/raw/mnist")
RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TRAIN = NAMES["train_images"]
FETCH_OUTS = [f"--out={k}=data/raw/mnist/{n}" for k, n in zip(NAMES, RAW_FILES, strict=True)]

# Runs a command with a file-size limit and/or without the capabilities that let root ignore
# file permissions: python LAUNCH FSIZE|- DROP_DAC(0|1) PROGRAM ARGS...
LAUNCH = """
import ctypes, os, resource, sys
fsize, drop, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
if fsize != "-":
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(fsize), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
if drop == "1" and os.geteuid() == 0:
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, out of the bounding set (PR_CAPBSET_DROP)
        if libc.prctl(24, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
os.execv(argv[0], argv)
"""

# Imported by every Python process of a run (through PYTHONPATH), DVC's included, so faults can
# reach one stage only. FAULT_FSIZE="MODULE:BYTES" limits file sizes in `python -m MODULE` (a
# full disk for that stage, not for DVC). FAULT_PAUSE_FSYNC pauses the fsync of a temp file
# whose path contains it, after announcing it in FAULT_PAUSE_MARKER, so a signal can land while
# an .npz is fully written but not yet renamed into place.
SITECUSTOMIZE = """
import os
import sys
_module, _, _limit = os.environ.get("FAULT_FSIZE", "").partition(":")
if _module and _module in sys.orig_argv:
    import resource
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(_limit), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
_target = os.environ.get("FAULT_PAUSE_FSYNC")
if _target:
    import time
    _real_fsync = os.fsync

    def _paused_fsync(fd):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if _target in path and path.endswith(".part"):
            with open(os.environ["FAULT_PAUSE_MARKER"], "w") as marker:
                marker.write(path)
            time.sleep(30)
        _real_fsync(fd)

    os.fsync = _paused_fsync
"""


@pytest.fixture
def faults() -> Iterator[FaultServers]:
    servers = FaultServers()
    yield servers
    servers.stop_all()


def setup(project: Project, data: Synthetic, **fetch: float) -> None:
    project.set_params(dataset={"files": data.files_override()}, split={"validation_size": 20},
                       fetch={"read_timeout": 10, **fetch})


def part_files(project: Project) -> list[str]:
    return sorted(str(p.relative_to(project.path)) for p in (project.path / "data").rglob("*.part"))


def raw_names(project: Project) -> list[str]:
    folder = project.path / RAW
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def descendant(root_pid: int, needle: str) -> int | None:
    """The pid of a process below ``root_pid`` whose command line contains ``needle``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    for pid in parents:
        ancestor = parents.get(pid)
        while ancestor not in (None, 0, 1, root_pid):
            ancestor = parents.get(ancestor)
        if ancestor == root_pid:
            try:  # the module as an argument of its own: python, not a `sh -c "..."` around it
                if needle in Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0"):
                    return pid
            except OSError:
                continue
    return None


def start_repro(project: Project, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "dvc", "repro", *args], cwd=project.path, env={**project.env, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"dvc repro did not finish in {timeout} s\n{out}\n{err}") from None
    return proc.returncode, out, err


@contextlib.contextmanager
def reaped(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Yield ``proc``; on the way out kill its whole process group if it is still running."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def interrupt(proc: subprocess.Popen[str], sig: str, stage: str) -> tuple[int, str]:
    """SIGTERM the stage process itself (`kill <pid>`); SIGINT/SIGKILL the whole group (Ctrl-C, kill -9)."""
    if sig == "SIGTERM":
        pid = descendant(proc.pid, stage)
        assert pid is not None, f"no {stage} process under dvc"
        os.kill(pid, signal.SIGTERM)
    else:
        os.killpg(proc.pid, getattr(signal, sig))
    code, _, err = finish(proc)
    return code, err


def assert_recovers(project: Project, data: Synthetic, env: dict[str, str]) -> None:
    """The next plain `dvc repro`, fault gone, succeeds; nothing stray is left; the artifacts are right."""
    project.dvc("repro", env=env)
    assert part_files(project) == []
    assert raw_names(project) == sorted(RAW_FILES)
    for key, name in zip(NAMES, RAW_FILES, strict=True):
        assert (project.path / RAW / name).read_bytes() == data.raw[key]
    sets = read_data_sets(project.path / "data" / "processed", reshape=False)
    assert sets.train.num_examples + sets.validation.num_examples == len(data.arrays["train_labels"])
    np.testing.assert_array_equal(sets.test.labels, data.arrays["test_labels"])
    assert project.dvc("status", "-q", check=False).returncode == 0


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


# Mirrors.


def test_all_mirrors_failing_is_one_error_listing_each_then_a_good_mirror_recovers(project, faults):
    data = make_synthetic()
    setup(project, data)
    dead = refused_url()
    missing = faults({TRAIN: status(404)})
    html = faults({TRAIN: ok(b"<!doctype html><title>Moved</title>")})
    result = project.dvc("repro", env={"MNIST_MIRRORS": f"{dead} {missing.url},{html.url}"}, check=False)
    assert result.returncode != 0
    line = next(x for x in result.stderr.splitlines() if x.startswith("fetch: error: "))
    assert line.startswith(f"fetch: error: {TRAIN}: all 3 source(s) failed: ")
    assert f"[1] {dead}{TRAIN}: connection refused" in line
    assert f"[2] {missing.url}{TRAIN}: HTTP 404 Not Found (expected 200; not retried)" in line
    assert f"[3] {html.url}{TRAIN}: not a gzip archive but an HTML/XML page" in line
    assert "restored from the DVC cache with `dvc checkout`" in line
    assert "Traceback" not in result.stderr
    assert raw_names(project) == [] and part_files(project) == []
    assert_recovers(project, data, {"MNIST_MIRRORS": faults(files(data.by_filename())).url})


def test_an_unchanged_pipeline_needs_no_network(project, faults):
    data = make_synthetic()
    setup(project, data)
    good = faults(files(data.by_filename()))
    project.dvc("repro", env={"MNIST_MIRRORS": good.url})
    before = digests(project.path / "data" / "processed")
    good.stop()
    watcher = faults({name: status(500) for name in data.by_filename()})  # counts anything that still asks
    result = project.dvc("repro", env={"MNIST_MIRRORS": f"{watcher.url} {good.url} {refused_url()}"})
    assert "Running stage" not in result.stdout
    assert "Data and pipelines are up to date" in result.stdout
    assert watcher.connections == 0 and watcher.hits() == 0
    assert digests(project.path / "data" / "processed") == before


# Signals.


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_a_signal_during_a_download_leaves_nothing_and_the_next_run_recovers(project, faults, sig):
    data = make_synthetic()
    setup(project, data)
    archive = data.archives["train_images"]
    server = faults({**files(data.by_filename()), TRAIN: stall(archive, after=len(archive) // 2)})
    env = {"MNIST_MIRRORS": server.url}
    with reaped(start_repro(project, env)) as proc:
        assert wait_for(server.progress.is_set), "the download never started"
        code, err = interrupt(proc, sig, "stages.fetch")
    assert code != 0
    assert "train-images-idx3-ubyte" not in raw_names(project)
    if sig == "SIGINT":
        assert "fetch: interrupted; nothing was left under a final name" in err
    if sig == "SIGTERM":
        assert "fetch: terminated; nothing was left under a final name" in err
        assert "dvc checkout" in err
    if sig == "SIGKILL":
        assert part_files(project) != []  # nobody could clean up: the next run must
    else:
        assert part_files(project) == []
    assert "Traceback" not in err
    server.route(TRAIN, ok(archive))
    assert_recovers(project, data, env)


@pytest.fixture
def hook(tmp_path: Path, project: Project) -> Callable[..., dict[str, str]]:
    """Env entries that load SITECUSTOMIZE with the given FAULT_* settings."""
    folder = tmp_path / "hook"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return lambda **faults: {"PYTHONPATH": f"{folder}{os.pathsep}{project.path}", **faults}


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_a_signal_during_an_npz_write_leaves_nothing_and_the_next_run_recovers(project, faults, hook, tmp_path, sig):
    data = make_synthetic()
    setup(project, data)
    env = {"MNIST_MIRRORS": faults(files(data.by_filename())).url}
    marker = tmp_path / "paused"
    paused_env = {**env, **hook(FAULT_PAUSE_FSYNC="data/interim/normalized/.train.npz.", FAULT_PAUSE_MARKER=str(marker))}
    with reaped(start_repro(project, paused_env)) as proc:
        assert wait_for(marker.exists), "the normalize stage never reached its write"
        temp = Path(marker.read_text())
        assert temp.exists() and temp.stat().st_size > 0  # written in full, not yet renamed
        code, err = interrupt(proc, sig, "stages.normalize")
    assert code != 0
    normalized = project.path / "data" / "interim" / "normalized"
    assert not (normalized / "train.npz").exists()
    if sig == "SIGKILL":
        assert temp.exists()  # nobody could clean up: the next run must
    else:
        assert not temp.exists() and part_files(project) == []
        word = "interrupted" if sig == "SIGINT" else "terminated"
        assert f"normalize: {word}; nothing was left under a final name" in err
    assert_recovers(project, data, env)


def test_a_killed_writers_temp_file_is_swept_but_a_live_writers_is_not(tmp_path):
    target = tmp_path / "train.npz"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        of_dead = tmp_path / f".train.npz.{int(dead.stdout)}.abcd1234.part"
        of_live = tmp_path / f".train.npz.{live.pid}.abcd1234.part"
        of_other = tmp_path / f".test.npz.{int(dead.stdout)}.abcd1234.part"
        for temp in (of_dead, of_live, of_other):
            temp.write_bytes(b"half")
        ensure_writable_dir(tmp_path)  # what every stage does first: sweeps the folder
        assert not of_dead.exists() and not of_other.exists() and of_live.exists()
        of_dead.write_bytes(b"half")
        with atomic_output(target) as f:  # and what every write does
            f.write(b"new")
        assert target.read_bytes() == b"new"
        assert not of_dead.exists() and of_live.exists()
    finally:
        live.kill()
        live.wait()
    ensure_writable_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.npz"]


# Disk and permissions.


def launch(fsize: int | None, drop_dac: bool, *cmd: str) -> list[str]:
    return [sys.executable, "-c", LAUNCH, "-" if fsize is None else str(fsize), "1" if drop_dac else "0", *cmd]


def test_disk_full_during_a_download_keeps_the_previous_outputs(project, faults):
    data = make_synthetic()
    setup(project, data)
    env = {"MNIST_MIRRORS": faults(files(data.by_filename())).url}
    project.dvc("repro", env=env)
    before = digests(project.path / RAW)
    limit = len(data.raw["train_images"]) // 2  # the first file cannot be written in full
    result = project.run(*launch(limit, False, sys.executable, "-m", "stages.fetch", *FETCH_OUTS), env=env, check=False)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("fetch: error: data/raw/mnist/train-images-idx3-ubyte: cannot write: File too large "
                                "(free disk space or fix permissions, then run again)"), result.stderr
    assert "Traceback" not in result.stderr
    assert digests(project.path / RAW) == before
    assert part_files(project) == []
    assert project.dvc("status", "-q", check=False).returncode == 0


def test_disk_full_during_an_npz_write_then_checkout_restores(project, faults, hook):
    data = make_synthetic()
    setup(project, data)
    env = {"MNIST_MIRRORS": faults(files(data.by_filename())).url}
    project.dvc("repro", env=env)
    normalized = project.path / "data" / "interim" / "normalized"
    before = digests(normalized)
    limit = min(p.stat().st_size for p in normalized.glob("*.npz")) // 2
    result = project.dvc("repro", "--force", "--single-item", "normalize", check=False,
                         env={**env, **hook(FAULT_FSIZE=f"stages.normalize:{limit}")})
    assert result.returncode != 0
    line = next(x for x in result.stderr.splitlines() if x.startswith("normalize: error: "))
    assert line.startswith("normalize: error: data/interim/normalized/train.npz: cannot write: File too large")
    assert "restored from the DVC cache with `dvc checkout`" in line
    assert not (normalized / "train.npz").exists() and part_files(project) == []
    project.dvc("checkout")
    assert digests(normalized) == before
    assert "Data and pipelines are up to date" in project.dvc("repro", env=env).stdout


def _can_drop_dac() -> bool:
    if os.geteuid() != 0:
        return True  # file permissions already apply
    status = Path("/proc/self/status").read_text() if Path("/proc/self/status").exists() else ""
    effective = next((int(line.split()[1], 16) for line in status.splitlines() if line.startswith("CapEff:")), 0)
    return bool(effective & (1 << 8))  # CAP_SETPCAP: needed to drop capabilities from the bounding set


@pytest.mark.skipif(not _can_drop_dac(), reason="cannot run a subprocess without CAP_DAC_OVERRIDE here")
def test_an_unwritable_data_folder_fails_at_the_start(project, faults):
    data = make_synthetic()
    setup(project, data)
    server = faults(files(data.by_filename()))
    env = {"MNIST_MIRRORS": server.url}
    folder = project.path / "data"
    folder.chmod(0o555)
    try:
        result = project.run(*launch(None, True, sys.executable, "-m", "dvc", "repro"), env=env, check=False)
    finally:
        folder.chmod(0o755)
    assert result.returncode != 0
    line = next(x for x in result.stderr.splitlines() if x.startswith("fetch: error: "))
    assert line.startswith("fetch: error: data/raw/mnist: cannot write: Permission denied (free disk space or fix permissions")
    assert server.connections == 0  # failed before downloading anything
    assert_recovers(project, data, env)


# Concurrency.


def test_two_repros_at_once_one_runs_the_other_fails_fast_with_a_lock_message(project, faults):
    data = make_synthetic()
    setup(project, data)
    archive = data.archives["train_images"]
    server = faults({**files(data.by_filename()), TRAIN: sequence(stall(archive, after=1000), ok(archive))})
    env = {"MNIST_MIRRORS": server.url}
    first = start_repro(project, env)
    try:
        assert wait_for(server.progress.is_set), "the first repro never started downloading"
        started = time.monotonic()
        second = project.dvc("repro", env=env, check=False, timeout=60)
        assert time.monotonic() - started < 30
        assert second.returncode != 0
        # DVC holds its repo lock, or (while a stage command runs) a lock on the stage's outputs.
        assert re.search(r"Unable to acquire lock\. Most likely another DVC process is running"
                         r"|is busy, it is being blocked by:\s+\(PID \d+\): \S*dvc\S* repro", second.stderr), second.stderr
        assert "Running stage" not in second.stdout
        server.release()  # the stalled body ends short; the first repro retries and finishes
        code, _, err = finish(first)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert code == 0, err
    assert re.search(r"body ended after 1000 bytes|stalled: no data", err), err  # the retry that recovered it
    assert server.hits(TRAIN) == 2
    assert_recovers(project, data, env)


# Validation never hides in assert.


def test_no_validation_hides_in_assert():
    offenders = []
    for path in [*(ROOT / "mnist_data").rglob("*.py"), *(ROOT / "stages").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Assert):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_stages_still_validate_under_python_O(tmp_path):
    (tmp_path / "images").write_bytes(encode(np.zeros((3, 28, 28), np.uint8)))
    (tmp_path / "labels").write_bytes(encode(np.array([1, 2, 12], np.uint8)))
    result = subprocess.run(
        [sys.executable, "-O", "-m", "stages.decode", "--split", "images", "labels", "out/train.npz"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("decode: error: labels: label 12 at index 2 is outside 0..9")
    assert not (tmp_path / "out" / "train.npz").exists()

