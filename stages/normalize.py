"""Stage normalize: scale uint8 pixels onto [normalize.low, normalize.high] as float32."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import numpy as np

from mnist_data.atomic import ensure_writable_dir
from mnist_data.npz import Blocks, read_npz, write_npz
from mnist_data.params import load_params
from mnist_data.transforms import normalize_blocks
from stages._boundary import run

DECODED = {"images": ("|u1", 3), "labels": ("|u1", 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.normalize", description=__doc__)
    parser.add_argument("--split", action="append", nargs=2, required=True, metavar=("IN", "OUT"))
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)

    def work() -> None:
        p = load_params(args.params).normalize
        for _, out in args.split:
            ensure_writable_dir(Path(out).parent)
        for src, out in args.split:
            arrays = read_npz(src, DECODED)
            images = arrays["images"]
            scaled = Blocks(images.shape, np.dtype(np.float32), partial(normalize_blocks, images, p.low, p.high))
            write_npz(out, {"images": scaled, "labels": arrays["labels"],
                            "normalize_range": np.array([p.low, p.high], dtype="<f8")})

    return run("normalize", work)


if __name__ == "__main__":
    raise SystemExit(main())
