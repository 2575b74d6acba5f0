"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A reader never sees a half-written file, and a failed write leaves the old file (or nothing).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``.

    Example:
        >>> with atomic_path("out.csv") as tmp:
        ...     tmp.write_text("a,b\\n")
    """
    path = Path(path)
    if path.is_symlink():  # write through the link: it keeps pointing where the user made it
        path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    # mkstemp creates 0600; give the file what an ordinary open() would (or the old file's mode)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    os.chmod(tmp, mode)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
