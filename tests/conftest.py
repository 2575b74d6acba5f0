"""Shared fixtures: the simulator's worked examples as LayerShapes with their expected counters."""

from __future__ import annotations

import os

import torch

# Triton's CPU interpreter must be on before anything imports triton (pytorch_lightning does), so
# that the Triton kernel tests can run on a machine without a GPU.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest

from dnas.cost.layer import LayerShape

DATA = Path(__file__).parent / "fixtures"


def load_examples() -> list[tuple[LayerShape, dict[str, str]]]:
    rows = []
    with open(DATA / "bitfusion_examples.csv", newline="") as f:
        for r in csv.DictReader(f):
            layer = LayerShape(
                in_channels=int(r["in_channels"]),
                out_channels=int(r["out_channels"]),
                kernel_size=int(r["kernel_size"]),
                stride=int(r["stride"]),
                output_h=int(r["output_h"]),
                batch=int(r["batch"]),
                w_bits=int(r["w_bits"]),
                a_bits=int(r["a_bits"]),
                im2col=r["im2col"] == "1",
            )
            rows.append((layer, r))
    return rows


EXAMPLES = load_examples()


@pytest.fixture(
    params=range(len(EXAMPLES)), ids=[f"{r['layer_name']}-{i}" for i, (_, r) in enumerate(EXAMPLES)]
)
def example(request):
    return EXAMPLES[request.param]


@dataclass
class Relaxed:
    """A stand-in for ``dnas.supernet.RelaxedArch`` built by hand in tests."""

    kernel_probs: dict
    width_index: dict
    bit_index: dict


@pytest.fixture(scope="session")
def space():
    """The default search space."""
    from dnas.space import load_space

    return load_space("fmnist_mbv2")


@pytest.fixture(scope="session")
def table(space):
    """Its BitFusion cost table (built once per test session)."""
    from dnas.cost.table import build_table

    return build_table(space, backend="torch")


# ----------------------------------------------- tiny search and training runs (synthetic data)
@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _run_in(out: Path, cache_dir: Path, module: str, config: str, *overrides: str) -> Path:
    """Run ``module.run`` on a composed ``config`` into ``out`` with the shared table cache."""
    import importlib

    from tests.runs import compose_config

    run = importlib.import_module(module).run
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DNAS_CACHE", str(cache_dir))
        run(compose_config(config, *overrides), output_dir=out)
    return out


@pytest.fixture(scope="session")
def search_run(tmp_path_factory, cache_dir) -> Path:
    """The run directory of a 2-epoch search on synthetic data."""
    from tests.runs import SEARCH

    out = tmp_path_factory.mktemp("search")
    return _run_in(
        out, cache_dir, "dnas.cli.search", "search", *SEARCH, f"hydra.runtime.output_dir={out}"
    )


@pytest.fixture(scope="session")
def train_run(tmp_path_factory, cache_dir, search_run) -> Path:
    """The run directory of a 1-epoch finetune of that search's child (inherited weights)."""
    from tests.runs import TRAIN

    out = tmp_path_factory.mktemp("train")
    return _run_in(out, cache_dir, "dnas.cli.train", "train", *TRAIN, f"arch={search_run}")
