"""Shared fixtures: loopback HTTP servers and throwaway copies of the project run with real DVC."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("mnist_data", "stages", "dvc.yaml", "params.yaml", "pyproject.toml")


class _Files(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path.rsplit("/", 1)[-1])
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[dict[str, bytes]], str]]:
    """Start loopback HTTP servers serving ``{filename: bytes}``; returns each one's base URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(files: dict[str, bytes]) -> str:
        handler = type("Handler", (_Files,), {"files": dict(files)})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class Project:
    """A copy of this project in a temp git repo with DVC initialised, and helpers to run it."""

    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path, self.env = path, env

    def run(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(args, cwd=self.path, env={**self.env, **(env or {})}, text=True,
                                capture_output=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{args} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def dvc(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "dvc", *args, **kw)  # type: ignore[arg-type]

    def set_params(self, **sections: dict) -> None:
        """Merge ``sections`` into the copy's params.yaml (one level deep per section)."""
        p = self.path / "params.yaml"
        params = yaml.safe_load(p.read_text())
        for name, values in sections.items():
            params.setdefault(name, {}).update(values)
        p.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A fresh copy of the project: git repo, ``dvc init``, analytics off, DVC state kept inside."""
    path = tmp_path / "project"
    path.mkdir()
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, path / name)
    (path / "data").mkdir()
    shutil.copy2(ROOT / "data" / ".gitignore", path / "data" / ".gitignore")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MNIST_"))}
    env.update({
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site-cache"),
        "MNIST_DATA_CACHE": str(tmp_path / "loader-cache"),
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "PYTHONPATH": str(path),
    })
    proj = Project(path, env)
    proj.run("git", "init", "-q", "-b", "main")
    proj.dvc("init", "-q")
    proj.dvc("config", "core.analytics", "false")
    proj.set_params(fetch={"connect_timeout": 2, "read_timeout": 2, "deadline": 20, "retries": 1, "backoff": 0.01})
    proj.run("git", "add", "-A")
    proj.run("git", "commit", "-qm", "init")
    return proj


@pytest.fixture(autouse=True)
def _private_loader_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the loader's verification cache out of the user's home during tests."""
    monkeypatch.setenv("MNIST_DATA_CACHE", str(tmp_path / "loader-cache"))
