"""Stage decode: parse each images/labels IDX pair, check it is a dataset, save it as uint8 .npz."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnist_data import checks
from mnist_data.atomic import ensure_writable_dir
from mnist_data.idx import read_idx
from mnist_data.npz import write_npz
from stages._boundary import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.decode", description=__doc__)
    parser.add_argument("--split", action="append", nargs=3, required=True, metavar=("IMAGES", "LABELS", "OUT"))
    args = parser.parse_args(argv)

    def work() -> None:
        for _, _, out in args.split:
            ensure_writable_dir(Path(out).parent)
        for images_path, labels_path, out in args.split:
            images, labels = read_idx(images_path), read_idx(labels_path)
            checks.check_images(images, images_path)
            checks.check_labels(labels, labels_path)
            checks.check_counts(images, labels, f"{images_path} + {labels_path}")
            write_npz(out, {"images": images, "labels": labels})

    return run("decode", work)


if __name__ == "__main__":
    raise SystemExit(main())
