"""Benchmark the pipeline and the loader against a TF-style baseline; print a table, write JSON.

Usage: ``python bench/run.py [--quick] [--sizes 70000 350000 700000] [--output PATH] [--keep]``

Everything runs in a temp folder: a snapshot of the project taken at the start, throwaway git +
DVC repos made from it, and a loopback HTTP mirror (a child process on 127.0.0.1, free port)
serving the real MNIST archives from ``../shared/mnist`` when they exist, else a synthetic
MNIST-sized set. The temp folder and the mirror are removed at the end, on error and on Ctrl-C.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from types import FrameType
from typing import Any

import fig_dvc
import fig_loader
import fig_scaling
import fig_storage
import mirror
from context import QUICK, Bench, Data, Options
from copies import cache_settings, snapshot
from measure import median
from report import Row, render, write_json
from synth import NAMES, write_synthetic

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "mnist"
DEFAULT_OUTPUT = ROOT / "bench" / "results" / "latest.json"


def _size(text: str) -> int:
    """``70000``, ``70k`` or ``1.5M`` as a number of images."""
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:].lower(), 1)
    value = int(float(text[:-1] if scale > 1 else text) * scale)
    if value < 7 * 5_001:
        raise argparse.ArgumentTypeError(f"{text}: need at least {7 * 5_001} images (the validation split takes 5000)")
    return value


def _prepare_data(serve_root: Path, url: str, bench_log: Any) -> Data:
    """Real MNIST if ../shared/mnist has the four archives, else a synthetic MNIST-sized set."""
    if all((SHARED_MNIST / name).is_file() for name in NAMES.values()):
        (serve_root / "mnist").symlink_to(SHARED_MNIST.resolve(), target_is_directory=True)
        size = sum((SHARED_MNIST / name).stat().st_size for name in NAMES.values())
        return Data(f"real MNIST ({SHARED_MNIST})", url + "mnist/", None, size)
    bench_log(f"{SHARED_MNIST} not found: generating a synthetic MNIST-sized set (60,000 + 10,000)")
    folder = serve_root / "mnist-synthetic"
    files = write_synthetic(folder, 60_000, 10_000, seed=1)
    size = sum((folder / name).stat().st_size for name in NAMES.values())
    return Data("synthetic, MNIST-sized (60,000 + 10,000 images)", url + "mnist-synthetic/", files, size)


def _meta(options: Options, settings: dict[str, str], data: Data, argv: list[str]) -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            return ""

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join(["python", *argv]),
        "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)), "cpu": cpu,
        "platform": platform.platform(), "python": platform.python_version(),
        "dvc": importlib.metadata.version("dvc"), "numpy": importlib.metadata.version("numpy"),
        "load_average_at_start": os.getloadavg(),
        "project_commit": git("rev-parse", "HEAD"), "project_changes": git("status", "--porcelain").splitlines(),
        "data": data.label, "options": asdict(options), "dvc_settings": settings,
    }


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(bench: Bench, data: Data) -> list[Row]:
    """Every figure, in an order where each uses what the previous left behind."""
    rows, repo, base_dir = fig_dvc.cold(bench, data)
    base_cold_s = median(bench.details["cold"]["baseline"]["wall_s"])
    rows += fig_dvc.noop(bench, repo, base_dir, data.url)
    rows += fig_dvc.stages(bench, repo)
    rows += fig_loader.measure(bench, repo, base_dir)
    rows += fig_storage.measure(bench, repo, base_dir, data, base_cold_s)
    bench.remove(repo.path, base_dir)
    if bench.options.sizes:
        rows += fig_scaling.measure(bench, bench.options.sizes)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, scaling sizes 70k and 350k only")
    parser.add_argument("--sizes", nargs="*", type=_size, metavar="N",
                        help="scaling sizes in images, e.g. 70k 350k 700k (none: skip scaling)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"JSON results (default {DEFAULT_OUTPUT})")
    parser.add_argument("--tmp", type=Path, default=None, help="parent of the temp folder (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (for profiling); the mirror still stops")
    args = parser.parse_args(argv)
    options = QUICK if args.quick else Options()
    if args.sizes is not None:
        options = replace(options, sizes=tuple(sorted(set(args.sizes))))

    signal.signal(signal.SIGTERM, _on_sigterm)
    tmp = Path(tempfile.mkdtemp(prefix="mnist-bench-", dir=args.tmp))
    try:
        snap = snapshot(ROOT, tmp / "snapshot")
        serve_root = tmp / "serve"
        serve_root.mkdir()
        with mirror.serve(serve_root) as url:
            bench = Bench(ROOT, tmp, snap, serve_root, url, options, cache_settings(ROOT))
            bench.log(f"temp folder {tmp}, mirror {url}")
            data = _prepare_data(serve_root, url, bench.log)
            meta = _meta(options, bench.settings, data, ["bench/run.py", *(sys.argv[1:] if argv is None else argv)])
            rows = run(bench, data)
        table = render(rows)
        load = "/".join(f"{x:.2f}" for x in meta["load_average_at_start"])
        header = (f"MNIST pipeline benchmark — {meta['date']} — {meta['cores']} cores ({meta['cpu']}) — "
                  f"data: {data.label}\ncommand: {meta['command']} — load average at start {load} — "
                  f"ratio = ours / baseline; times are medians")
        print(f"{header}\n\n{table}")
        meta["table"] = table
        meta["wall_s"] = round(time.monotonic() - bench.started, 1)
        meta["load_average_at_end"] = os.getloadavg()
        write_json(args.output, meta, rows, bench.details)
        misses = [r.figure for r in rows if r.passed is False]
        print(f"\n{sum(r.passed is True for r in rows)} targets met, {len(misses)} missed; JSON: {args.output}")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: stopping children and removing the temp folder", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
