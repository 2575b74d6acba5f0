"""Derive a finished search's architecture again, under another derivation rule, without searching.

A search's distribution is in its ``supernet.pt`` (the architecture parameters beside the weights);
the derivation reads only that distribution, the cost table and the budget, and takes a fraction
of a second. So a rule such as ``derive_depth="marginal"`` can be compared with the one a search
ran with on the very same distribution.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dnas.cost.hardware import BitFusionConfig
from dnas.cost.levels import restrict_table, search_levels
from dnas.cost.table import load_or_build
from dnas.cost.targets import Targets
from dnas.derive.budget import derive_within_budget
from dnas.errors import DnasError, load_yaml
from dnas.space import Architecture, SearchSpace


def rederive(
    run_dir: str | Path,
    *,
    strategy: str | None = None,
    depth: str | None = None,
    table_path: str | Path | None = None,
) -> tuple[Architecture, dict[str, float]]:
    """The architecture a one-target ``dnas-search`` run directory derives under other rules.

    Args:
        run_dir: the run (or a front member's directory): ``arch.yaml``, ``supernet.pt``,
            ``space.yaml`` and ``run.json``.
        strategy, depth: ``search.derive`` and ``search.derive_depth``; None: the run's own.
        table_path: the cost table; None: the cache (built if missing), as the search did.

    Returns:
        The architecture (a network of the run's space, with its exact cost and the target in
        its metrics) and its exact cost.

    Raises:
        DnasError: a file is missing or the run is not a ``dnas-search`` run.
    """
    run = Path(run_dir).expanduser()
    files = {n: run / n for n in ("arch.yaml", "supernet.pt", "space.yaml", "run.json")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise DnasError(f"{run} is not a dnas-search run directory: missing {', '.join(missing)}")
    record = json.loads(files["run.json"].read_text())
    if record.get("method") != "dnas":
        raise DnasError(f"{run} was written by {record.get('method')!r}, not by dnas-search")
    config = record["config"]
    search = config.get("search", {})
    space = SearchSpace.from_dict(load_yaml(files["space.yaml"].read_text()))
    hw = BitFusionConfig.from_dict(config["hardware"])
    table, _, _ = load_or_build(space, hw, table_path, "auto")
    old = Architecture.load(files["arch.yaml"])
    active = {
        m: float(old.metrics[f"target_{m}"])
        for m in ("latency_ms", "energy_mj")
        if f"target_{m}" in old.metrics
    }
    if not active:
        raise DnasError(f"{files['arch.yaml']} names no target (target_latency_ms, ...)")
    sub = search_levels(search.get("bit_levels", "all"), space, hw.pmax_bits, hw.pmin_bits, active)
    sub_table = (
        table if sub.fingerprint() == space.fingerprint() else restrict_table(table, space, sub)
    )

    from dnas.supernet import SuperNet

    supernet = SuperNet(sub, kernel_weights=search.get("kernel_weights", "shared"))
    state = torch.load(files["supernet.pt"], map_location="cpu", weights_only=True)
    supernet.load_state_dict(state)
    arch, cost, _ = derive_within_budget(
        sub,
        sub_table,
        supernet.relaxed(),
        Targets(**active),
        strategy=strategy or search.get("derive", "budget"),
        depth=depth or search.get("derive_depth", "joint"),
    )
    arch = Architecture.from_dict(
        {**arch.to_dict(), "space_fingerprint": space.fingerprint()}
    ).priced_by(table.header.content_hash)
    return arch, cost
