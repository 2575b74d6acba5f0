"""The console scripts: each imports its command inside a guard, so that Ctrl-C at any moment,
even while torch or Lightning is still being imported, is one line and exit status 130 rather
than a traceback (the commands handle interrupts themselves once they run; this catches the
rest), and so is a write the file system refuses (permission, a dangling link, a directory where
a file goes): one line naming the path, exit 2. The module imports only the standard library.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "dnas-cost": "cost",
    "dnas-lut": "lut",
    "dnas-search": "search",
    "dnas-train": "train",
    "dnas-export": "export",
    "dnas-evolve": "evolve",
    "dnas-pareto": "pareto",
    "dnas-fit": "fit",
    "dnas-uniform": "uniform",
}


def run(prog: str) -> None:
    """Import and run ``prog``'s ``main``; exit with its status (130 on an interrupt)."""
    try:
        main = importlib.import_module(f"dnas.cli.{COMMANDS[prog]}").main
        code = main()
    except KeyboardInterrupt:
        print(f"{prog}: stopped by an interrupt (Ctrl-C)", file=sys.stderr)
        sys.exit(130)
    except FS_REFUSALS as e:
        # the file system refused a write (a read-only folder, a dangling link in the way):
        # the user's to fix, one line; the commands' outputs are atomic, so nothing half-written
        print(f"{prog}: error: {fs_refusal(e)}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)


FS_REFUSALS = (PermissionError, FileExistsError, IsADirectoryError, NotADirectoryError)
"""The errors of a write the file system refused: the user's to fix (the Hydra commands report
them the same way, through ``dnas.cli.common.user_error``; Hydra would print a traceback)."""


def fs_refusal(e: OSError) -> str:
    """``Not a directory: /path``: what the file system said and where, without the errno."""
    where = f": {e.filename}" if e.filename else ""
    return f"{e.strerror or e}{where}"


def cost() -> None:
    run("dnas-cost")


def lut() -> None:
    run("dnas-lut")


def search() -> None:
    run("dnas-search")


def train() -> None:
    run("dnas-train")


def export() -> None:
    run("dnas-export")


def evolve() -> None:
    run("dnas-evolve")


def pareto() -> None:
    run("dnas-pareto")


def fit() -> None:
    run("dnas-fit")


def uniform() -> None:
    run("dnas-uniform")
