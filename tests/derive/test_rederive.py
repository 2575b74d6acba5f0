"""Deriving a finished search again from its supernet.pt, under its own or another rule."""

from __future__ import annotations

import pytest

from dnas.derive.rederive import rederive
from dnas.errors import DnasError
from dnas.space import Architecture


def _choices(arch: Architecture) -> dict:
    d = arch.to_dict()
    d.pop("metrics")
    return d


@pytest.fixture
def cached(cache_dir, monkeypatch):
    monkeypatch.setenv("DNAS_CACHE", str(cache_dir))


def test_its_own_rule_gives_its_own_network(search_run, cached):
    own = Architecture.load(search_run / "arch.yaml")
    arch, cost = rederive(search_run)
    assert _choices(arch) == _choices(own)
    assert cost["latency_ms"] == pytest.approx(own.metrics["latency_ms"], rel=1e-12)
    assert arch.metrics["target_latency_ms"] == own.metrics["target_latency_ms"]


def test_another_rule_stays_within_budget(search_run, cached):
    own = Architecture.load(search_run / "arch.yaml")
    for strategy, depth in (("argmax", "joint"), ("budget", "marginal"), ("fill", "marginal")):
        arch, cost = rederive(search_run, strategy=strategy, depth=depth)
        assert cost["latency_ms"] <= own.metrics["target_latency_ms"] * (1 + 1e-12)
        assert arch.space_fingerprint == own.space_fingerprint


def test_not_a_search_run(tmp_path, train_run, cached):
    with pytest.raises(DnasError, match="missing"):
        rederive(tmp_path)
    with pytest.raises(DnasError, match="not a dnas-search run directory"):
        rederive(train_run)
