"""Figures of storage: bytes on disk per data version, and what ``dvc push``/``dvc pull`` move.

The repo gets a local-directory remote, its data version is committed and pushed, and a fresh
``git clone`` pulls it back; the bytes that land in the clone's DVC cache are the bytes the pull
transferred. A second clone pulls only the ``split`` stage's outputs (the three processed
splits, all a consumer of the loader needs). The baseline keeps, and downloads, the four ``.gz``
archives.
"""

from __future__ import annotations

from pathlib import Path

from context import Bench, Data
from copies import Repo
from measure import disk_bytes
from report import Row

SECTION = "storage: per data version"


def measure(bench: Bench, repo: Repo, base_dir: Path, data: Data, base_cold_s: float) -> list[Row]:
    """Disk, remote and pull figures."""
    outputs = (repo.path / "data", repo.path / "reports")
    # The per-stage figures re-ran each stage by hand, leaving fresh copies of every output;
    # relink them to the cache as `dvc repro` leaves them (cache.type decides: link or copy).
    repo.dvc("checkout", "--relink")
    workspace = disk_bytes(*outputs)
    cache = disk_bytes(repo.path / ".dvc" / "cache")
    total = disk_bytes(*outputs, repo.path / ".dvc" / "cache")
    archives = disk_bytes(base_dir)
    remote = bench.tmp / "remote"
    bench.log("dvc push to a local remote, then dvc pull into fresh clones")
    repo.dvc("remote", "add", "-d", "bench", str(remote))
    repo.commit("data version")
    push = repo.dvc("push")
    clone = repo.clone(bench.tmp / "clone", bench.tmp / "clone.private")
    pull = clone.dvc("pull")
    pulled = disk_bytes(clone.path / ".dvc" / "cache")
    partial = repo.clone(bench.tmp / "clone-split", bench.tmp / "clone-split.private")
    pull_split = partial.dvc("pull", "split")
    pulled_split = disk_bytes(partial.path / ".dvc" / "cache")
    bench.details["storage"] = {
        "workspace": workspace, "cache": cache, "workspace_plus_cache": total, "baseline_archives": archives,
        "remote": disk_bytes(remote), "push_s": push.wall_s, "pull_s": pull.wall_s, "pull_bytes": pulled,
        "pull_split_s": pull_split.wall_s, "pull_split_bytes": pulled_split, "archive_bytes_declared": data.archive_bytes,
    }
    bench.remove(clone.path, partial.path)
    return [
        Row(SECTION, "bytes on disk: workspace + DVC cache (baseline: its 4 .gz)", total, archives, unit="B",
            note=f"workspace {workspace / 1e6:,.0f} MB, cache {cache / 1e6:,.0f} MB, "
                 f"{(workspace + cache - total) / 1e6:,.0f} MB of it shared as links"),
        Row(SECTION, "bytes in the DVC remote after dvc push", disk_bytes(remote), archives, unit="B"),
        Row(SECTION, "dvc pull, fresh clone: bytes transferred (baseline: download)", pulled, archives, unit="B"),
        Row(SECTION, "dvc pull, fresh clone: wall (baseline: cold run)", pull.wall_s, base_cold_s),
        Row(SECTION, "dvc pull split (processed splits only): bytes", pulled_split, archives, unit="B"),
        Row(SECTION, "dvc pull split: wall (baseline: cold run)", pull_split.wall_s, base_cold_s),
    ]
