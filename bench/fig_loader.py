"""Figures of the loader against the baseline: warm reads, one shuffled epoch, peak RSS.

Each side runs in a child process of its own (``probe.py``), so neither's memory or warm caches
leak into the other. Ours reads the repo's ``data/processed``; the baseline reads the ``.gz``
archives its cold run downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from context import Bench
from copies import Repo
from measure import ChildRun, median, run_child
from report import Row

SECTION = "loader: read_data_sets() and next_batch(100)"


def _probe(bench: Bench, repo: Repo, *args: str, env: dict[str, str] | None = None) -> tuple[ChildRun, dict[str, Any]]:
    run = run_child([bench.python(), bench.probe(), *args], bench.tmp, env or repo.env)
    return run, json.loads(run.stdout)


def measure(bench: Bench, repo: Repo, base_dir: Path) -> list[Row]:
    """Warm read, epoch and RSS figures."""
    opts = bench.options
    processed = str(repo.path / "data" / "processed")
    bench.log("loader timings (ours, then baseline)")
    _, ours = _probe(bench, repo, "timings", "ours", processed, "--reads", str(opts.reads), "--epochs", str(opts.epochs))
    _, base = _probe(bench, repo, "timings", "baseline", str(base_dir), "--reads", str(opts.baseline_reads),
                     "--epochs", str(opts.epochs))
    if not ours["source"].startswith(str(repo.path)):
        raise RuntimeError(f"the probe loaded mnist_data from {ours['source']}, not from the run's copy {repo.path}")
    bench.log("loader peak RSS")
    rss: dict[str, tuple[ChildRun, dict[str, Any]]] = {}
    for impl, folder in (("ours", processed), ("baseline", str(base_dir))):
        rss[f"{impl}_read"] = _probe(bench, repo, "rss", impl, folder)
        rss[f"{impl}_epoch"] = _probe(bench, repo, "rss", impl, folder, "--epoch")
    fresh = {**repo.env, "MNIST_DATA_CACHE": str(bench.tmp / "loader-cache-fresh")}
    rss["ours_first_read"] = _probe(bench, repo, "rss", "ours", processed, env=fresh)
    floor = run_child([bench.python(), "-c", "import numpy"], bench.tmp, repo.env)
    bench.details["loader"] = {"ours": ours, "baseline": base, "python_numpy_maxrss": floor.maxrss,
                               "rss": {k: {"maxrss": r.maxrss, **j} for k, (r, j) in rss.items()}}

    read_ours, read_base = median(ours["read_s"]), median(base["read_s"])
    epoch_ours, epoch_base = median(ours["epoch_s"]), median(base["epoch_s"])
    speedup = read_base / read_ours
    arrays = rss["ours_read"][1]["array_bytes"]

    def share(key: str) -> str:
        ours_x, base_x = rss[f"ours_{key}"][0].maxrss / arrays, rss[f"baseline_{key}"][0].maxrss / arrays
        return f"RSS = {ours_x:.2f}x arrays (baseline {base_x:.2f}x)"

    return [
        Row(SECTION, "warm read_data_sets() (baseline: re-gunzip + parse + scale)", read_ours, read_base,
            note=f"{speedup:,.0f}x faster").check("≥ 50x faster", speedup >= 50),
        Row(SECTION, f"one epoch of next_batch({ours['batch']}), shuffled, {ours['train_examples']:,} examples",
            epoch_ours, epoch_base).check("≤ 0.6x baseline", epoch_ours <= 0.6 * epoch_base),
        Row(SECTION, "bytes of the arrays returned (3 splits)", arrays, rss["baseline_read"][1]["array_bytes"], unit="B"),
        Row(SECTION, "peak RSS: read_data_sets() (child process)", rss["ours_read"][0].maxrss,
            rss["baseline_read"][0].maxrss, unit="B", note=share("read")),
        Row(SECTION, "peak RSS: read + one epoch", rss["ours_epoch"][0].maxrss, rss["baseline_epoch"][0].maxrss, unit="B",
            note=share("epoch")),
        Row(SECTION, "peak RSS: first read ever (value scan; baseline: read)", rss["ours_first_read"][0].maxrss,
            rss["baseline_read"][0].maxrss, unit="B"),
        Row(SECTION, "peak RSS: python -c 'import numpy' (floor)", floor.maxrss, unit="B"),
    ]
