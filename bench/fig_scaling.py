"""Figures of scaling: synthetic sets of growing size through the whole pipeline and the baseline.

For each size (total images, split 6:1 into train and test like MNIST), archives are streamed to
the mirror folder, a fresh repo pins them with a ``dataset.files`` override and runs a cold
``dvc repro`` (wall time; peak RSS of the largest process in the tree), then each stage's
exact command is run again as a child for its own peak RSS. The baseline's cold run reads the
same archives. Everything of a size is deleted before the next one. The growth exponent is the
least-squares slope of log(figure) against log(images): 1 is linear.
"""

from __future__ import annotations

from typing import Any

from context import Bench
from fig_dvc import baseline_cold, stage_limit, stage_runs
from measure import disk_bytes, loglog_slope
from report import Row
from synth import split_sizes, write_synthetic

SECTION = "scaling: synthetic sets, whole pipeline, cold"
LINEAR = 1.10  # largest growth exponent still called linear (noise at 3 sizes is a few hundredths)


def measure_size(bench: Bench, n: int) -> dict[str, Any]:
    """All figures of one size."""
    n_train, n_test = split_sizes(n)
    folder = bench.serve_root / f"n{n}"
    bench.log(f"scaling n={n:,}: writing synthetic archives")
    files = write_synthetic(folder, n_train, n_test, seed=n)
    url = f"{bench.mirror}n{n}/"
    repo = bench.new_repo(f"scale-{n}", url, files)
    base_dir = bench.tmp / f"scale-{n}-baseline"
    try:
        bench.log(f"scaling n={n:,}: cold dvc repro")
        repro = repo.dvc("repro")
        bench.log(f"scaling n={n:,}: stages as children")
        stages = stage_runs(bench, repo, 1)
        bench.log(f"scaling n={n:,}: baseline cold run")
        base = baseline_cold(bench, repo, base_dir, url)
        disk = disk_bytes(repo.path / "data", repo.path / "reports", repo.path / ".dvc" / "cache")
    finally:
        bench.remove(repo.path, base_dir, folder)
    worst = max(stages.values(), key=lambda m: max(m["maxrss"]) / stage_limit(m["largest_data_file"]))
    return {"images": n, "train": n_train, "test": n_test, "repro_s": repro.wall_s, "repro_maxrss": repro.maxrss,
            "baseline_s": base.wall_s, "baseline_maxrss": base.maxrss, "disk_bytes": disk, "stages": stages,
            "worst_stage": next(k for k, v in stages.items() if v is worst)}


def measure(bench: Bench, sizes: tuple[int, ...]) -> list[Row]:
    """Rows per size, then the growth exponents."""
    results = [measure_size(bench, n) for n in sizes]
    bench.details["scaling"] = results
    rows: list[Row] = []
    for r in results:
        label = f"{r['images']:,} images"
        w = r["stages"][r["worst_stage"]]
        rss, limit = max(w["maxrss"]), stage_limit(w["largest_data_file"])
        rows += [
            Row(SECTION, f"{label}: cold dvc repro (baseline: its cold run)", r["repro_s"], r["baseline_s"]),
            Row(SECTION, f"{label}: peak RSS, largest process", r["repro_maxrss"], r["baseline_maxrss"], unit="B"),
            Row(SECTION, f"{label}: worst stage peak RSS (baseline: its array set)", rss, w["largest_data_file"], unit="B",
                note=f"{r['worst_stage']}, limit {limit / 1e6:,.0f} MB").check("≤ 2x set + 100 MB", rss <= limit),
        ]
    if len(results) >= 2:
        xs = [r["images"] for r in results]
        keys = ("repro_s", "baseline_s", "repro_maxrss", "baseline_maxrss")
        slopes = {k: loglog_slope(xs, [r[k] for r in results]) for k in keys}
        last = {k: loglog_slope(xs[-2:], [r[k] for r in results[-2:]]) for k in keys}
        bench.details["scaling_exponents"] = {"all_sizes": slopes, "last_two_sizes": last}
        rows += [
            Row(SECTION, "time growth exponent (log-log slope)", slopes["repro_s"], slopes["baseline_s"], unit="x",
                note=f"last two sizes: {last['repro_s']:.2f} (baseline {last['baseline_s']:.2f})")
            .check(f"≤ {LINEAR} (linear)", slopes["repro_s"] <= LINEAR),
            Row(SECTION, "peak RSS growth exponent (log-log slope)", slopes["repro_maxrss"], slopes["baseline_maxrss"],
                unit="x", note=f"last two sizes: {last['repro_maxrss']:.2f} (baseline {last['baseline_maxrss']:.2f})")
            .check(f"≤ {LINEAR} (linear)", slopes["repro_maxrss"] <= LINEAR),
        ]
    return rows
