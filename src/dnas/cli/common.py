"""What the commands share: quiet Lightning, the run directory, checks before training, what a
search aims at, and the run record (``run.json``) written beside every result."""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path
from typing import Any

from dnas import __version__

LIGHTNING_NOISE = (
    r".*isinstance\(treespec, LeafSpec\)",  # Lightning's own use of a deprecated torch API
    r"Experiment logs directory .* exists and is not empty",  # the run dir holds .hydra/
    r"The number of training batches .* is smaller than the logging interval",
    r".*does not have many workers which may be a bottleneck.*",
    r".*a `val_dataloader` but have no `validation_step`.*",
)


def silence_lightning() -> None:
    """Filter Lightning warnings that say nothing about the user's run."""
    for message in LIGHTNING_NOISE:
        warnings.filterwarnings("ignore", message=message)


def output_dir(given: str | Path | None) -> Path:
    """``given``, or Hydra's run directory; created."""
    if given is None:
        from hydra.core.hydra_config import HydraConfig

        given = HydraConfig.get().runtime.output_dir
    out = Path(given)
    out.mkdir(parents=True, exist_ok=True)
    return out


def check_data(space, data) -> None:
    """The data module loads and fits the space (before any training)."""
    from dnas.data import check_data_fits_space

    if hasattr(data, "check"):
        data.check()
    check_data_fits_space(space, data)


def describe_table(table, path: Path | None, built: bool) -> str:
    """``cost table: PATH (cached, 22,053 entries)``."""
    return f"cost table: {path} ({'built' if built else 'cached'}, {table.num_entries:,} entries)"


def describe_budget(module) -> str:
    """``budget: latency_ms <= 0.4662 ms  (space spans ...)``: what a ``SearchModule`` aims at."""
    extremes = module.table.extremes(module.space)
    return (
        f"budget: {'; '.join(t.describe() for t in module.front)}  (space spans "
        f"{extremes['min_latency_ms']:.4g}-{extremes['max_latency_ms']:.4g} ms, "
        f"{extremes['min_energy_mj']:.4g}-{extremes['max_energy_mj']:.4g} mJ)"
    )


def git_revision() -> str | None:
    """The git revision of the source tree dnas runs from, when it is a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_run_record(out: Path, method: str, **fields: Any) -> Path:
    """``run.json``: what produced this directory (``method``), with which dnas, and from what."""
    from dnas.atomic import atomic_path

    record = {"method": method, "dnas_version": __version__, "git_revision": git_revision()}
    record.update(fields)
    path = out / "run.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    return path


def read_run_record(run_dir: Path) -> dict[str, Any]:
    """The ``run.json`` of a run directory, or ``{}``."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolved_config(cfg) -> dict[str, Any]:
    """The composed config as plain data, interpolations resolved, without Hydra's own node."""
    from omegaconf import OmegaConf

    return {
        str(k): OmegaConf.to_container(cfg[k], resolve=True)
        if OmegaConf.is_config(cfg[k])
        else cfg[k]
        for k in cfg
        if k != "hydra"
    }
