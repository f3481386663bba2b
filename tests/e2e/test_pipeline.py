"""End to end: a copy of the project runs `dvc repro` against synthetic archives on loopback."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from mnist_data import read_data_sets
from mnist_data.transforms import scale_table
from tests.synthetic import make_synthetic


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.npz"))}


def test_repro_builds_artifacts_then_does_nothing_then_restores(project, serve):
    data = make_synthetic(n_train=150, n_test=40)
    project.set_params(dataset={"files": data.files_override()}, split={"validation_size": 20})
    env = {"MNIST_MIRRORS": serve(data.by_filename())}

    first = project.dvc("repro", env=env)
    for stage in ("fetch", "decode", "normalize", "split"):
        assert f"Running stage '{stage}'" in first.stdout

    processed = project.path / "data" / "processed"
    sets = read_data_sets(processed, one_hot=False, reshape=False)
    table = scale_table(-0.5, 0.5)
    assert sets.validation.num_examples == 20 and sets.train.num_examples == 130 and sets.test.num_examples == 40
    np.testing.assert_array_equal(sets.validation.images[..., 0], table[data.arrays["train_images"][:20]])
    np.testing.assert_array_equal(sets.train.images[..., 0], table[data.arrays["train_images"][20:]])
    np.testing.assert_array_equal(sets.test.labels, data.arrays["test_labels"])
    raw = project.path / "data" / "raw" / "mnist" / "train-images-idx3-ubyte"
    assert raw.read_bytes() == data.raw["train_images"]

    second = project.dvc("repro", env={"MNIST_MIRRORS": "http://127.0.0.1:9/"})  # no network needed
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date" in second.stdout

    before = _digests(processed)
    for folder in ("raw", "interim", "processed"):
        import shutil

        shutil.rmtree(project.path / "data" / folder)
    project.dvc("checkout")
    assert _digests(processed) == before
    assert project.dvc("status", "-q", check=False).returncode == 0


def test_artifacts_are_byte_identical_across_runs(project, serve):
    data = make_synthetic()
    project.set_params(dataset={"files": data.files_override()}, split={"validation_size": 10})
    env = {"MNIST_MIRRORS": serve(data.by_filename())}
    project.dvc("repro", env=env)
    first = _digests(project.path / "data" / "processed")
    project.dvc("repro", "--force", env=env)
    assert _digests(project.path / "data" / "processed") == first


def test_wrong_digest_fails_cleanly_and_names_the_file(project, serve):
    data = make_synthetic()
    files = data.files_override()
    files["train_labels"]["sha256"] = "0" * 64
    project.set_params(dataset={"files": files}, split={"validation_size": 10})
    result = project.dvc("repro", env={"MNIST_MIRRORS": serve(data.by_filename())}, check=False)
    assert result.returncode != 0
    err = result.stderr
    assert "fetch: error: train-labels-idx1-ubyte.gz" in err
    assert "sha256 of the uncompressed file is" in err and "expected " + "0" * 64 in err
    assert "Traceback" not in err
    raw = project.path / "data" / "raw" / "mnist"
    leftovers = [p.name for p in raw.iterdir()] if raw.exists() else []
    assert "train-labels-idx1-ubyte" not in leftovers
    assert not [n for n in leftovers if n.endswith(".part")]


def test_bad_params_fail_before_any_work(project):
    project.set_params(normalize={"low": 1.0, "high": 0.0})
    result = project.run("python", "-m", "stages.normalize", "--split", "a.npz", "b.npz", check=False)
    assert result.returncode == 1
    assert "normalize: error: params.yaml: parameter 'normalize.low': must be less than normalize.high" in result.stderr


def test_stage_usage_errors_are_usage_messages(project):
    result = project.run("python", "-m", "stages.fetch", "--out", "train_images", check=False)
    assert result.returncode == 2 and "--out takes KEY=PATH" in result.stderr and "Traceback" not in result.stderr
