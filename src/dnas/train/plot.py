"""A picture of a finetune: training loss and validation accuracy per epoch."""

from __future__ import annotations

from pathlib import Path


def plot_training(history: list[dict[str, float]], path: str | Path, title: str = "") -> Path:
    """Save a two-panel PNG: training loss and validation accuracy (%) per epoch (on a bare
    Figure: matplotlib's global backend is left alone)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    fig = Figure(figsize=(9, 3.6))
    ax_loss, ax_acc = fig.subplots(1, 2)
    pts = [(h["epoch"] + 1, h["train_loss"]) for h in history if "train_loss" in h]
    if pts:
        ax_loss.plot(*zip(*pts), "-o", markersize=4)
    ax_loss.set_ylabel("training loss")
    pts = [(h["epoch"] + 1, 100 * h["val_acc"]) for h in history if "val_acc" in h]
    if pts:
        ax_acc.plot(*zip(*pts), "-o", color="seagreen", markersize=4)
    ax_acc.set_ylabel("validation accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    from dnas.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path
