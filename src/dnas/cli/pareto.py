"""``dnas-pareto``: gather the architectures of many runs into one accuracy-vs-cost Pareto picture.

``dnas-pareto DIR... [-o OUTDIR]`` reads every ``arch.yaml`` under the given run or multirun
directories (recursively, through folders that are symbolic links; hidden folders such as
``.hydra`` are skipped) and writes ``OUTDIR/pareto.csv`` and ``OUTDIR/pareto.png`` (atomically, as
a pair; OUTDIR defaults to the current directory). Runs priced on different hardware configs,
spaces or cost tables are refused: their costs cannot share a front. Typical use after a sweep::

    dnas-search -m target.latency_frac=0.1,0.3,0.6   # or: experiment=pareto_sweep_independent
    dnas-pareto multirun/search/DATE/TIME -o results/
    dnas-search experiment=pareto_sweep              # the budgets in one run (front=[...])
    dnas-pareto outputs/search/DATE/TIME -o results/

One CSV row per architecture (``run_dir`` is the folder holding its ``arch.yaml``):

``method``
    What produced the architecture, from ``run.json`` beside ``arch.yaml`` (``dnas``,
    ``evolution_predictor``, ``evolution_direct``, ``random``, …). Without ``run.json`` (older
    runs) a folder holding ``model.pt`` is a ``dnas-train`` run, any other a ``dnas-search`` run.
    A ``dnas-train`` run (``"method": "train"``, the finetuned child of a search) is reported under
    the method of the search it came from (``source_method``, followed through a chain of
    finetunings; ``dnas`` when unknown, as ``dnas-train`` itself assumes) with ``finetuned_acc``
    set: a row with a ``finetuned_acc`` is a finetuned network.
``target_metric``, ``target_value``
    The budget: ``latency_ms`` and the value of ``target_latency_ms`` when the YAML has it,
    otherwise ``energy_mj`` and ``target_energy_mj``; empty when the run had no budget.
``latency_ms``, ``energy_mj``
    The architecture's exact BitFusion cost (required: a YAML without them is skipped).
``supernet_acc``, ``finetuned_acc``
    Test accuracy as a fraction in [0, 1]. For a search (and any non-``train`` method) the YAML's
    ``test_acc`` is the accuracy inside the supernet: ``supernet_acc``, and ``finetuned_acc`` is
    empty. For a finetuned run ``test_acc`` is ``finetuned_acc`` and the YAML's ``supernet_acc``
    (when recorded) is carried over. Missing or NaN accuracies are empty.
``scratch_acc``
    The test accuracy of a ``dnas-train init=scratch`` run (``"init": "scratch"`` in its
    ``run.json``): the architecture trained from random weights, not finetuned from its search's,
    so it is kept apart from ``finetuned_acc`` (which stays empty on that row).
``on_front_latency``, ``on_front_energy``
    ``True`` when no other architecture of the same *series* is at least as accurate and at most
    as costly (latency, resp. energy) and strictly better in one of the two. A series is one method
    and one kind of accuracy: the finetuned rows of a method form one series (ranked by
    ``finetuned_acc``) and its other rows another (ranked by ``supernet_acc``), so accuracies
    measured differently are never compared (the rows trained from scratch are a third series).
    Rows without an accuracy are never on a front.

The plot has two panels, accuracy (%) against latency and against energy: one colour and marker per
method (filled for finetuned accuracy, hollow for accuracy inside the supernet, filled with a black
edge for training from scratch), each series' front joined by a step line (the best accuracy reachable within a cost). An unreadable ``arch.yaml`` or
``run.json`` is skipped with a warning naming it; no ``arch.yaml`` at all, or a directory that does
not exist, is an error (exit code 2).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dnas
from dnas.atomic import atomic_path, atomic_paths, foreign_file
from dnas.errors import DnasError

ARCH_FILE = "arch.yaml"
RUN_FILE = "run.json"
MODEL_FILE = "model.pt"  # what a dnas-train run leaves beside its arch.yaml
TRAIN = "train"
DEFAULT_SOURCE = "dnas"
COLUMNS = (
    "method",
    "target_metric",
    "target_value",
    "latency_ms",
    "energy_mj",
    "supernet_acc",
    "finetuned_acc",
    "scratch_acc",
    "on_front_latency",
    "on_front_energy",
    "run_dir",
)
COSTS = (("latency_ms", "latency", "ms"), ("energy_mj", "energy", "mJ"))
# Known methods keep their look from one plot to the next; others take what is left.
STYLES = {
    "dnas": ("tab:blue", "o"),
    "dnas_front": ("tab:cyan", "o"),
    "evolution_predictor": ("tab:orange", "s"),
    "evolution_direct": ("tab:green", "^"),
    "random": ("tab:gray", "D"),
    TRAIN: ("tab:purple", "v"),
}
SPARE_STYLES = (
    ("tab:red", "P"),
    ("tab:brown", "X"),
    ("tab:pink", "<"),
    ("tab:olive", ">"),
    ("tab:cyan", "h"),
)


class ParetoError(DnasError):
    """A problem with the command line: reported in one line, exit code 2."""


class RunError(DnasError):
    """A run directory that cannot be read: skipped with a warning."""


@dataclass
class Row:
    """One architecture: what produced it, its budget, cost and accuracies."""

    method: str
    target_metric: str | None
    target_value: float | None
    latency_ms: float
    energy_mj: float
    supernet_acc: float | None
    finetuned_acc: float | None
    run_dir: Path
    on_front_latency: bool = False
    on_front_energy: bool = False
    scratch_acc: float | None = None
    pricing: dict = field(default_factory=dict, compare=False)
    """What priced ``latency_ms``/``energy_mj``, as far as the run says: ``hardware`` (its
    settings), ``space`` (name and fingerprint) and ``table`` (the cost table's content hash)."""

    @property
    def finetuned(self) -> bool:
        return self.finetuned_acc is not None

    @property
    def kind(self) -> str:
        """Which accuracy the row is ranked by: ``finetuned``, ``scratch`` or ``supernet``."""
        if self.finetuned:
            return "finetuned"
        return "scratch" if self.scratch_acc is not None else "supernet"

    @property
    def accuracy(self) -> float | None:
        """The accuracy the row is ranked and plotted by: finetuned, else from scratch, else
        inside the supernet."""
        return {
            "finetuned": self.finetuned_acc,
            "scratch": self.scratch_acc,
            "supernet": self.supernet_acc,
        }[self.kind]

    @property
    def series(self) -> tuple[str, str]:
        """Rows compared with each other: one method, one kind of accuracy."""
        return (self.method, self.kind)

    def csv_row(self) -> dict[str, str]:
        def num(v: float | None) -> str:
            return "" if v is None else repr(float(v))

        return {
            "method": self.method,
            "target_metric": self.target_metric or "",
            "target_value": num(self.target_value),
            "latency_ms": num(self.latency_ms),
            "energy_mj": num(self.energy_mj),
            "supernet_acc": num(self.supernet_acc),
            "finetuned_acc": num(self.finetuned_acc),
            "scratch_acc": num(self.scratch_acc),
            "on_front_latency": str(self.on_front_latency),
            "on_front_energy": str(self.on_front_energy),
            "run_dir": str(self.run_dir),
        }


# ------------------------------------------------------------------------------------- reading
def natural_key(path: Path) -> list:
    """Sort ``multirun/2`` before ``multirun/10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_arch_files(dirs: Sequence[str | Path]) -> list[Path]:
    """Every ``arch.yaml`` under ``dirs`` (hidden folders skipped), once each, in natural order.

    The copy ``dnas-export`` writes beside ``model.safetensors`` is the same architecture as its
    run's, not another run: it is skipped.

    Folders that are symbolic links are followed (a results tree of links to the runs), each
    real folder once, so a link back up the tree ends the walk there.
    """
    found: dict[Path, Path] = {}
    seen: set[str] = set()
    for d in dirs:
        root = Path(d)
        if not root.exists():
            raise ParetoError(f"{root}: no such directory")
        if not root.is_dir():
            raise ParetoError(f"{root} is not a directory (give run or multirun directories)")
        for parent, subdirs, files in os.walk(root, followlinks=True):
            real = os.path.realpath(parent)
            if real in seen:
                subdirs[:] = []
                continue
            seen.add(real)
            subdirs[:] = [s for s in subdirs if not s.startswith(".")]
            if ARCH_FILE in files and "model.safetensors" not in files:
                path = Path(parent) / ARCH_FILE
                found.setdefault(path.resolve(), path)
    return sorted(found.values(), key=natural_key)


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise RunError(f"{path}: unreadable ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: not a JSON object")
    return data


def run_method(run_dir: Path) -> tuple[str, dict]:
    """The method of a run directory and its ``run.json`` (``{}`` when absent)."""
    path = run_dir / RUN_FILE
    if not path.is_file():
        return (TRAIN if (run_dir / MODEL_FILE).is_file() else DEFAULT_SOURCE), {}
    record = read_json(path)
    method = record.get("method")
    if not isinstance(method, str) or not method.strip():
        raise RunError(f'{path}: no "method" (a non-empty string)')
    return method.strip(), record


def source_method(record: dict, run_dir: Path) -> str:
    """The method of the search a finetuned run came from, through finetunings of finetunings."""
    seen = {run_dir.resolve()}
    for _ in range(32):
        method = record.get("source_method")
        if not isinstance(method, str) or not method.strip():
            return DEFAULT_SOURCE
        if method.strip() != TRAIN:
            return method.strip()
        source = record.get("source")
        if not isinstance(source, str) or Path(source).resolve() in seen:
            return DEFAULT_SOURCE
        seen.add(Path(source).resolve())
        try:
            record = read_json(Path(source) / RUN_FILE)
        except RunError:
            return DEFAULT_SOURCE
    return DEFAULT_SOURCE


def _accuracy(metrics: dict[str, float], name: str) -> float | None:
    v = metrics.get(name)
    return None if v is None or math.isnan(v) else v


def read_run(arch_path: Path) -> Row:
    """The row of one ``arch.yaml`` and the ``run.json`` beside it.

    Raises:
        RunError: either file is unreadable, or the YAML lacks its cost.
    """
    import yaml

    from dnas.errors import DnasError
    from dnas.space import Architecture

    run_dir = arch_path.parent
    try:
        arch = _network_choice(arch_path) or Architecture.load(arch_path)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, DnasError) as e:
        reason = " ".join(str(e).split())
        raise RunError(f"{arch_path}: not a readable architecture ({reason})") from None
    m = arch.metrics
    missing = [k for k in ("latency_ms", "energy_mj") if k not in m]
    if missing:
        raise RunError(f"{arch_path}: no {' or '.join(missing)} in its metrics")
    for k in ("latency_ms", "energy_mj"):
        v = m[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
            raise RunError(f"{arch_path}: {k}={v!r} is not a cost (a finite positive number)")
    method, record = run_method(run_dir)
    scratch = None
    if method == TRAIN:
        method = source_method(record, run_dir)
        supernet, finetuned = _accuracy(m, "supernet_acc"), _accuracy(m, "test_acc")
        if record.get("init") == "scratch":  # trained from random weights: not a finetune
            scratch, finetuned = finetuned, None
    else:
        supernet, finetuned = _accuracy(m, "test_acc"), None
    target_metric = target_value = None
    for metric in ("latency_ms", "energy_mj"):  # latency preferred when the run had both
        if f"target_{metric}" in m:
            target_metric, target_value = metric, m[f"target_{metric}"]
            break
    return Row(
        method=method,
        target_metric=target_metric,
        target_value=target_value,
        latency_ms=m["latency_ms"],
        energy_mj=m["energy_mj"],
        supernet_acc=supernet,
        finetuned_acc=finetuned,
        run_dir=run_dir,
        scratch_acc=scratch,
        pricing=pricing_of(arch, record),
    )


@dataclass(frozen=True)
class _NetworkChoice:
    """What a front reads of a converted network's ``arch.yaml`` (``dnas.graph.io``): its
    metrics, and the network it is a choice of in place of a space."""

    metrics: dict
    space: str
    space_fingerprint: str
    table_hash: str | None = None


def _network_choice(arch_path: Path) -> _NetworkChoice | None:
    """A converted network's choice file as a front row's source, or None for another file."""
    from dnas.errors import load_yaml, read_text

    data = load_yaml(read_text(arch_path, "architecture"))
    if not isinstance(data, dict) or "graph_fingerprint" not in data:
        return None
    metrics = data.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise RunError(f"{arch_path}: metrics is not a mapping")
    return _NetworkChoice(
        metrics={str(k): v for k, v in metrics.items()},
        space=f"network {data.get('network')}",
        space_fingerprint=str(data["graph_fingerprint"]),
    )


def pricing_of(arch, record: dict) -> dict:
    """What priced an architecture's cost, from its ``arch.yaml`` and ``run.json`` (each piece
    only when the run records it): ``hardware`` (the settings of the hardware config: the Hydra
    commands' ``config.hardware``, dnas-fit's ``config.model.hardware``), ``space`` and
    ``table`` (``table_hash``)."""
    out: dict = {}
    config = record.get("config")
    hardware = None
    if isinstance(config, dict):
        hardware = config.get("hardware")
        model = config.get("model")
        if hardware is None and isinstance(model, dict):
            hardware = model.get("hardware")
    if isinstance(hardware, str):  # dnas-fit: a built-in name or a YAML file of one
        from dnas.cost.hardware import load_hardware

        try:
            hardware = load_hardware(hardware).to_dict()
        except (OSError, ValueError):
            hardware = {"name": hardware}
    if isinstance(hardware, dict) and hardware:
        out["hardware"] = hardware
    if arch.space_fingerprint:
        out["space"] = (arch.space, arch.space_fingerprint)
    table = arch.table_hash or record.get("table_hash")
    if isinstance(table, str) and table:
        out["table"] = table
    return out


def _pricing_difference(kind: str, a, b) -> str:
    """How two runs' ``pricing[kind]`` differ, in a few words."""
    if kind == "hardware":
        keys = sorted(set(a) | set(b), key=lambda k: (k != "name", k))
        diff = [f"{k} {a.get(k)!r} against {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]
        more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
        return f"hardware configs ({', '.join(diff[:3])}{more})"
    if kind == "space":
        same = a[0] == b[0]
        what = f"{a[0]} {a[1]} against {b[1]}" if same else f"{a[0]} against {b[0]}"
        return f"spaces ({what})"
    return (
        f"cost tables ({a[:12]} against {b[:12]}: another table.path= or a table another dnas "
        "version built)"
    )


def check_one_pricing(rows: Sequence[Row]) -> None:
    """Refuse rows whose costs came from different hardware, spaces or cost tables: a latency
    on one accelerator is not comparable with a latency on another, so they cannot share a front.

    Raises:
        ParetoError: naming two such runs and what differs between them.
    """
    for kind in ("hardware", "space", "table"):
        known = [r for r in rows if kind in r.pricing]
        for r in known[1:]:
            first = known[0]
            if r.pricing[kind] != first.pricing[kind]:
                what = _pricing_difference(kind, first.pricing[kind], r.pricing[kind])
                raise ParetoError(
                    f"{first.run_dir} and {r.run_dir} were priced on different {what}: their "
                    "costs cannot share a front; give them to separate dnas-pareto calls"
                )


def collect(dirs: Sequence[str | Path], warn: Callable[[str], None]) -> list[Row]:
    """The rows of every readable ``arch.yaml`` under ``dirs``, fronts marked."""
    files = find_arch_files(dirs)
    if not files:
        raise ParetoError(f"no {ARCH_FILE} under {', '.join(map(str, dirs))}")
    rows = []
    for f in files:
        try:
            rows.append(read_run(f))
        except RunError as e:
            warn(f"skipping {e}")
    if not rows:
        raise ParetoError(f"none of the {len(files)} {ARCH_FILE} file(s) found could be read")
    check_one_pricing(rows)
    mark_fronts(rows)
    return rows


def rows_from_records(records: Iterable[dict]) -> list[Row]:
    """Rows of the head-to-head's records (``bench/results/search.json``, one finetuned
    architecture per record: ``method``, ``target_metric``, ``target_value``, ``latency_ms``,
    ``energy_mj``, ``supernet_acc`` and the finetuned ``test_acc``), fronts marked."""
    rows = [
        Row(
            method=r["method"],
            target_metric=r.get("target_metric"),
            target_value=r.get("target_value"),
            latency_ms=float(r["latency_ms"]),
            energy_mj=float(r["energy_mj"]),
            supernet_acc=_accuracy(r, "supernet_acc"),
            finetuned_acc=_accuracy(r, "test_acc"),
            run_dir=Path(r.get("run_dir") or "."),
        )
        for r in records
    ]
    mark_fronts(rows)
    return rows


# -------------------------------------------------------------------------------------- fronts
def non_dominated(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For each ``(cost, accuracy)``: True when no other point is at most as costly and at least as
    accurate, and strictly better in one (lower cost is better, higher accuracy is better)."""
    return [
        not any(
            c2 <= c and a2 >= a and (c2 < c or a2 > a)
            for j, (c2, a2) in enumerate(points)
            if j != i
        )
        for i, (c, a) in enumerate(points)
    ]


def mark_fronts(rows: Iterable[Row]) -> None:
    """Set ``on_front_latency``/``on_front_energy`` within each series (method × accuracy kind)."""
    by_series: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        r.on_front_latency = r.on_front_energy = False
        if r.accuracy is not None:
            by_series.setdefault(r.series, []).append(r)
    for members in by_series.values():
        for metric, _, _ in COSTS:
            flags = non_dominated([(getattr(r, metric), r.accuracy) for r in members])
            for r, on in zip(members, flags):
                setattr(r, f"on_front_{metric.split('_')[0]}", on)


# ------------------------------------------------------------------------------------- writing
def write_csv(rows: Sequence[Row], path: Path) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        _write_rows(rows, f)
    return path


def _write_rows(rows: Sequence[Row], f) -> None:
    w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(r.csv_row() for r in rows)


def _styles(methods: Iterable[str]) -> dict[str, tuple[str, str]]:
    out, spare = {}, iter(SPARE_STYLES * 4)
    for m in methods:
        out[m] = STYLES.get(m) or next(spare, ("black", "*"))
    return out


SERIES_LABEL = {"finetuned": "finetuned", "supernet": "in supernet", "scratch": "from scratch"}


def series_label(method: str, kind: str) -> str:
    return f"{method} ({SERIES_LABEL[kind]})"


def draw_pareto(rows: Sequence[Row], axes: Sequence) -> None:
    """Draw accuracy (%) against latency and against energy into two ``axes``: one colour and
    marker per method, each series' front as a step line."""
    plotted = [r for r in rows if r.accuracy is not None]
    series = sorted({r.series for r in plotted})
    styles = _styles(sorted({m for m, _ in series}))
    for ax, (metric, name, unit) in zip(axes, COSTS):
        flag = f"on_front_{metric.split('_')[0]}"
        for method, kind in series:
            color, marker = styles[method]
            members = [r for r in plotted if r.series == (method, kind)]
            for on_front in (True, False):  # the front bold, dominated points faint
                pts = [r for r in members if getattr(r, flag) == on_front]
                if not pts:
                    continue
                ax.scatter(
                    [getattr(r, metric) for r in pts],
                    [100 * r.accuracy for r in pts],
                    marker=marker,
                    s=36,
                    facecolors="none" if kind == "supernet" else color,
                    edgecolors="black" if kind == "scratch" else color,
                    linewidths=1.2,
                    alpha=0.95 if on_front else 0.4,
                    label=series_label(method, kind) if on_front else None,
                    zorder=3,
                )
            front = sorted(
                (getattr(r, metric), 100 * r.accuracy) for r in members if getattr(r, flag)
            )
            if front:
                ax.step(
                    *zip(*front),
                    where="post",
                    color=color,
                    linestyle={"finetuned": "-", "supernet": "--", "scratch": ":"}[kind],
                    linewidth=1.4,
                    alpha=0.8,
                    zorder=2,
                )
        ax.set_xlabel(f"BitFusion {name} ({unit})")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"accuracy vs {name}")
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=8, loc="best")
        else:
            ax.text(0.5, 0.5, "no accuracy recorded", ha="center", transform=ax.transAxes)


