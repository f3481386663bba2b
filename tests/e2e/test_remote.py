"""End to end: artifacts pushed to a real remote come back byte-identical; versions, experiments, metrics.

Every test runs real DVC in a throwaway copy of the project. The remotes are a local folder (the
default one .dvc/config ships) and a WebDAV server (wsgidav on cheroot) started here on loopback.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from mnist_data import read_data_sets
from mnist_data.artifacts import SPLITS
from mnist_data.transforms import scale_table
from tests.conftest import ROOT, Project
from tests.synthetic import Synthetic, make_synthetic

DEAD_MIRROR = "http://127.0.0.1:9/"  # nothing listens: a stage that tried to download would fail
VALIDATION = 20
STAGES = ("fetch", "decode", "normalize", "split", "report")


def _tree(root: Path) -> dict[str, str]:
    """sha256 of every file under the workspace's data/ and reports/, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in ("data", "reports")
        for p in sorted((root / folder).rglob("*"))
        if p.is_file() and p.name != ".gitignore"
    }


def _build(project: Project, serve: Any, data: Synthetic | None = None, runs: tuple[str, ...] = STAGES,
           **params: dict) -> Synthetic:
    """Run the pipeline on synthetic data, check exactly ``runs`` ran, commit the result; return the data."""
    data = data or make_synthetic(n_train=150, n_test=40)
    project.set_params(dataset={"files": data.files_override()}, split={"validation_size": VALIDATION}, **params)
    result = project.dvc("repro", env={"MNIST_MIRRORS": serve(data.by_filename())})
    assert re.findall(r"Running stage '(\w+)'", result.stdout) == list(runs)
    project.run("git", "add", "-A")
    project.run("git", "commit", "-qm", "data version")
    return data


def _use_shipped_config(project: Project) -> None:
    shutil.copy2(ROOT / ".dvc" / "config", project.path / ".dvc" / "config")
    project.run("git", "add", ".dvc/config")
    project.run("git", "commit", "-qm", "default remote")


def _clone(project: Project, dest: Path) -> Project:
    project.run("git", "clone", "-q", str(project.path), str(dest))
    return Project(dest, {**project.env, "PYTHONPATH": str(dest)})


def _assert_same_data(a: Path, b: Path) -> None:
    sa = read_data_sets(a / "data" / "processed", reshape=False, verify="always")
    sb = read_data_sets(b / "data" / "processed", reshape=False, verify="always")
    for x, y in zip(sa, sb, strict=True):
        assert x.num_examples == y.num_examples
        np.testing.assert_array_equal(x.images, y.images)
        np.testing.assert_array_equal(x.labels, y.labels)


def _assert_round_trip(project: Project, clone: Project) -> None:
    """The clone has no data; after ``dvc pull`` it is exactly the project's, and nothing reruns."""
    before = _tree(project.path)
    assert any(k.startswith("data/processed/") for k in before)
    assert not (clone.path / "data" / "processed").exists()
    assert not (clone.path / ".dvc" / "cache").exists()
    clone.dvc("pull")
    assert clone.dvc("status", "-q", check=False).returncode == 0
    again = clone.dvc("repro", env={"MNIST_MIRRORS": DEAD_MIRROR})
    assert "Running stage" not in again.stdout
    assert "Data and pipelines are up to date" in again.stdout
    assert _tree(clone.path) == before
    _assert_same_data(project.path, clone.path)


def _data_md5s(project: Project) -> set[str]:
    """The md5 (DVC's content address) of every file under data/: the outputs kept in the DVC cache."""
    files = [p for p in (project.path / "data").rglob("*") if p.is_file() and p.name != ".gitignore"]
    assert len(files) == 11  # 4 raw, 2 decoded, 2 normalized, 3 processed
    return {hashlib.md5(p.read_bytes()).hexdigest() for p in files}


def _stored(storage: Path) -> set[str]:
    """The md5s of the objects a DVC 3 remote folder holds."""
    return {p.parent.name + p.name for p in (storage / "files" / "md5").glob("*/*")}


def test_local_remote_round_trip_with_the_shipped_default_remote(project, serve, tmp_path):
    _use_shipped_config(project)
    _build(project, serve)
    storage = tmp_path / "mnist-dvc-storage"  # .dvc/config's ../../mnist-dvc-storage: beside the checkout
    assert project.dvc("remote", "list").stdout.split()[0] == "storage"
    project.dvc("push")
    assert _data_md5s(project) <= _stored(storage)
    assert project.dvc("status", "--cloud", "-q", check=False).returncode == 0

    _assert_round_trip(project, _clone(project, tmp_path / "clone"))


# --- WebDAV -----------------------------------------------------------------------------------


@dataclass
class WebDav:
    """A running WebDAV server: its DVC URL, the folder it serves, credentials, requests seen."""

    url: str
    root: Path
    user: str
    password: str
    requests: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture
