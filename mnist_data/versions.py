"""Getting the processed splits of any revision of a DVC repository into a local cache.

Files are fetched through DVC's Python API (``DVCFileSystem``), which pulls them from that
revision's default remote, and stored under the loader's cache folder by their DVC md5: a version
already fetched is never fetched again, different versions never collide, and a cached file is
never rewritten in place. Only this module imports ``dvc``.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
from pathlib import Path

from mnist_data.artifacts import SPLITS, cache_dir
from mnist_data.atomic import atomic_output
from mnist_data.errors import DatasetError

_MD5 = re.compile(r"[0-9a-f]{32}")


def fetch_version(train_dir: str, repo: str | None, rev: str | None) -> dict[str, Path]:
    """Return local paths of ``train_dir``'s three splits as of ``repo`` at ``rev``.

    Args:
        train_dir: The folder of the splits inside the repository, e.g. ``data/processed``.
        repo: Git URL or path; ``None`` is the repository around the current directory.
        rev: Tag, branch or commit; ``None`` is DVC's default: a git URL's default branch, or a
            local repository's working tree.

    Returns:
        For each split name, a read-only file in the cache named by its md5.

    Raises:
        DatasetError: DVC is not installed, or the repository, revision or files cannot be read.
    """
    try:
        from dvc.api import DVCFileSystem
    except ImportError as exc:
        raise DatasetError(repo or ".", "loading a version with repo=/rev= needs DVC: pip install dvc") from exc
    where = f"{repo or '.'}@{rev or '(default)'}"
    try:
        fs = DVCFileSystem(repo, rev=rev)
    except Exception as exc:  # DVC raises many unrelated types for a bad URL or revision
        raise DatasetError(where, f"cannot open the repository at this revision: {exc}") from exc
    blobs = cache_dir() / "versions"
    paths = {}
    try:
        for split in SPLITS:
            remote_path = posixpath.join(train_dir.strip("/") or ".", f"{split}.npz")
            info = fs.info(remote_path)
            md5 = (info.get("dvc_info") or {}).get("md5") or info.get("md5")
            if not (isinstance(md5, str) and _MD5.fullmatch(md5)):
                raise DatasetError(f"{where}:{remote_path}", "not tracked by DVC at this revision (no md5 in dvc.lock)")
            blob = blobs / f"{md5}.npz"
            if not blob.exists():
                with atomic_output(blob) as out, fs.open(remote_path, "rb") as src:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
            paths[split] = blob
    except DatasetError:
        raise
    except Exception as exc:  # network, missing remote data, missing file: all DVC-specific types
        raise DatasetError(f"{where}:{train_dir}", f"cannot fetch the artifacts: {type(exc).__name__}: {exc}; "
                           "check that the revision's data was pushed (`dvc push`) to its default remote") from exc
    finally:
        fs.close()
        with contextlib.suppress(Exception):  # remove the temporary git clone DVC made for a URL
            from dvc.repo.open_repo import clean_repos

            clean_repos()
    return paths
