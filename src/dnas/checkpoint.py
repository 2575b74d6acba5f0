"""Checkpoints the searches and training runs write and resume from.

``last.ckpt`` is written at the end of every training epoch, after the module's own end-of-epoch
work (scheduler step) and with the epoch's row of the run's history (``dnas.history``), atomically: a run killed while saving keeps the previous
checkpoint whole. Resuming from it (``ckpt_path=RUN/checkpoints/last.ckpt``) restores the weights,
the architecture parameters, every optimiser and the scheduler (Lightning), the budget terms' λ
(module buffers), the history (callback state) and the global RNG stream
(``ResumableModule.on_save_checkpoint``); the
data loaders draw their permutation from the epoch, so the resumed run repeats the interrupted
epoch exactly as the uninterrupted run trained it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dnas.errors import DnasError

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"


def checkpoint_callback(out: Path):
    """The callback that writes ``out/checkpoints/last.ckpt`` at the end of every training epoch
    (``LastCheckpoint``)."""
    return LastCheckpoint(Path(out) / CHECKPOINT_DIR / LAST)


def _checkpoint_base():
    from pytorch_lightning.callbacks import Checkpoint

    return Checkpoint


class LastCheckpoint(_checkpoint_base()):
    """Writes ``last.ckpt`` at the end of every training epoch, atomically.

    A ``Checkpoint`` subclass, so that Lightning calls it after the module's own
    ``on_train_epoch_end`` (Lightning runs checkpoint callbacks last): the saved scheduler already
    includes the epoch, and the history's row for it is taken first. (Lightning's
    ``ModelCheckpoint`` writes ``last.ckpt`` only beside a top-k checkpoint, which would double
    the files; with ``save_top_k=0`` it writes it only when training ends.)

    Args:
        path: the file; None: ``<trainer.log_dir>/checkpoints/last.ckpt`` (``dnas-fit``).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)

    def file(self, trainer) -> Path:
        if self.path is not None:
            return self.path
        return Path(trainer.log_dir or trainer.default_root_dir) / CHECKPOINT_DIR / LAST

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        from dnas.history import record_history

        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        # Under DDP the epoch's synced metrics are computed lazily: rank 0's progress bar
        # computes them (collectives) in an earlier hook that other ranks skip. Compute them
        # here on every rank first, as ModelCheckpoint does, so that all ranks meet the
        # checkpoint's barrier in the same order (else the barrier pairs with a metric's
        # all-reduce and the run hangs).
        _ = trainer.callback_metrics
        record_history(trainer)  # the epoch's row, whichever callback Lightning calls first
        # rank 0 writes, through the atomic CheckpointIO; all of it (optimisers, loops: a resume)
        trainer.save_checkpoint(self.file(trainer), weights_only=False)


def best_checkpoint_callback(out: Path, monitor: str = "val/acc"):
    """Lightning's ``ModelCheckpoint`` keeping ``out/checkpoints/best.ckpt``, the best by ``monitor``."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    return ModelCheckpoint(
        dirpath=str(Path(out) / CHECKPOINT_DIR),
        filename="best",
        monitor=monitor,
        mode="max",
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )


def atomic_checkpoint_io():
    """A ``CheckpointIO`` that writes each checkpoint to a temporary file and renames it."""
    from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

    class _AtomicIO(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                super().save_checkpoint(checkpoint, tmp, storage_options)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)

    return _AtomicIO()


def last_checkpoint(out: Path) -> Path | None:
    """``out/checkpoints/last.ckpt`` if a run wrote one."""
    path = Path(out) / CHECKPOINT_DIR / LAST
    return path if path.is_file() else None


def torch_file_problem(path: str | Path) -> str:
    """Why ``torch.load`` cannot read ``path``, in a few words: a file that does not start like a
    ``torch.save`` archive is "not a file torch.save wrote"; one that does, truncated or damaged."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":
        return "not a file torch.save wrote"
    return "truncated or damaged: torch cannot read its archive"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint file, loaded as plain data (``weights_only``: no code runs from it).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a checkpoint (truncated, foreign, or a pickle with code in it).
    """
    import torch

    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"ckpt_path={path} is a directory; give the checkpoint file (RUN/checkpoints/last.ckpt)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={path}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, payload refused by weights_only
        if "GLOBAL" in str(e):
            why = "it holds objects other than tensors and plain data, refused unread"
        else:  # torch's own text here is a page, cut mid-sentence
            why = torch_file_problem(path)
        raise CheckpointError(
            f"ckpt_path={path} is not a readable dnas checkpoint ({why}); give the "
            "checkpoints/last.ckpt a run wrote"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"ckpt_path={path} is not a Lightning checkpoint")
    return ckpt


def epoch_of(path: Path | None) -> int | None:
    """The number of completed epochs a checkpoint holds (None if unreadable)."""
    if path is None:
        return None
    try:
        return int(read_checkpoint(path).get("epoch", -1)) + 1
    except (OSError, ValueError):
        return None


class CheckpointError(DnasError):
    """A checkpoint that cannot resume this run (unreadable, another space, targets or format)."""


CHECKPOINT_FORMAT = 2  # 2: the history moved from the module's state to the History callback


class ResumableModule:
    """Mixin for a LightningModule: what Lightning's checkpoint lacks for an exact resume.

    Saves, under ``checkpoint_key``, the global torch RNG stream
    (Gumbel samples, sampled paths, dropout), plus ``checkpoint_identity()`` (what the run is of:
    space, targets, architecture), which a resume must match. The RNG is restored at the start of
    the first training epoch after loading, so whatever runs in between (a sanity check, data
    set-up) cannot shift it. Plain data and tensors only: it loads with ``weights_only=True``.
    """

    checkpoint_key = "dnas"

    def checkpoint_identity(self) -> dict[str, Any]:
        return {}

    def check_checkpoint_identity(self, state: dict[str, Any]) -> None:
        """Raise ``CheckpointError`` if ``state`` is of another run than this one."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        import torch

        checkpoint[self.checkpoint_key] = {
            "format": CHECKPOINT_FORMAT,
            **self.checkpoint_identity(),
            "torch_rng": torch.get_rng_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(self.checkpoint_key)
        if state is None:
            raise CheckpointError(f"the checkpoint has no {self.checkpoint_key!r} state")
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"checkpoint format {state.get('format')!r}; this dnas reads {CHECKPOINT_FORMAT}"
            )
        self.check_checkpoint_identity(state)
        self._resume_rng = state["torch_rng"]

    def restore_rng_after_resume(self) -> None:
        """Call first thing in ``on_train_epoch_start``."""
        import torch

        rng = getattr(self, "_resume_rng", None)
        if rng is not None:
            torch.set_rng_state(rng)
            self._resume_rng = None
