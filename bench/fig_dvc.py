"""Figures of the DVC pipeline: cold and no-op ``dvc repro``, ``dvc status``, DVC's floor, each stage.

Cold runs each use a fresh repo made from the snapshot (empty DVC cache, everything downloaded
from the loopback mirror) and alternate with the baseline's cold run (a fresh folder, one
process: download, gunzip, parse, scale, split). The last cold repo is kept for the later figures.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from context import Bench, Data
from copies import Repo
from measure import MB, ChildRun, median, run_child
from report import Row

SECTION_COLD = "pipeline: cold and no-op"
SECTION_STAGES = "pipeline: each stage (exact cmd from dvc.lock, run as a child)"
_FLOOR_DVC_YAML = "stages:\n  copy:\n    cmd: cp a.txt b.txt\n    deps: [a.txt]\n    outs: [b.txt]\n"


def baseline_cold(bench: Bench, repo: Repo, folder: Path, url: str) -> ChildRun:
    """One cold run of the baseline in a new process, into ``folder`` (which must not hold the archives)."""
    return run_child([bench.python(), bench.probe(), "cold", str(folder), url], bench.tmp, repo.env)


def cold(bench: Bench, data: Data) -> tuple[list[Row], Repo, Path]:
    """Cold ``dvc repro`` (all stages, and the data stages alone) against the baseline's cold run.

    One discarded warm-up run of each comes first (page cache, .pyc files, first-touch memory).

    Returns:
        The rows, the last cold repo (built, kept) and the last baseline folder (archives present).
    """
    opts = bench.options
    base_dir = bench.tmp / "baseline-cold"
    warm = bench.new_repo("cold-warmup", data.url, data.files)
    target, downstream = warm.data_stage()
    bench.log("warm-up: one cold dvc repro and one baseline cold run, discarded")
    warm.dvc("repro")
    baseline_cold(bench, warm, base_dir, data.url)
    bench.remove(warm.path, base_dir)
    runs: dict[str, list[ChildRun]] = {"all": [], "data": [], "baseline": []}
    repo: Repo | None = None
    for i in range(max(opts.cold_repeats, opts.baseline_repeats)):
        if i < opts.cold_repeats:
            if target is not None and downstream:
                only = bench.new_repo(f"cold-data-{i}", data.url, data.files)
                bench.log(f"cold dvc repro {target} (data stages only) {i + 1}/{opts.cold_repeats}")
                runs["data"].append(only.dvc("repro", target))
                bench.remove(only.path)
            if repo is not None:
                bench.remove(repo.path)
            repo = bench.new_repo(f"cold-{i}", data.url, data.files)
            bench.log(f"cold dvc repro {i + 1}/{opts.cold_repeats}")
            runs["all"].append(repo.dvc("repro"))
        if i < opts.baseline_repeats and repo is not None:
            bench.remove(base_dir)
            bench.log(f"baseline cold run {i + 1}/{opts.baseline_repeats}")
            runs["baseline"].append(baseline_cold(bench, repo, base_dir, data.url))
    if repo is None:
        raise ValueError("cold_repeats must be at least 1")
    bench.details["cold"] = {k: {"wall_s": [r.wall_s for r in v], "maxrss": [r.maxrss for r in v],
                                 "cpu_s": [r.cpu_s for r in v], "sys_s": [r.sys_s for r in v]} for k, v in runs.items()}
    bench.details["cold"]["data_stage"] = target
    t = {k: median([r.wall_s for r in v]) for k, v in runs.items()}
    low = {k: min((r.wall_s for r in v), default=float("nan")) for k, v in runs.items()}
    n_stages = len(repo.stage_commands())
    rows = [
        Row(SECTION_COLD, f"cold dvc repro, all {n_stages} stages (baseline: its reader, cold)", t["all"], t["baseline"],
            note=f"min {low['all']:.2f} s vs {low['baseline']:.2f} s").check("≤ 4x baseline", t["all"] <= 4 * t["baseline"]),
    ]
    if runs["data"]:
        rows.append(Row(SECTION_COLD, f"cold dvc repro {target} (data stages only)", t["data"], t["baseline"],
                        note=f"min {low['data']:.2f} s vs {low['baseline']:.2f} s")
                    .check("≤ 4x baseline", t["data"] <= 4 * t["baseline"]))
    rows.append(Row(SECTION_COLD, "cold run peak RSS (largest process)", max(r.maxrss for r in runs["all"]),
                    max(r.maxrss for r in runs["baseline"]), unit="B"))
    return rows, repo, base_dir


def noop(bench: Bench, repo: Repo, base_dir: Path, url: str) -> list[Row]:
    """No-op ``dvc repro`` and ``dvc status`` against the baseline re-run and DVC's own floor.

    The kinds of run are interleaved, so load from other processes on the machine hits all alike.
    """
    n = bench.options.noop_repeats
    bench.log(f"no-op dvc repro / dvc status / DVC floor, interleaved x{n}")
    floor_repo = Repo.empty(bench.tmp / "floor", bench.tmp / "floor.private", {"a.txt": "a\n", "dvc.yaml": _FLOOR_DVC_YAML})
    floor_repo.dvc("repro")
    repo.dvc("status")  # the first call after a repro may still fill DVC's state database
    kinds: dict[str, Callable[[], ChildRun]] = {
        "noop_repro": lambda: repo.dvc("repro"),
        "status": lambda: repo.dvc("status"),
        "baseline_rerun": lambda: baseline_cold(bench, repo, base_dir, url),
        "floor_noop_repro": lambda: floor_repo.dvc("repro"),
        "floor_status": lambda: floor_repo.dvc("status"),
        "dvc_version": lambda: floor_repo.dvc("--version"),
        "import_dvc_cli": lambda: floor_repo.run(bench.python(), "-c", "import dvc.cli"),
        "python_floor": lambda: floor_repo.run(bench.python(), "-c", "pass"),
    }
    runs: dict[str, list[ChildRun]] = {k: [] for k in kinds}
    for _ in range(n):
        for kind, measure in kinds.items():
            runs[kind].append(measure())
    for run in runs["noop_repro"]:
        if "Running stage" in run.stdout:
            raise RuntimeError(f"dvc repro was not a no-op:\n{run.stdout}")
    t = {k: median([r.wall_s for r in v]) for k, v in runs.items()}
    fastest = min(r.wall_s for r in runs["noop_repro"])
    bench.details["noop"] = {k: [r.wall_s for r in v] for k, v in runs.items()}
    floor = "DVC floor (1-stage pipeline)"
    return [
        Row(SECTION_COLD, "no-op dvc repro (baseline: its reader re-run, archives present)", t["noop_repro"],
            t["baseline_rerun"], note=f"min {fastest:.3f} s; DVC floor {t['floor_noop_repro']:.3f} s")
        .check("≤ 0.6 s", t["noop_repro"] <= 0.6),
        Row(SECTION_COLD, f"dvc status (baseline: {floor})", t["status"], t["floor_status"]),
        Row(SECTION_COLD, f"{floor}: no-op dvc repro", t["floor_noop_repro"]),
        Row(SECTION_COLD, f"{floor}: dvc status", t["floor_status"]),
        Row(SECTION_COLD, "DVC floor: dvc --version", t["dvc_version"]),
        Row(SECTION_COLD, "DVC floor: python -c 'import dvc.cli'", t["import_dvc_cli"]),
        Row(SECTION_COLD, "python -c pass", t["python_floor"]),
    ]


def largest_data_file(lock_stage: dict[str, Any]) -> int:
    """Bytes of the largest data file (under data/) a stage reads or writes, from its dvc.lock entry."""
    entries = list(lock_stage.get("deps", [])) + list(lock_stage.get("outs", []))
    return max((int(e.get("size", 0)) for e in entries if str(e.get("path", "")).startswith("data/")), default=0)


def stage_runs(bench: Bench, repo: Repo, repeats: int) -> dict[str, dict[str, Any]]:
    """Run each stage's exact dvc.lock command ``repeats`` times as a child; wall, peak RSS, largest file."""
    lock = yaml.safe_load((repo.path / "dvc.lock").read_text())["stages"]
    out: dict[str, dict[str, Any]] = {}
    for name, cmd in repo.stage_commands().items():
        runs = [repo.run(*shlex.split(cmd)) for _ in range(repeats)]
        out[name] = {"cmd": cmd, "wall_s": [r.wall_s for r in runs], "maxrss": [r.maxrss for r in runs],
                     "cpu_s": [r.cpu_s for r in runs], "sys_s": [r.sys_s for r in runs],
                     "largest_data_file": largest_data_file(lock[name])}
    return out


def stage_limit(largest: int) -> float:
    """The RSS target of a stage: twice the largest array set it handles, plus 100 MB."""
    return 2 * largest + 100 * MB


def stages(bench: Bench, repo: Repo) -> list[Row]:
    """Each stage's wall time and peak RSS against its memory target."""
    bench.log(f"stages, each run as a child x{bench.options.stage_repeats}")
    measured = stage_runs(bench, repo, bench.options.stage_repeats)
    bench.details["stages"] = measured
    rows = []
    for name, m in measured.items():
        rss, largest = max(m["maxrss"]), m["largest_data_file"]
        rows.append(Row(SECTION_STAGES, f"{name}: wall", median(m["wall_s"])))
        rows.append(Row(SECTION_STAGES, f"{name}: peak RSS (baseline: largest array set it handles)", rss, largest,
                        unit="B").check("≤ 2x set + 100 MB", rss <= stage_limit(largest)))
    return rows

