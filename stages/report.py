"""Stage report: metrics, per-split class distributions and a sample grid of the processed splits."""

from __future__ import annotations

import argparse

from mnist_data.params import load_params
from mnist_data.report import write_report
from stages._boundary import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.report", description=__doc__)
    parser.add_argument("--split", action="append", nargs=3, required=True, metavar=("NAME", "NPZ", "CSV"),
                        help="a processed split and where to write its class distribution")
    parser.add_argument("--raw", action="append", required=True, metavar="PATH", help="a raw IDX file to digest")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--samples", required=True, help="sample grid PNG to write (from the test split)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    names = [name for name, _, _ in args.split]
    if len(set(names)) != len(names):
        parser.error(f"each --split NAME must be given once, got {names}")

    def work() -> None:
        dataset = load_params(args.params).dataset
        write_report({name: (npz, csv) for name, npz, csv in args.split}, args.raw,
                     args.metrics, args.samples, dataset.name, dataset.title)

    return run("report", work)


if __name__ == "__main__":
    raise SystemExit(main())
