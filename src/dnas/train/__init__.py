"""Training the child network of a searched architecture (QAT at its fixed bits), and loading it.

``init_child`` builds the static child of an architecture from random weights or from a search's
``supernet.pt`` (kernel crop, channel slice, batch-norm statistics re-estimated for the child);
``ChildModule`` finetunes it with Lightning; ``load_child`` rebuilds a trained child from its run
directory.
"""

from dnas.train.load import (
    TrainError,
    init_child,
    load_child,
    load_supernet,
    resolve_arch_path,
)

__all__ = ["TrainError", "init_child", "load_child", "load_supernet", "resolve_arch_path"]
