"""A converted network's choice as YAML (``arch.yaml`` of a graph search), keyed by the module's
qualified layer names and channel-group names.

    network: ResNetCifar
    graph_fingerprint: 3f1c0a9b2e4d5f60
    widths: {stem.0: 16, layers.0.conv1: 12, ...}      # channel group -> channels
    kernels: {layers.0.conv1: 3, ...}                   # layer -> kernel size
    bits: {stem.0: [8, 8], layers.0.conv1: [4, 8], ...} # layer -> [w_bits, a_bits]
    skipped: [layers.1]                                 # removed residual branches
    metrics: {latency_ms: 0.21, bitops: 1.2e9, ..., val_acc: 0.9}

Every group and every layer that runs is listed (a skipped branch's layers may be absent), so the
file says the whole network; ``load_choice`` validates it against the graph of the network it is
loaded for and refuses, naming the entry, a file written for another network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from dnas.errors import DnasError
from dnas.graph.graph import GraphChoice, GraphError, LayerGraph


def graph_fingerprint(graph: LayerGraph) -> str:
    """A short hash of everything the graph says (layers, groups, choices, shapes)."""
    return hashlib.sha256(repr(graph).encode()).hexdigest()[:16]


def choice_to_dict(
    graph: LayerGraph, choice: GraphChoice, metrics: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """The YAML mapping of ``choice`` (validated against ``graph``)."""
    graph.validate_choice(choice)
    removed = graph.skipped_layers(choice)
    running = [layer.name for layer in graph.layers if layer.name not in removed]
    return {
        "network": graph.name,
        "graph_fingerprint": graph_fingerprint(graph),
        "widths": {g.name: int(choice.widths[g.name]) for g in graph.groups},
        "kernels": {n: int(choice.kernels[n]) for n in running},
        "bits": {n: [int(b) for b in choice.bits[n]] for n in running},
        "skipped": sorted(choice.skipped),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
    }


def choice_from_dict(graph: LayerGraph, data: Mapping[str, Any], where: str = "") -> GraphChoice:
    """The choice a mapping of ``choice_to_dict`` describes, validated against ``graph``.

    Raises:
        DnasError: not a mapping of that form, written for another network, or an entry the
            graph does not offer (named).
    """
    where = where or "choice"
    if not isinstance(data, Mapping):
        raise DnasError(f"{where}: must be a mapping of widths, kernels, bits, skipped")
    missing = [k for k in ("widths", "kernels", "bits") if k not in data]
    if missing:
        raise DnasError(f"{where}: missing {missing}; is it a graph search's arch.yaml?")
    written = data.get("graph_fingerprint")
    if written is not None and written != graph_fingerprint(graph):
        raise DnasError(
            f"{where} was written for network {data.get('network')!r} with other layers or "
            f"choices ({written}); this network {graph.name!r} is {graph_fingerprint(graph)}"
        )
    try:
        bits = {str(k): tuple(v) for k, v in dict(data["bits"]).items()}
        choice = GraphChoice(
            widths={str(k): v for k, v in dict(data["widths"]).items()},
            kernels={str(k): v for k, v in dict(data["kernels"]).items()},
            bits=bits,  # type: ignore[arg-type]
            skipped=frozenset(str(s) for s in data.get("skipped") or ()),
        )
        graph.validate_choice(choice)
    except (GraphError, TypeError, ValueError) as e:
        raise DnasError(f"{where}: {e}") from None
    return choice


def save_choice(
    path: str | Path,
    graph: LayerGraph,
    choice: GraphChoice,
    metrics: Mapping[str, float] | None = None,
) -> Path:
    """Write ``choice`` as YAML (atomically)."""
    from dnas.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(choice_to_dict(graph, choice, metrics), sort_keys=False))
    return path


def load_choice(path: str | Path, graph: LayerGraph) -> tuple[GraphChoice, dict[str, float]]:
    """The choice in a YAML file and its metrics.

    Raises:
        DnasError: the file is missing, not YAML, or not a choice of this graph.
    """
    from dnas.errors import read_text

    path = Path(path)
    text = read_text(path, "choice file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DnasError(f"{path}: not YAML: {' '.join(str(e).split())}") from None
    choice = choice_from_dict(graph, data, str(path))
    metrics = data.get("metrics") or {}
    return choice, {str(k): float(v) for k, v in metrics.items()}
