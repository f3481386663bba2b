#!/usr/bin/env bash
# Rebuild the data from a local MNIST mirror in a fresh clone and check that:
#   - `dvc repro` reproduces the committed dvc.lock exactly (git diff --exit-code dvc.lock);
#   - a second `dvc repro` runs nothing, and `dvc checkout` restores deleted artifacts;
#   - the per-class label counts of the artifacts equal those of the raw files, and the
#     artifacts match dvc.lock, load with a full value scan and agree with reports/metrics.json.
# Usage: bash .ci/real_data_check.sh DIR   (DIR holds the four MNIST .gz files)
set -euo pipefail
mirror_dir=$(cd "$1" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python -m http.server --bind 127.0.0.1 --directory "$mirror_dir" "$port" >/dev/null 2>&1 &
server_pid=$!
for _ in $(seq 50); do python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null && break; sleep 0.1; done

git clone --quiet "$repo" "$work/clone"
cd "$work/clone"
export DVC_NO_ANALYTICS=1 DVC_SITE_CACHE_DIR="$work/dvc-site" MNIST_DATA_CACHE="$work/loader-cache"
MNIST_MIRRORS="http://127.0.0.1:$port/" dvc repro
git diff --exit-code dvc.lock
echo "real-data check: dvc.lock reproduced exactly"
dvc repro | tee "$work/second.txt"
if grep -q "Running stage" "$work/second.txt"; then echo "second dvc repro ran a stage" >&2; exit 1; fi
before=$(md5sum data/processed/*.npz data/raw/mnist/*)
rm -rf data/raw data/processed
dvc checkout
[ "$(md5sum data/processed/*.npz data/raw/mnist/*)" = "$before" ] || { echo "dvc checkout did not restore the artifacts" >&2; exit 1; }
dvc status -q
echo "real-data check: second repro ran nothing; rm -rf data/raw data/processed && dvc checkout restored them"
python - <<'PY'
import numpy as np
from mnist_data import read_data_sets
from mnist_data.idx import read_idx

d = read_data_sets("data/processed", dtype=np.uint8)
raw_train = np.bincount(read_idx("data/raw/mnist/train-labels-idx1-ubyte"), minlength=10)
raw_test = np.bincount(read_idx("data/raw/mnist/t10k-labels-idx1-ubyte"), minlength=10)
ours_train = np.bincount(d.train.labels, minlength=10) + np.bincount(d.validation.labels, minlength=10)
ours_test = np.bincount(d.test.labels, minlength=10)
print("per-class counts, train+validation:", ours_train.tolist())
print("per-class counts, test:            ", ours_test.tolist())
if not (np.array_equal(raw_train, ours_train) and np.array_equal(raw_test, ours_test)):
    raise SystemExit(f"label counts differ from the raw files: raw train {raw_train.tolist()}, raw test {raw_test.tolist()}")
if (d.train.num_examples, d.validation.num_examples, d.test.num_examples) != (55000, 5000, 10000):
    raise SystemExit("split sizes are not 55000/5000/10000")
print("real-data check: label counts match the raw files; splits 55000/5000/10000")
PY
# The suite's test of a checkout's own artifacts (skipped where no data was pulled) runs here for real.
MNIST_REQUIRE_ARTIFACTS=1 python -m pytest -q -p no:cacheprovider \
  "tests/e2e/test_remote.py::test_this_checkouts_artifacts_are_the_locked_ones_and_load"
