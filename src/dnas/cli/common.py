"""What the Hydra commands share: quiet Lightning, the run directory, checks before training,
and the run record (``run.json``) written beside every result."""

from __future__ import annotations

import json
import subprocess
import warnings
from collections.abc import Callable
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


def fit_classes_to_data(cfg, data, say: Callable[[str], object] = print) -> None:
    """Give the space's classifier the data's number of classes (``cfg.space.num_classes``).

    A 3-class image folder then trains a 3-way classifier, and the classifier's cost is priced at
    3 outputs: ``num_classes`` is part of the space's fingerprint, so the cost table's cache key
    changes with it and a table built for another class count is not reused. When the counts
    differ, ``say`` gets one line saying so. Call before the space is built from ``cfg.space``.

    Args:
        cfg: the composed config (its ``space.num_classes`` is updated in place).
        data: the instantiated data module; one without ``num_classes`` leaves the space alone.
        say: prints the line.
    """
    from omegaconf import open_dict

    classes = getattr(data, "num_classes", None)
    if classes is None or int(classes) == int(cfg.space.num_classes):
        return
    was = int(cfg.space.num_classes)
    with open_dict(cfg):
        cfg.space.num_classes = int(classes)
    say(
        f"classes: {type(data).__name__} has {classes}, so space {cfg.space.name} gets a "
        f"{classes}-way classifier (its config says {was})"
    )


def check_data(space, data) -> None:
    """The data module loads and gives the space's input shape and classes (before training)."""
    if hasattr(data, "check"):
        data.check()
    shape = tuple(getattr(data, "input_shape", ()))
    want = (space.in_channels, space.resolution, space.resolution)
    if shape not in ((), want):
        raise ValueError(
            f"data {type(data).__name__} gives inputs {shape}, space {space.name!r} expects {want}"
        )
    classes = getattr(data, "num_classes", None)
    if classes is not None and int(classes) != space.num_classes:
        raise ValueError(
            f"data {type(data).__name__} has {classes} classes, space {space.name!r} a "
            f"{space.num_classes}-way classifier"
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
