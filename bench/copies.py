"""Throwaway copies of the project: a snapshot taken once per run, and git + DVC repos made from it.

Other people edit the library while benchmarks run, so the project's files are copied once at
the start (the snapshot) and every repo of the run is made from that snapshot. Each repo gets
``git init``, ``dvc init``, analytics and update checks off, and a private ``DVC_SITE_CACHE_DIR``
and loader cache; ``PYTHONPATH`` points at the repo, so its stages and loader are the ones run.
"""

from __future__ import annotations

import configparser
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from measure import ChildRun, run_child

PROJECT_FILES = ("mnist_data", "stages", "dvc.yaml", "params.yaml", "pyproject.toml", "data/.gitignore")
_GIT_IDENTITY = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
                 "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}


def cache_settings(root: Path) -> dict[str, str]:
    """The project's ``[cache]`` settings in .dvc/config (e.g. ``cache.type``), to apply to every repo.

    Only the cache section is carried over: it changes how DVC stores outputs, hence the figures;
    remotes and the rest point at the project's own folders.
    """
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(root / ".dvc" / "config")
    except configparser.Error:
        return {}
    if not parser.has_section("cache"):
        return {}
    return {f"cache.{k}": v.strip().strip("\"'") for k, v in parser.items("cache")}  # configobj quotes lists


def snapshot(root: Path, dest: Path) -> Path:
    """Copy the project's pipeline files from ``root`` into ``dest``; return ``dest``."""
    for name in PROJECT_FILES:
        src, out = root / name, dest / name
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, out, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, out)
    return dest


class Repo:
    """A git + DVC repository made from the snapshot, and the environment to run it with.

    Args:
        path: The repository's folder.
        env: Environment for every command run in it.
    """

    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path, self.env = path, env

    @classmethod
    def create(cls, snap: Path, path: Path, private: Path, mirrors: str, files: Mapping[str, Any] | None = None,
               settings: Mapping[str, str] | None = None) -> Repo:
        """Copy ``snap`` to ``path``, pin ``files`` in params.yaml, init git and DVC, commit.

        Args:
            snap: The snapshot folder.
            path: The new repository's folder (must not exist).
            private: Folder for this repo's DVC site cache and loader cache.
            mirrors: Value of ``MNIST_MIRRORS`` for every run.
            files: ``dataset.files`` override, or None to build the definition's own files.
            settings: ``dvc config`` keys and values to set (see :func:`cache_settings`).
        """
        shutil.copytree(snap, path)
        repo = cls(path, _env(path, private, mirrors))
        if files is not None:
            repo.set_params(dataset={"files": dict(files)})
        repo.init(settings or {})
        return repo

    @classmethod
    def empty(cls, path: Path, private: Path, files: Mapping[str, str]) -> Repo:
        """A repo holding only ``files`` (name -> text), initialised and committed."""
        path.mkdir(parents=True)
        for name, text in files.items():
            (path / name).write_text(text)
        repo = cls(path, _env(path, private, ""))
        repo.init()
        return repo

    def init(self, settings: Mapping[str, str] | None = None) -> None:
        """git init, dvc init with analytics and update checks off, ``settings`` applied, first commit."""
        self.run("git", "init", "-q", "-b", "main")
        self.dvc("init", "-q")
        for key, value in {"core.analytics": "false", "core.check_update": "false", **(settings or {})}.items():
            self.dvc("config", key, value)
        self.commit("snapshot")

    def clone(self, path: Path, private: Path) -> Repo:
        """``git clone`` this repo to ``path`` (its DVC config, remote included, comes along)."""
        run_child(["git", "clone", "-q", str(self.path), str(path)], self.path.parent, self.env)
        return Repo(path, _env(path, private, self.env["MNIST_MIRRORS"]))

    def run(self, *args: str, check: bool = True, timeout: float = 1800) -> ChildRun:
        """Run a command in the repo and measure it."""
        return run_child(args, self.path, self.env, timeout=timeout, check=check)

    def dvc(self, *args: str, check: bool = True, timeout: float = 1800) -> ChildRun:
        """Run ``dvc ARGS`` with this venv's interpreter."""
        return self.run(sys.executable, "-m", "dvc", *args, check=check, timeout=timeout)

    def commit(self, message: str) -> None:
        """Stage everything git sees and commit it (in this throwaway repo only)."""
        self.run("git", "add", "-A")
        self.run("git", "commit", "-qm", message, "--allow-empty")

    def set_params(self, **sections: Mapping[str, Any]) -> None:
        """Merge ``sections`` one level deep into the repo's params.yaml."""
        p = self.path / "params.yaml"
        params = yaml.safe_load(p.read_text())
        for name, values in sections.items():
            params.setdefault(name, {}).update(values)
        p.write_text(yaml.safe_dump(params, sort_keys=False))

    def data_stage(self, output: str = "data/processed/train.npz") -> tuple[str | None, bool]:
        """The stage in dvc.yaml that writes ``output``, and whether other stages run after it.

        Returns:
            ``(name, has_downstream)``; name is None when no stage declares ``output``.
        """
        stages = yaml.safe_load((self.path / "dvc.yaml").read_text()).get("stages", {})
        paths = {name: ({_path(e) for e in st.get("deps", [])}, {_path(e) for e in st.get("outs", [])})
                 for name, st in stages.items()}
        target = next((name for name, (_, outs) in paths.items() if output in outs), None)
        if target is None:
            return None, False
        upstream, todo = {target}, [target]
        while todo:
            deps = paths[todo.pop()][0]
            for name, (_, outs) in paths.items():
                if name not in upstream and outs & deps:
                    upstream.add(name)
                    todo.append(name)
        return target, len(upstream) < len(stages)

    def stage_commands(self) -> dict[str, str]:
        """Each stage's exact command as ``dvc repro`` ran it, read from dvc.lock."""
        lock = yaml.safe_load((self.path / "dvc.lock").read_text())
        return {name: stage["cmd"] for name, stage in lock["stages"].items()}


def _path(entry: Any) -> str:
    """The path of a deps/outs entry of dvc.yaml: a string, or a one-key mapping of path to options."""
    return next(iter(entry)) if isinstance(entry, dict) else str(entry)


def _env(path: Path, private: Path, mirrors: str) -> dict[str, str]:
    """The environment of a repo: this venv first on PATH, the repo on PYTHONPATH, private DVC state."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MNIST_", "PYTHON"))}
    env.update(_GIT_IDENTITY)
    env.update({
        "PATH": os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
        "PYTHONPATH": str(path),
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(private / "dvc-site-cache"),
        "MNIST_DATA_CACHE": str(private / "loader-cache"),
        "MNIST_MIRRORS": mirrors,
    })
    return env
