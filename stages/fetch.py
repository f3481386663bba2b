"""Stage fetch: download the four archives, verify their content, write the raw IDX files."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnist_data.atomic import ensure_writable_dir
from mnist_data.download import fetch
from mnist_data.params import FILE_KEYS, load_params, mirrors_for_run
from stages._boundary import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.fetch", description=__doc__)
    parser.add_argument("--out", action="append", required=True, metavar="KEY=PATH",
                        help=f"where to write each file; KEY is one of {', '.join(FILE_KEYS)}")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.out):
        parser.error(f"--out takes KEY=PATH, got {args.out}")
    outs = dict(item.split("=", 1) for item in args.out)
    if sorted(outs) != sorted(FILE_KEYS):
        parser.error(f"need --out KEY=PATH for exactly {', '.join(FILE_KEYS)}")

    def work() -> None:
        params = load_params(args.params)
        mirrors = mirrors_for_run(params.dataset)
        for path in outs.values():
            ensure_writable_dir(Path(path).parent)
        for key in FILE_KEYS:
            fetch(params.dataset.files[key], mirrors, outs[key], params.fetch)

    return run("fetch", work)


if __name__ == "__main__":
    raise SystemExit(main())