def webdav(tmp_path: Path) -> Iterator[WebDav]:
    """A wsgidav server with basic auth on 127.0.0.1, a free port, in a thread; stopped at the end."""
    pytest.importorskip("dvc_webdav", reason="dvc-webdav is not installed (pip install -r requirements.txt)")
    pytest.importorskip("wsgidav", reason="wsgidav is not installed (pip install -r requirements.txt)")
    pytest.importorskip("cheroot", reason="cheroot is not installed (pip install -r requirements.txt)")
    from cheroot import wsgi
    from wsgidav.wsgidav_app import WsgiDAVApp

    root = tmp_path / "webdav-root"
    root.mkdir()
    dav = WebDav(url="", root=root / "dvc-storage", user="ci", password="s3cret-for-tests")
    dav.root.mkdir()  # the server's admin makes the folder; DVC makes everything inside it
    app = WsgiDAVApp({
        "provider_mapping": {"/": str(root)},
        "simple_dc": {"user_mapping": {"*": {dav.user: {"password": dav.password}}}},
        "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
        "dir_browser": {"enable": False},
        "lock_storage": True,
        "property_manager": True,
        "verbose": 0,
        "logging": {"enable": False},
    })

    def recording(environ: dict, start_response: Any) -> Any:
        dav.requests.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")))
        return app(environ, start_response)

    server = wsgi.Server(("127.0.0.1", 0), recording)
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    dav.url = f"webdav://127.0.0.1:{server.bind_addr[1]}/dvc-storage"
    try:
        yield dav
    finally:
        server.stop()
        thread.join(timeout=10)


def _use_webdav(project: Project, dav: WebDav, password: str | None = None) -> None:
    """Point the copy at the server: URL in .dvc/config, credentials only in .dvc/config.local."""
    project.dvc("remote", "modify", "--local", "dav", "user", dav.user)
    project.dvc("remote", "modify", "--local", "dav", "password", password or dav.password)


def test_webdav_round_trip_through_a_real_server(project, serve, webdav, tmp_path):
    _build(project, serve)
    project.dvc("remote", "add", "--default", "dav", webdav.url)
    _use_webdav(project, webdav)
    project.run("git", "add", ".dvc/config")
    project.run("git", "commit", "-qm", "webdav remote")
    assert ".dvc/config.local" not in project.run("git", "ls-files").stdout  # the password stays out of git

    project.dvc("push")
    puts = {path for method, path in webdav.requests if method == "PUT"}
    assert puts and all(p.startswith("/dvc-storage/files/md5/") for p in puts)
    assert _stored(webdav.root) == {p.split("/")[-2] + p.split("/")[-1] for p in puts}
    assert _data_md5s(project) <= _stored(webdav.root)

    clone = _clone(project, tmp_path / "clone")
    _use_webdav(clone, webdav, password="wrong")
    refused = clone.dvc("pull", check=False)
    assert refused.returncode != 0 and not (clone.path / "data" / "processed").exists()

    _use_webdav(clone, webdav)
    webdav.requests.clear()
    _assert_round_trip(project, clone)
    gets = {path for method, path in webdav.requests if method == "GET"}
    assert puts <= gets  # every object pushed came back over WebDAV


# --- Experiments, params, metrics, plots, DAG ----------------------------------------------------


def _expected_stats(pixels: np.ndarray, low: float, high: float) -> tuple[float, float]:
    values = scale_table(low, high)[pixels].astype(np.float64)
    return float(values.mean()), float(values.std())


def test_experiment_with_set_params_shows_in_params_and_metrics_diff(project, serve):
    data = _build(project, serve)
    shown = json.loads(project.dvc("metrics", "show", "--json").stdout)
    metrics = next(iter(shown.values()))["data"]["reports/metrics.json"]["data"]
    assert metrics["validation"]["num_examples"] == VALIDATION
    assert metrics["test"]["class_counts"] == {str(k): 4 for k in range(10)}
    assert metrics["raw"]["t10k-labels-idx1-ubyte"]["sha256"] == hashlib.sha256(data.raw["test_labels"]).hexdigest()

    exp = project.dvc("exp", "run", "-S", "normalize.low=0", "-S", "normalize.high=1", env={"MNIST_MIRRORS": DEAD_MIRROR})
    for stage in ("normalize", "split", "report"):
        assert f"Running stage '{stage}'" in exp.stdout
    for stage in ("fetch", "decode"):
        assert f"Running stage '{stage}'" not in exp.stdout

    params = json.loads(project.dvc("params", "diff", "--json").stdout)["params.yaml"]
    assert (params["normalize.low"]["old"], params["normalize.low"]["new"]) == (-0.5, 0)
    assert (params["normalize.high"]["old"], params["normalize.high"]["new"]) == (0.5, 1)

    diff = json.loads(project.dvc("metrics", "diff", "--json").stdout)["reports/metrics.json"]
    train_pixels = data.arrays["train_images"][VALIDATION:]
    for split, pixels in (("train", train_pixels), ("test", data.arrays["test_images"])):
        old_mean, old_std = _expected_stats(pixels, -0.5, 0.5)
        new_mean, new_std = _expected_stats(pixels, 0.0, 1.0)
        assert diff[f"{split}.pixel_mean"]["old"] == pytest.approx(old_mean, rel=1e-9)
        assert diff[f"{split}.pixel_mean"]["new"] == pytest.approx(new_mean, rel=1e-9)
        assert diff.get(f"{split}.pixel_std", {}).get("new", old_std) == pytest.approx(new_std, rel=1e-6)
    assert not [k for k in diff if "class_counts" in k or k.startswith("raw.") or "num_examples" in k]

    dag = project.dvc("dag", "--dot").stdout
    edges = set(re.findall(r'"?([\w.]+)"?\s*->\s*"?([\w.]+)"?', dag))
    for a, b in itertools.pairwise(STAGES):
        assert (a, b) in edges, dag


