"""A picture of an evolutionary (or random) search: best and mean fitness per generation."""

from __future__ import annotations

from pathlib import Path


def plot_evolution(rows: list[dict[str, float]], path: str | Path, title: str = "") -> Path:
    """Save a PNG of best and mean fitness (%) against generation, evaluations on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dnas.atomic import atomic_path

    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    if rows:
        g = [r["generation"] for r in rows]
        ax.plot(g, [100 * r["best_fitness"] for r in rows], "-", label="best")
        ax.plot(g, [100 * r["mean_fitness"] for r in rows], "--", label="population mean")
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness (accuracy, %)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
