"""params.yaml and the dataset definitions: every key validated, errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mnist_data.errors import ParamsError
from mnist_data.params import FILE_KEYS, FetchParams, definition_path, known_datasets, load_params, mirrors_for_run

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, **changes: object) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = params
        for p in parents:
            node = node.setdefault(p, {})
        if value is KeyError:
            del node[leaf]
        else:
            node[leaf] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_repo_params_load_with_the_published_mnist_pins():
    p = load_params(ROOT / "params.yaml")
    assert p.dataset.name == "mnist" and p.normalize.low == -0.5 and p.normalize.high == 0.5
    assert p.split.validation_size == 5000
    assert p.dataset.files["train_images"].sha256 == "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
    assert p.dataset.files["test_labels"].size == 10008
    assert p.dataset.mirrors[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"normalize__low": KeyError}, "'normalize.low': missing"),
        ({"normalize__high": "1"}, "'normalize.high': expected a finite number, got '1'"),
        ({"normalize__low": 0.5}, "'normalize.low': must be less than normalize.high"),
        ({"split__validation_size": -1}, "'split.validation_size': expected an integer >= 0"),
        ({"split__validation_size": 1.5}, "'split.validation_size': expected an integer"),
        ({"split": KeyError}, "'split': missing"),
        ({"dataset__name": "cifar"}, "unknown dataset 'cifar'; known: fashion-mnist, kmnist, mnist"),
        ({"dataset__files": {"train_imgs": {}}}, r"unknown file key\(s\) \['train_imgs'\]"),
        ({"dataset__files": {"train_images": {"sha256": "abc"}}}, "train_images.sha256': expected 64 lowercase hex digits"),
        ({"dataset__files": {"test_labels": {"filename": "../x.gz"}}}, "test_labels.filename': expected a plain file name"),
        ({"dataset__mirrors": []}, "'dataset.mirrors': expected a non-empty list"),
        ({"fetch__retries": -1}, "'fetch.retries': expected an integer >= 0"),
        ({"fetch__deadline": 0}, "'fetch.deadline': expected a positive number"),
        ({"fetch__timeout": 1}, r"'fetch': unknown key\(s\) \['timeout'\]"),
    ],
)
def test_bad_params_name_the_key(tmp_path, changes, match):
    with pytest.raises(ParamsError, match=match):
        load_params(write(tmp_path, **changes))


def test_missing_file_says_where_to_run(tmp_path):
    with pytest.raises(ParamsError, match="cannot read.*run from the project root"):
        load_params(tmp_path / "nope.yaml")


def test_fetch_knobs_default_and_override(tmp_path):
    p = load_params(write(tmp_path, fetch=KeyError))
    assert p.fetch == FetchParams()
    assert FetchParams().max_retry_after <= 30
    assert load_params(write(tmp_path, fetch__retries=0)).fetch.retries == 0


def test_user_content_pin_replaces_the_archive_pin(tmp_path):
    sha = "ab" * 32
    p = load_params(write(tmp_path, dataset__name="fashion-mnist",
                          dataset__files={"train_labels": {"sha256": sha, "size": 108}}))
    f = p.dataset.files["train_labels"]
    assert (f.sha256, f.size, f.archive_sha256, f.archive_size) == (sha, 108, None, None)
    assert p.dataset.files["train_images"].archive_sha256 is not None


@pytest.mark.parametrize("name", known_datasets())
def test_every_definition_is_complete_and_pinned(tmp_path, name):
    assert set(known_datasets()) >= {"mnist", "fashion-mnist", "kmnist"}
    spec = load_params(write(tmp_path, dataset__name=name)).dataset
    assert set(spec.files) == set(FILE_KEYS)
    assert len(spec.class_names) == 10 and len(set(spec.class_names)) == 10
    assert spec.license and spec.citation and spec.mirrors
    for f in spec.files.values():
        assert f.sha256 or f.archive_sha256, f"{name}/{f.key} has no pin"
        assert f.filename.endswith(".gz")
    text = definition_path(name).read_text()
    assert "source" in text.lower() or "tensorflow_datasets" in text or "shared/mnist" in text  # digests are cited


def test_mirrors_env_overrides_with_commas_or_whitespace(monkeypatch):
    spec = load_params(ROOT / "params.yaml").dataset
    monkeypatch.setenv("MNIST_MIRRORS", "http://127.0.0.1:1/a/, file:///srv/m\n/local/dir")
    assert mirrors_for_run(spec) == ("http://127.0.0.1:1/a/", "file:///srv/m", "/local/dir")
    monkeypatch.setenv("MNIST_MIRRORS", "  ")
    assert mirrors_for_run(spec) == spec.mirrors


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"dataset__mirror": ["http://x/"]}, r"'dataset': unknown key\(s\) \['mirror'\]"),
        ({"normalize__hihg": 1}, r"'normalize': unknown key\(s\) \['hihg'\]"),
        ({"split__validation": 5}, r"'split': unknown key\(s\) \['validation'\]"),
        ({"dataset__files": {"train_images": {"sha265": "ab" * 32}}},
         r"'dataset.files.train_images': unknown key\(s\) \['sha265'\]"),
        ({"normalize__low": 1e6, "normalize__high": 1e6 + 1}, "cannot hold 256 distinct float32 pixel values"),
        ({"normalize__low": -1e39, "normalize__high": 1e39}, "cannot hold 256 distinct float32 pixel values"),
        ({"dataset__mirrors": ["http://[bad/"]}, "'http://\\[bad/' is not a valid URL"),
        ({"dataset__mirrors": ["http://example.org:99999/"]}, "is not a valid URL"),
        ({"dataset__mirrors": ["http:///no-host/"]}, "has no valid host"),
    ],
)
def test_typos_and_unusable_values_are_rejected(tmp_path, changes, match):
    with pytest.raises(ParamsError, match=match):
        load_params(write(tmp_path, **changes))
