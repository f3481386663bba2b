"""One parameter picks the dataset: each definition builds end to end; switching back is free."""

from __future__ import annotations

import pytest
import yaml

from mnist_data import read_data_sets
from mnist_data.params import definition_path, known_datasets
from tests.synthetic import make_synthetic


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "kmnist"])
def test_each_dataset_builds_with_its_class_names(project, serve, name):
    data = make_synthetic(n_train=40, n_test=20, seed=len(name))
    project.set_params(dataset={"name": name, "files": data.files_override()}, split={"validation_size": 8})
    project.dvc("repro", env={"MNIST_MIRRORS": serve(data.by_filename())})
    assert (project.path / "data" / "raw" / name / "train-images-idx3-ubyte").read_bytes() == data.raw["train_images"]
    sets = read_data_sets(project.path / "data" / "processed", dtype="uint8", reshape=False)
    expected = tuple(yaml.safe_load(definition_path(name).read_text())["class_names"])
    assert sets.test.class_names == expected
    assert (sets.train.images[..., 0] == data.arrays["train_images"][8:]).all()


def test_exp_run_switches_dataset_and_back_without_downloading(project, serve):
    data = make_synthetic(n_train=40, n_test=20)
    project.set_params(dataset={"files": data.files_override()}, split={"validation_size": 8})
    mirror = serve(data.by_filename())
    project.dvc("repro", env={"MNIST_MIRRORS": mirror})
    project.run("git", "add", "-A")
    project.run("git", "commit", "-qm", "mnist data")
    mnist = (project.path / "data" / "processed" / "test.npz").read_bytes()

    project.dvc("exp", "run", "-S", "dataset.name=fashion-mnist", env={"MNIST_MIRRORS": mirror})
    assert (project.path / "data" / "raw" / "fashion-mnist" / "t10k-labels-idx1-ubyte").exists()
    assert read_data_sets(project.path / "data" / "processed").test.class_names[0] == "T-shirt/top"

    offline = {"MNIST_MIRRORS": "http://127.0.0.1:9/"}  # nothing listens there: a download would fail
    back = project.dvc("exp", "run", "-S", "dataset.name=mnist", env=offline)
    assert "Running stage 'fetch'" not in back.stdout
    assert (project.path / "data" / "processed" / "test.npz").read_bytes() == mnist


def test_unknown_dataset_lists_the_known_ones(project):
    project.set_params(dataset={"name": "cifar10"})
    result = project.run("python", "-m", "stages.fetch", *[f"--out={k}=x/{k}" for k in
                         ("train_images", "train_labels", "test_images", "test_labels")], check=False)
    assert result.returncode == 1
    assert f"unknown dataset 'cifar10'; known: {', '.join(known_datasets())}" in result.stderr
