"""Loader measurements that must run in a child process of their own: ``python bench/probe.py MODE ...``.

Modes (each prints one JSON object on stdout; the parent reads peak RSS from the child's rusage):

- ``cold DIR URL``: the baseline's whole job once (download, gunzip, parse, scale, split).
- ``timings {ours,baseline} DIR``: warm ``read_data_sets`` wall times, then per-epoch wall times
  of ``next_batch`` with shuffling.
- ``rss {ours,baseline} DIR [--epoch]``: one ``read_data_sets`` (and optionally one epoch), and
  the bytes of the arrays it returned.

``ours`` is the project's loader as found on ``PYTHONPATH`` (the run's copy of the project);
``baseline`` is ``bench/baseline.py``, reading the ``.gz`` archives in ``DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import baseline

BATCH = 100


def _reader(impl: str, folder: str) -> tuple[Callable[..., Any], str]:
    """The ``read_data_sets`` to measure and the file it comes from."""
    if impl == "baseline":
        return (lambda seed=None: baseline.read_data_sets(folder, seed=seed)), baseline.__file__
    import mnist_data

    return (lambda seed=None: mnist_data.read_data_sets(folder, seed=seed)), mnist_data.__file__


def _one_epoch(dataset: Any, batch: int = BATCH) -> None:
    for _ in range(dataset.num_examples // batch):
        dataset.next_batch(batch)


def _array_bytes(sets: Any) -> int:
    return sum(int(s.images.nbytes) + int(s.labels.nbytes) for s in sets)


def timings(read: Callable[..., Any], reads: int, epochs: int) -> dict[str, Any]:
    """Warm read times (after one untimed read) and the wall time of each shuffled epoch."""
    read()
    read_s = []
    for _ in range(reads):
        start = time.perf_counter()
        read()
        read_s.append(time.perf_counter() - start)
    train = read(seed=0).train
    epoch_s = []
    for _ in range(epochs):
        start = time.perf_counter()
        _one_epoch(train)
        epoch_s.append(time.perf_counter() - start)
    return {"read_s": read_s, "epoch_s": epoch_s, "train_examples": int(train.num_examples), "batch": BATCH}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/probe.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    cold = sub.add_parser("cold")
    cold.add_argument("dir")
    cold.add_argument("url")
    tim = sub.add_parser("timings")
    tim.add_argument("impl", choices=("ours", "baseline"))
    tim.add_argument("dir")
    tim.add_argument("--reads", type=int, default=5)
    tim.add_argument("--epochs", type=int, default=3)
    rss = sub.add_parser("rss")
    rss.add_argument("impl", choices=("ours", "baseline"))
    rss.add_argument("dir")
    rss.add_argument("--epoch", action="store_true", help="also run one shuffled epoch of next_batch(100)")
    args = parser.parse_args(argv)

    if args.mode == "cold":
        sets = baseline.read_data_sets(args.dir, args.url)
        result: dict[str, Any] = {"array_bytes": _array_bytes(sets)}
    else:
        read, source = _reader(args.impl, args.dir)
        if args.mode == "timings":
            result = timings(read, args.reads, args.epochs)
        else:
            sets = read(seed=0)
            if args.epoch:
                _one_epoch(sets.train)
            result = {"array_bytes": _array_bytes(sets)}
        result["source"] = source
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
