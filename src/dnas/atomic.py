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
    with atomic_paths(path) as (tmp,):
        yield tmp


@contextmanager
def atomic_paths(*paths: str | Path) -> Iterator[tuple[Path, ...]]:
    """``atomic_path`` for files that belong together (a CSV and its plot): one temporary path
    per file; only when every one is written are they renamed over their targets, one after the
    other with SIGINT and SIGTERM held back, so a Ctrl-C leaves all the old files or all the new
    ones, never a new CSV beside an old (or no) plot.

    Example:
        >>> with atomic_paths("pareto.csv", "pareto.png") as (csv_tmp, png_tmp):
        ...     csv_tmp.write_text("a,b\n"); png_tmp.write_bytes(b"...")
    """
    targets, temps = [], []
    try:
        for path in paths:
            target, tmp = _temporary_beside(Path(path))
            targets.append(target)
            temps.append(tmp)
        yield tuple(temps)
        with _signals_held():
            for tmp, target in zip(temps, targets):
                os.replace(tmp, target)
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise


def _temporary_beside(path: Path) -> tuple[Path, Path]:
    """The file to replace (a symlink's target) and a new empty temporary file beside it."""
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
    return path, Path(tmp)


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held back (delivered on leaving), where the platform and thread allow."""
    import signal
    import threading

    held = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not (
        threading.main_thread()
    ):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def foreign_file(path: str | Path, *, csv_columns: list[str] | None = None) -> str | None:
    """What stands at ``path`` if an output written there would destroy something the command did
    not write itself; None if the path is free or holds the command's own kind of output.

    The command's own output is recognised by its content: a CSV whose header row holds every
    one of ``csv_columns``, or (``csv_columns=None``) a PNG image. Anything else (a table, notes,
    the layers a user wrote by hand) is foreign and is replaced only when the user forces it.

    Example:
        >>> foreign_file("costs.csv", csv_columns=["name", "latency_ms"]) is None  # no such file
        True
    """
    path = Path(path)
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        head = f.read(4096)
    if csv_columns is None:
        return None if head.startswith(PNG_SIGNATURE) else "a file that is not a PNG image"
    first = head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
    if set(csv_columns) <= {c.strip() for c in first.split(",")}:
        return None
    if not head:
        return "an empty file"
    return f"a file that is not this command's CSV (its first line: {first[:60]!r})"


def write_problem(path: str | Path, *, directory: bool = False) -> str | None:
    """Why writing ``path`` would fail, in a few words, or None: what a command checks before its
    work, so that a bad output path is one line at the start, not an error after hours of it.

    Args:
        path: a file to write (created with its missing folders), or with ``directory=True`` a
            folder to write into (created if missing).

    Returns:
        ``"X is a file, not a directory"`` (``path`` itself, or the folder it would go in),
        ``"X is a directory"`` (a directory where the file goes), ``"X is not writable"``
        (read-only, or a read-only file system: a temporary file is made and removed there to
        know), or None.

    Example:
        >>> write_problem("/etc/passwd/out.csv")
        '/etc/passwd is a file, not a directory'
    """
    path = Path(path).expanduser()
    if path.is_dir():
        if not directory:
            return f"{path} is a directory"
        folder = path
    elif path.exists() or path.is_symlink():
        if directory:
            return f"{path} is a file, not a directory"
        folder = path.parent
    else:
        folder = next((p for p in path.absolute().parents if p.exists()), Path("/"))
        if not folder.is_dir():
            return f"{_as_given(folder, path)} is a file, not a directory"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{_as_given(folder, path)} is not writable"
    try:  # root passes os.access everywhere: a read-only mount, sysfs, ... say so only here
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        return f"{_as_given(folder, path)} is not writable ({e.strerror or e})"
    return None


def _as_given(folder: Path, path: Path) -> Path:
    """``folder`` (an ancestor of ``path`` made absolute) relative as ``path`` was given."""
    if path.is_absolute():
        return folder
    try:
        return folder.relative_to(Path.cwd())
    except ValueError:
        return folder
