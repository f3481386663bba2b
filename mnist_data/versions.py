"""Getting the processed splits of any revision of a DVC repository into a local cache.

Files are fetched through DVC's Python API (``DVCFileSystem``), which pulls them from that
revision's default remote, and stored under the loader's cache folder by their DVC md5, so a
version already fetched is never fetched again and different versions never collide. Only this
module imports ``dvc``.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mnist_data.artifacts import SPLITS, cache_dir
from mnist_data.atomic import atomic_output
from mnist_data.errors import DatasetError

_MD5 = re.compile(r"[0-9a-f]{32}")


def fetch_version(train_dir: str, repo: str | None, rev: str | None) -> Path:
    """Return a local folder holding ``train_dir``'s three splits as of ``repo`` at ``rev``.

    Raises:
        DatasetError: DVC is not installed, or the repository, revision or files cannot be read.
    """
    try:
        from dvc.api import DVCFileSystem
    except ImportError as exc:
        raise DatasetError(repo or ".", "loading a version with repo=/rev= needs DVC: pip install dvc") from exc
    where = f"{repo or '.'}@{rev or 'HEAD'}"
    try:
        fs = DVCFileSystem(repo, rev=rev)
    except Exception as exc:  # DVC raises many unrelated types for a bad URL or revision
        raise DatasetError(where, f"cannot open the repository at this revision: {exc}") from exc
    versions = cache_dir() / "versions"
    folder = versions / "by-rev" / _safe(where)
    try:
        for split in SPLITS:
            remote_path = posixpath.join(train_dir.strip("/") or ".", f"{split}.npz")
            info = fs.info(remote_path)
            md5 = (info.get("dvc_info") or {}).get("md5") or info.get("md5")
            if not (isinstance(md5, str) and _MD5.fullmatch(md5)):
                raise DatasetError(f"{where}:{remote_path}", "not tracked by DVC at this revision (no md5 in dvc.lock)")
            blob = versions / "by-md5" / f"{md5}.npz"
            if not blob.exists():
                with atomic_output(blob) as out, fs.open(remote_path, "rb") as src:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
            link = folder / f"{split}.npz"
            folder.mkdir(parents=True, exist_ok=True)
            if not (link.is_symlink() and link.resolve() == blob.resolve()):
                tmp = link.with_name(f".{split}.npz.link")
                tmp.unlink(missing_ok=True)
                tmp.symlink_to(blob)
                tmp.replace(link)
    except DatasetError:
        raise
    except Exception as exc:  # network, missing remote data, missing file: all DVC-specific types
        raise DatasetError(f"{where}:{train_dir}", f"cannot fetch the artifacts: {type(exc).__name__}: {exc}; "
                           "check that the revision's data was pushed (`dvc push`) to its default remote") from exc
    return folder


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[-150:]
