"""Several budgets searched together: one architecture distribution per target on shared weights."""

from __future__ import annotations

import csv
from functools import partial

import pytest
import torch

from dnas.cost.targets import BudgetError, TargetSpec
from dnas.errors import DnasError
from dnas.search.losses import BudgetLoss
from dnas.search.module import SearchModule
from dnas.space import Architecture
from tests.conftest import _run_in
from tests.runs import SEARCH_BASE, TRAIN

FRONT = "front=[{latency_frac:0.1},{latency_frac:0.4},{energy_frac:0.3}]"


def _module(space, table, fracs=(0.1, 0.5), **kw):
    return SearchModule(
        space=space,
        table=table,
        front=[TargetSpec(latency_frac=f) for f in fracs],
        budget=partial(BudgetLoss, kind="hinge"),
        weight_optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
        arch_optimizer=lambda p: torch.optim.Adam(p, lr=0.5),
        warmup_epochs=0,
        **kw,
    )


def _arch(module):
    return [p.detach().clone() for p in module.supernet.arch_parameters()]


def test_switching_distributions_keeps_each_one(space, table):
    m = _module(space, table)
    with torch.no_grad():
        for p in m.supernet.arch_parameters():
            p.add_(torch.randn_like(p))
    first = _arch(m)
    m.use_distribution(1)
    second = _arch(m)
    assert any(not torch.equal(a, b) for a, b in zip(first, second))  # the initial one
    with torch.no_grad():
        for p in m.supernet.arch_parameters():
            p.mul_(0.5)
    changed = _arch(m)
    m.use_distribution(0)
    assert all(torch.equal(a, b) for a, b in zip(first, _arch(m)))
    m.use_distribution(1)
    assert all(torch.equal(a, b) for a, b in zip(changed, _arch(m)))
    # a state dict carries which one is loaded, so a reload puts every distribution back
    state = m.state_dict()
    fresh = _module(space, table)
    fresh.load_state_dict(state)
    fresh.use_distribution(0)
    assert all(torch.equal(a, b) for a, b in zip(first, _arch(fresh)))


def _step(m, space, batch_idx):
    """One training step outside a fit; returns every distribution's state before and after."""
    pl = pytest.importorskip("pytorch_lightning")
    opts = [torch.optim.SGD(m.supernet.weight_parameters(), lr=0.1)]
    opts += [torch.optim.Adam(m.supernet.arch_parameters(), lr=0.5) for _ in m.front]
    # a trainer for the backward hooks, no loop
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.strategy.connect(m)
    m.trainer = trainer
    m.optimizers = lambda: opts
    m.log = lambda *a, **k: None
    x = torch.randn(8, space.in_channels, space.resolution, space.resolution)
    y = torch.randint(0, space.num_classes, (8,))
    before = [m.distribution_state(k) for k in range(m.num_targets)]
    m.training_step({"weights": (x, y), "arch": (x, y)}, batch_idx=batch_idx)
    return before, [m.distribution_state(k) for k in range(m.num_targets)]


def _moved(before, after, which):
    keys = [k for k in before if which(k)]
    assert keys
    return any(not torch.equal(before[k], after[k]) for k in keys)


def _is_arch(key):
    return "arch" in key


def _is_weight(key):
    return "weight" in key and "arch" not in key


def test_an_architecture_step_moves_only_its_own_distribution(space, table):
    """With a step every batch, step i takes distribution i mod K: its arch step changes it and
    no other."""
    m = _module(space, table, arch_every=1)
    before, after = _step(m, space, batch_idx=1)  # target 1
    assert not _moved(before[0], after[0], _is_arch)
    assert _moved(before[1], after[1], _is_arch)
    # the weights are shared: both views show the weight step
    assert _moved(before[0], after[0], _is_weight)
    assert all(torch.equal(after[0][k], after[1][k]) for k in after[0] if _is_weight(k))


@pytest.mark.parametrize(("batch_idx", "target", "arch_step"), [(2, 1, False), (3, 1, True)])
def test_arch_every_runs_each_distribution_for_that_many_batches(
    space, table, batch_idx, target, arch_step
):
    """arch_every=2: batches 2 and 3 belong to target 1 (2 // 2 mod 2), whose architecture step
    comes at the last of them; every batch still steps the weights."""
    m = _module(space, table, arch_every=2)
    before, after = _step(m, space, batch_idx)
    assert _moved(before[target], after[target], _is_arch) == arch_step
    assert not _moved(before[1 - target], after[1 - target], _is_arch)
    assert _moved(before[target], after[target], _is_weight)
    assert int(m.loaded_distribution) == target


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_arch_every_must_be_a_positive_integer(space, table, bad):
    with pytest.raises(DnasError, match="arch_every must be an integer >= 1"):
        _module(space, table, arch_every=bad)


@pytest.mark.slow  # an end-to-end front search and a finetune
def test_front_run_writes_each_target_within_its_budget(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("front")
    _run_in(
        out,
        cache_dir,
        "dnas.cli.search",
        "search",
        *SEARCH_BASE,
        FRONT,
        f"hydra.runtime.output_dir={out}",
    )
    with open(out / "front.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    states = []
    for row in rows:
        sub = out / row["dir"]
        arch = Architecture.load(sub / "arch.yaml")
        key = "latency_ms" if "target_latency_ms" in arch.metrics else "energy_mj"
        assert arch.metrics[key] <= arch.metrics[f"target_{key}"] * (1 + 1e-12)
        assert float(row[key]) == pytest.approx(arch.metrics[key])
        assert float(row["test_acc"]) == pytest.approx(arch.metrics["test_acc"])
        for name in ("supernet.pt", "space.yaml", "run.json", "search.png", "history.json"):
            assert (sub / name).is_file(), name
        states.append(torch.load(sub / "supernet.pt", weights_only=True))
    arch_keys = [k for k in states[0] if "arch" in k]
    assert any(not torch.equal(states[0][k], states[1][k]) for k in arch_keys)
    assert all(torch.equal(states[0][k], states[2][k]) for k in states[0] if k not in arch_keys)
    # a front member finetunes like any search run
    sub = out / rows[1]["dir"]
    trained = tmp_path_factory.mktemp("front_train")
    _run_in(trained, cache_dir, "dnas.cli.train", "train", *TRAIN, f"arch={sub}")
    assert (trained / "model.pt").is_file()


@pytest.mark.parametrize("front", ["front=[]", "front=3", "front=[{}]", "front=[{latency_frac:2}]"])
def test_bad_front_is_refused_before_training(tmp_path, cache_dir, front):
    with pytest.raises(BudgetError, match=r"front|latency_frac"):
        _run_in(tmp_path, cache_dir, "dnas.cli.search", "search", *SEARCH_BASE, front)
    assert not (tmp_path / "front").exists()


def test_one_budget_term_per_target(space, table):
    m = _module(space, table, fracs=(0.1, 0.3, 0.5))
    assert [b.targets for b in m.budgets] == m.front
    assert m.front[0].latency_ms < m.front[1].latency_ms < m.front[2].latency_ms


@pytest.mark.parametrize(
    "front, match", [([], "non-empty"), ([TargetSpec()], r"front\[0\] sets no budget")]
)
def test_bad_front_is_refused_by_the_module(space, table, front, match):
    with pytest.raises(BudgetError, match=match):
        SearchModule(
            space=space,
            table=table,
            front=front,
            budget=partial(BudgetLoss, kind="hinge"),
            weight_optimizer=torch.optim.SGD,
            arch_optimizer=torch.optim.Adam,
        )
