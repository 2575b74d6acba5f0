"""Rebuilding a converted network's supernet and trained child from a run directory's files.

A graph search (``dnas-search network=...``) or a training of its result (``dnas-train``) records
in ``run.json`` the network's config (``network``, ``graph``), its input shape and classes; with
the choice of its ``arch.yaml`` and the weights of ``model.pt`` that is the whole trained network.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from dnas.errors import DnasError

GRAPH_METHOD = "dnas_graph"


def graph_record(record: dict[str, Any]) -> tuple[dict, dict] | None:
    """``(network config, graph config)`` of a ``run.json`` that holds a converted network (a
    graph search, or a training of one); None for a space's run."""
    if record.get("method") == GRAPH_METHOD:
        config = record.get("config") or {}
        return config.get("network") or {}, config.get("graph") or {}
    if record.get("source_method") == GRAPH_METHOD and "network_config" in record:
        return record["network_config"], record.get("graph_config") or {}
    return None


def rebuild_supernet(record: dict[str, Any]):
    """The ``GraphSuperNet`` a graph run searched (fresh weights), from its ``run.json``.

    Raises:
        DnasError: the record names no network, or no input shape.
    """
    from dnas.cli.search import graph_options, instantiate_network
    from dnas.graph.search import graph_supernet

    found = graph_record(record)
    if not found or not found[0]:
        raise DnasError("run.json names no network to rebuild (not a dnas-search network= run)")
    network_config, graph_config = found
    shape = record.get("input_shape")
    if not shape or record.get("num_classes") is None:
        raise DnasError("run.json has no input_shape/num_classes (written by an older dnas)")
    data = SimpleNamespace(input_shape=tuple(shape), num_classes=int(record["num_classes"]))
    shape, network = instantiate_network(network_config, data)
    return graph_supernet(network, shape, **graph_options(graph_config))


def load_graph_child(run_dir: str | Path):
    """``(child, graph, choice, metrics)`` of a ``dnas-train`` run of a converted network: the
    child of its ``arch.yaml`` choice with the weights of its ``model.pt``, in eval mode.

    Raises:
        DnasError: a file is missing, or the files do not fit together.
    """
    from dnas.cli.common import read_run_record
    from dnas.graph.io import load_choice

    run = Path(run_dir).expanduser()
    missing = [n for n in ("run.json", "arch.yaml", "model.pt") if not (run / n).is_file()]
    if missing:
        raise DnasError(f"{run} is not a dnas-train run of a network: missing {missing}")
    supernet = rebuild_supernet(read_run_record(run))
    choice, metrics = load_choice(run / "arch.yaml", supernet.graph)
    child = supernet.child(choice)
    state = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    try:
        child.load_state_dict(state)
    except RuntimeError as e:
        raise DnasError(
            f"{run}/model.pt does not fit the child of its arch.yaml: {' '.join(str(e).split())[:200]}"
        ) from None
    return child.eval(), supernet.graph, choice, metrics