def test_plots_show_renders_the_class_distribution_and_the_sample_grid(project, serve):
    _build(project, serve)
    shown = json.loads(project.dvc("plots", "show", "--json").stdout)["data"]
    assert set(shown) == {"Class distribution (share of each split)", "reports/samples.png"}
    (chart,) = shown["Class distribution (share of each split)"]
    assert chart["type"] == "vega"
    values = chart["content"]["data"]["values"]
    assert chart["content"]["encoding"]["column"]["field"] == "filename"  # one panel per split
    assert sorted({v["filename"] for v in values}) == ["test.csv", "train.csv", "validation.csv"]
    test_rows = {v["class"]: float(v["fraction"]) for v in values if v["filename"] == "test.csv"}
    assert test_rows == {str(k): 0.1 for k in range(10)}  # synthetic test labels: 4 of each class
    (image,) = shown["reports/samples.png"]
    assert image["type"] == "image"
    assert Path(image["url"]).read_bytes() == (project.path / "reports" / "samples.png").read_bytes()


# --- Loading tagged versions from another place ----------------------------------------------------


def test_loader_reads_tagged_versions_from_the_remote(project, serve, tmp_path, monkeypatch):
    _use_shipped_config(project)
    data = _build(project, serve)
    project.dvc("push")
    project.run("git", "tag", "v1")
    _build(project, serve, data=data, runs=("normalize", "split", "report"), normalize={"low": 0.0, "high": 1.0})
    project.dvc("push")
    project.run("git", "tag", "v2")

    # Nothing is left in the repository but git: each version must come from the remote.
    shutil.rmtree(project.path / ".dvc" / "cache")
    for folder in ("raw", "interim", "processed"):
        shutil.rmtree(project.path / "data" / folder)
    elsewhere = tmp_path / "experiment"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", project.env["DVC_SITE_CACHE_DIR"])
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")

    train_pixels = data.arrays["train_images"][VALIDATION:]
    for rev, (low, high) in (("v1", (-0.5, 0.5)), ("v2", (0.0, 1.0))):
        sets = read_data_sets(repo=str(project.path), rev=rev, reshape=False)
        np.testing.assert_array_equal(sets.train.images[..., 0], scale_table(low, high)[train_pixels])
        np.testing.assert_array_equal(sets.test.labels, data.arrays["test_labels"])
        assert sets.validation.num_examples == VALIDATION
    as_pixels = read_data_sets(repo=str(project.path), rev="v2", dtype=np.uint8, reshape=False)
    np.testing.assert_array_equal(as_pixels.test.images[..., 0], data.arrays["test_images"])


# --- The real artifacts of this checkout (after `dvc pull`; CI sets MNIST_REQUIRE_ARTIFACTS=1) ------


def test_this_checkouts_artifacts_are_the_locked_ones_and_load():
    processed = ROOT / "data" / "processed"
    if not all((processed / f"{name}.npz").exists() for name in SPLITS):
        if os.environ.get("MNIST_REQUIRE_ARTIFACTS"):
            pytest.fail(f"{processed} lacks the artifacts; run `dvc pull` first")
        pytest.skip("this checkout has no artifacts; `dvc pull` (or `dvc repro`) to test them")
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    locked = {o["path"]: o["md5"] for stage in lock["stages"].values() for o in stage.get("outs", [])}
    for name in SPLITS:
        path = f"data/processed/{name}.npz"
        assert hashlib.md5((ROOT / path).read_bytes()).hexdigest() == locked[path], f"{path} is not the locked version"

    sets = read_data_sets(processed, reshape=False, verify="always")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert sets.validation.num_examples == params["split"]["validation_size"]
    assert sets.train.images.min() == params["normalize"]["low"] and sets.train.images.max() == params["normalize"]["high"]
    report = json.loads((ROOT / "reports" / "metrics.json").read_text())
    for name, split in zip(SPLITS, sets, strict=True):
        counts = np.bincount(split.labels, minlength=len(split.class_names))
        assert report[name]["num_examples"] == split.num_examples
        assert report[name]["class_counts"] == dict(zip(split.class_names, counts.tolist(), strict=True))
