"""A run's per-epoch history, taken from what its module logs (one record, not a second one).

A module logs its epoch-level metrics once (``self.log``: the logger, the progress bar and
``trainer.callback_metrics`` all read them from there). :class:`History` copies the ones it was
told to keep from ``trainer.callback_metrics`` at the end of each training epoch, when they are
final, into one row per epoch under short names (``val/acc`` → ``val_acc``); ``history.json`` and
the search plot are drawn from these rows. Its rows are callback state, so they travel in every
checkpoint Lightning writes and a resumed run continues them.

A module declares what to keep with ``configure_callbacks`` (so every trainer that runs it, from a
CLI or a notebook, keeps a history); :func:`history_of` finds it on a trainer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint

_SUFFIX = re.compile(r"(.*?)(_t\d+)?")  # a front's per-target metrics end in _t<k>


class History(Checkpoint):
    """One row per training epoch of the logged metrics named in ``keep``.

    A ``Checkpoint`` subclass only for when Lightning calls it: checkpoint callbacks run after the
    module's own ``on_train_epoch_end``, so the metrics the module logs there (temperature,
    expected cost) are in the row. It writes no file. The ``last.ckpt`` callback takes the row
    (``record``, idempotent) before it saves, so a checkpoint holds the epoch it ends.

    Args:
        train: logged name → history key of what the training epoch logs, e.g.
            ``{"arch/tau": "tau"}``.
        val: the same for what validation logs, e.g. ``{"val/acc": "val_acc"}``: taken when a
            validation ends, and only into that epoch's row (``callback_metrics`` keeps the last
            validation's values through epochs that do not validate).

    A logged name with a front's target suffix (``val/acc_t1``) keeps it (``val_acc_t1``).
    """

    def __init__(self, train: Mapping[str, str], val: Mapping[str, str]) -> None:
        self.train, self.val = dict(train), dict(val)
        self.rows: list[dict[str, float]] = []
        self._validated: tuple[int, dict[str, float]] | None = None  # (epoch, its values)

    @property
    def state_key(self) -> str:
        return "History"  # one per trainer; what it keeps comes from the module, not the state

    def record(self, trainer: pl.Trainer) -> None:
        """Take the current epoch's metrics into its row (again: the same row, updated)."""
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        epoch = int(trainer.current_epoch)
        values = _kept(trainer.callback_metrics, self.train)
        if self._validated is not None and self._validated[0] == epoch:
            values.update(self._validated[1])
        if not self.rows or self.rows[-1]["epoch"] != epoch:
            self.rows.append({"epoch": epoch})
        self.rows[-1].update(values)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and not trainer.fast_dev_run:
            values = _kept(trainer.callback_metrics, self.val)
            self._validated = (int(trainer.current_epoch), values)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.record(trainer)

    def for_target(self, k: int, num_targets: int) -> list[dict[str, float]]:
        """Target k's rows with the keys of a one-target run (``val_acc_t1`` → ``val_acc``).

        The rows as they are when one target was searched. In a front, target k's own values
        replace shared ones of the same name (``val_acc``, the front's mean).
        """
        if num_targets == 1:
            return [dict(r) for r in self.rows]
        out = []
        for row in self.rows:
            shared, own = {}, {}
            for key, v in row.items():
                base, suffix = _SUFFIX.fullmatch(key).groups()
                if suffix is None:
                    shared[key] = v
                elif int(suffix[2:]) == k:
                    own[base] = v
            out.append({**shared, **own})
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state_dict["rows"]]


def _kept(metrics: Mapping[str, Any], keep: Mapping[str, str]) -> dict[str, float]:
    """The finite values of ``metrics`` named in ``keep``, under their history keys."""
    values: dict[str, float] = {}
    for name, value in metrics.items():
        base, suffix = _SUFFIX.fullmatch(name).groups()
        if base in keep:
            v = float(value)
            if math.isfinite(v):
                values[keep[base] + (suffix or "")] = v
    return values


def history_of(trainer: pl.Trainer) -> History:
    """The trainer's :class:`History` (a module that keeps one adds it itself)."""
    for callback in trainer.callbacks:
        if isinstance(callback, History):
            return callback
    raise LookupError(
        "this trainer keeps no History: the module's configure_callbacks adds one (SearchModule "
        "and ChildModule do)"
    )


def record_history(trainer: pl.Trainer) -> None:
    """Take the current epoch's row now, if the trainer keeps a history (before a checkpoint)."""
    for callback in trainer.callbacks:
        if isinstance(callback, History):
            callback.record(trainer)