def plot_pareto(rows: Sequence[Row], path: Path) -> Path:
    """Two panels, accuracy (%) against latency and energy; every series' front as a step line.

    Drawn on a bare Figure, so matplotlib's global backend (a notebook's) is left alone.
    """
    fig = pareto_figure(rows)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def pareto_figure(rows: Sequence[Row]):
    """The figure ``plot_pareto`` saves."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    draw_pareto(rows, fig.subplots(1, 2))
    fig.suptitle(f"{len(rows)} architectures; step lines: the Pareto front of each series")
    fig.tight_layout()
    return fig


def write_outputs(rows: Sequence[Row], out: Path) -> tuple[Path, Path]:
    """``out/pareto.csv`` and ``out/pareto.png`` as a pair: both are written to temporary files
    first and renamed together (``atomic_paths``), so an interrupt leaves both old files or both
    new ones, never a new CSV without its plot."""
    csv_path, png_path = out / "pareto.csv", out / "pareto.png"
    fig = pareto_figure(rows)
    with atomic_paths(csv_path, png_path) as (csv_tmp, png_tmp):
        with open(csv_tmp, "w", newline="") as f:
            _write_rows(rows, f)
        fig.savefig(png_tmp, format="png", dpi=110)
    return csv_path, png_path


def print_summary(rows: Sequence[Row]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 140)

    def pct(v: float | None) -> str:
        return "" if v is None else f"{100 * v:.2f}"

    t = Table(title=f"{len(rows)} architectures", caption="front: L latency, E energy")
    for name, justify in (
        ("method", "left"),
        ("target", "right"),
        ("latency ms", "right"),
        ("energy mJ", "right"),
        ("supernet %", "right"),
        ("finetuned %", "right"),
        ("scratch %", "right"),
        ("front", "center"),
        ("run dir", "left"),
    ):
        t.add_column(name, justify=justify, no_wrap=name != "run dir")
    for r in rows:
        target = "" if r.target_metric is None else f"{r.target_metric} ≤ {r.target_value:.4g}"
        front = ("L" if r.on_front_latency else "") + ("E" if r.on_front_energy else "")
        t.add_row(
            r.method,
            target,
            f"{r.latency_ms:.4f}",
            f"{r.energy_mj:.4f}",
            pct(r.supernet_acc),
            pct(r.finetuned_acc),
            pct(r.scratch_acc),
            front or "·",
            str(r.run_dir),
        )
    console.print(t)


# ----------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dnas-pareto",
        description=(
            "Collect every arch.yaml under run or multirun directories into pareto.csv (one row "
            "per architecture: method, target, latency, energy, accuracies, Pareto-front flags) "
            "and pareto.png (accuracy against latency and energy, one front per method)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"dnas-pareto {dnas.__version__}")
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run or multirun directories")
    parser.add_argument(
        "-o",
        "--outdir",
        default=".",
        metavar="OUTDIR",
        help="where pareto.csv and pareto.png go (default: the current directory)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace pareto.csv / pareto.png in OUTDIR even if dnas-pareto did not write them",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def warn(message: str) -> None:
        print(f"dnas-pareto: warning: {message}", file=sys.stderr)

    try:
        if not args.outdir.strip():
            raise ParetoError("-o is empty; give a directory (default: the current one)")
        out = Path(args.outdir)
        if out.exists() and not out.is_dir():
            raise ParetoError(f"-o {out}: not a directory")
        blocked = [p for p in out.parents if p.exists() and not p.is_dir()]
        if blocked:
            raise ParetoError(f"-o {out}: {blocked[-1]} is a file, not a directory")
        for name in ("pareto.csv", "pareto.png"):
            if (out / name).is_dir():
                raise ParetoError(f"-o {out}: {out / name} is a directory; it writes a file there")
        if not args.force:  # only pareto.csv and pareto.png of an earlier run are replaced
            for name, columns in (("pareto.csv", list(COLUMNS)), ("pareto.png", None)):
                held = foreign_file(out / name, csv_columns=columns)
                if held:
                    raise ParetoError(
                        f"-o {out}: {out / name} holds {held}; give another -o or --force to"
                        " replace it"
                    )
        rows = collect(args.dirs, warn)
        csv_path, png_path = write_outputs(rows, out)
    except (ParetoError, OSError) as e:
        print(f"dnas-pareto: error: {e}", file=sys.stderr)
        return 2
    print_summary(rows)
    print(f"{len(rows)} architectures -> {csv_path}, {png_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
