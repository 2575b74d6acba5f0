"""The uniform-baseline benchmark's bookkeeping (``bench/bench_uniform.py``): which units it runs,
in which order and filtered how, and that one network is trained once per seed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dnas.space import load_space

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_uniform.py"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("bench_uniform", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train(arch: dict, seed: int, method: str = "uniform", **more) -> dict:
    return {
        "unit": ["train", method, 0, "latency_frac0.3", seed],
        "kind": "train",
        "method": method,
        "train_seed": seed,
        "recipe": ["init=scratch", "trainer.max_epochs=4"],
        "arch": arch,
        "target_key": "latency_frac",
        "target_frac": 0.3,
        **more,
    }


def test_a_network_is_trained_once_per_seed(bench):
    a = load_space().random_arch(0).to_dict()
    b = load_space().random_arch(1).to_dict()
    twin = {**a, "metrics": {"latency_ms": 1.0}, "table_hash": "other"}
    records = [_train(a, 0), _train(b, 1)]
    assert bench._same_training(records, twin, 0) is records[0]  # metrics and hash do not count
    assert bench._same_training(records, twin, 1) is None  # another seed
    assert bench._same_training(records, b, 0) is None  # another network
    copied = _train(a, 2, same_as=["train", "x", 0, "latency_frac0.3", 2])
    assert bench._same_training([copied], a, 2) is None  # only first-hand runs are copied


def test_plan_filters_by_method_target_and_kind(bench):
    units = bench.plan([], only={"dnas", "dnas_marginal"}, targets={"latency_frac0.3"})
    assert units and all(bench._target_of(u) == "latency_frac0.3" for u in units)
    assert {bench._method_of(u) for u in units} == {"dnas", "dnas_marginal"}
    searches = bench.plan([], only={"dnas"}, kinds={"search"})
    assert {u[0] for u in searches} == {"search"} and len(searches) == 2 * len(bench.TARGETS)
    # a rederived search waits for its base search's record
    unit = ("search", "dnas_marginal", 0, "latency_frac0.3")
    assert not bench.ready(unit, [])
    base = {
        "kind": "search",
        "method": "dnas",
        "search_seed": 0,
        "target_key": "latency_frac",
        "target_frac": 0.3,
    }
    assert bench.ready(unit, [base])


def test_two_bit_candidates_only_where_they_were_measured(bench):
    for t in bench.TARGETS:
        bits = {c.bits for c, _ in bench.uniform_candidates_of(t)}
        assert (2 in bits) == (bench._key(t) in bench.TWO_BIT_TARGETS), t
        assert 8 in bits
