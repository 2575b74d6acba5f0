"""A picture of a search: expected and derived cost against the target, and accuracy, per epoch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dnas.cost.targets import Targets


def draw_search(history: list[dict[str, float]], targets: Targets, axes: Sequence) -> None:
    """Draw the three panels of ``plot_search`` into ``axes`` (latency, energy, accuracy)."""
    from matplotlib.ticker import MaxNLocator

    ax_lat, ax_en, ax_acc = axes
    for ax, metric, unit in ((ax_lat, "latency_ms", "ms"), (ax_en, "energy_mj", "mJ")):
        for kind, style in (("expected", "-o"), ("derived", "-s")):
            pts = [(h["epoch"], h[f"{kind}_{metric}"]) for h in history if f"{kind}_{metric}" in h]
            if pts:
                ax.plot(*zip(*pts), style, label=f"{kind}", markersize=4)
        target = getattr(targets, metric)
        if target is not None:
            ax.axhline(target, color="crimson", linestyle="--", label="target")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{metric.split('_')[0]} ({unit})")
        ax.set_title(f"BitFusion {metric.split('_')[0]}")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # an energy panel under a latency-only target
            ax.legend(fontsize=8)  # with no history yet has nothing to name
    pts = [(h["epoch"], 100 * h["val_acc"]) for h in history if "val_acc" in h]
    if pts:
        ax_acc.plot(*zip(*pts), "-o", color="seagreen", markersize=4)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy of the derived net (%)")
    ax_acc.set_title("validation accuracy")
    ax_acc.grid(alpha=0.3)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_search(history: list[dict[str, float]], targets: Targets, path: str | Path) -> Path:
    """Save a three-panel PNG (latency and energy per epoch with the target line; validation
    accuracy per epoch). Drawn on a bare Figure: matplotlib's global backend is left alone, so a
    notebook that runs a search keeps its inline plots."""
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(13, 3.8))
    draw_search(history, targets, fig.subplots(1, 3))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
