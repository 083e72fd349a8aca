"""Content digests that bind a report to the exact files it audited."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def sha256_tree(root: Path) -> tuple[str, int]:
    """A digest of a folder: every regular file's relative path and sha256, in sorted order.

    Links are hashed as their target text, never followed, so the digest covers exactly what
    the folder holds. Returns the digest and the total size of the files.
    """
    digest = hashlib.sha256()
    total = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            entry = f"link:{path.readlink()}"
        else:
            entry = sha256_file(path)
            total += path.stat().st_size
        digest.update(f"{relative}\0{entry}\n".encode())
    return digest.hexdigest(), total


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
