"""Stage split: first split.validation_size training rows -> validation, the rest -> train; save all three."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnist_data.artifacts import save_split
from mnist_data.atomic import ensure_writable_dir
from mnist_data.npz import read_npz
from mnist_data.params import load_params
from mnist_data.transforms import split_validation
from stages._boundary import run

NORMALIZED = {"images": ("<f4", 3), "labels": ("|u1", 1), "normalize_range": ("<f8", 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.split", description=__doc__)
    parser.add_argument("--train", required=True, help="normalized training .npz")
    parser.add_argument("--test", required=True, help="normalized test .npz")
    parser.add_argument("--out-dir", required=True, help="gets train.npz, validation.npz, test.npz")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)

    def work() -> None:
        params = load_params(args.params)
        names = params.dataset.class_names
        out = Path(args.out_dir)
        ensure_writable_dir(out)
        train, test = read_npz(args.train, NORMALIZED), read_npz(args.test, NORMALIZED)
        val_rows, train_rows = split_validation(len(train["labels"]), params.split.validation_size)
        for name, arrays, rows in (("train", train, train_rows), ("validation", train, val_rows), ("test", test, slice(None))):
            low, high = (float(v) for v in arrays["normalize_range"])
            save_split(out / f"{name}.npz", arrays["images"][rows], arrays["labels"][rows], low, high, names)

    return run("split", work)


if __name__ == "__main__":
    raise SystemExit(main())
