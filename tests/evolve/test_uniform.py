"""The uniform baseline: one bit-width, one kernel, full (or one-shorter) depth, the widest that fits."""

from __future__ import annotations

import csv
import json

import pytest

from dnas.cost.exact import ExactCost
from dnas.cost.targets import resolve_targets
from dnas.errors import DnasError
from dnas.evolve.uniform import (
    UniformCandidate,
    UniformError,
    compute_levels,
    default_levels,
    prune_dominated,
    uniform_candidates,
    uniform_state,
    widest_uniform,
    width_index,
    width_positions,
)
from dnas.space import SKIP, Architecture
from tests.runs import TINY_DATA, compose_config


@pytest.fixture(scope="module")
def costs(space, table):
    return ExactCost(space, table)


def _targets(table, space, **spec):
    return resolve_targets(spec, table.extremes(space))


def test_compute_levels_are_bitfusions_fusion_classes():
    # a Fusion Unit takes 8 // max(b, 2) operands at once: {2}, {3, 4}, {5..8}
    assert compute_levels(range(2, 9), 8, 2) == [2, 4, 8]
    assert compute_levels([4, 6, 8], 8, 2) == [4, 8]
    assert compute_levels([3, 5], 8, 2) == [3, 5]


def test_default_levels_add_even_bits_for_energy(space):
    assert default_levels(space, 8, 2, ["latency_ms"]) == [2, 4, 8]
    assert default_levels(space, 8, 2, ["energy_mj"]) == [2, 4, 6, 8]


def test_uniform_state_sets_every_searchable_conv(space):
    arch = uniform_state(space, 4, 5, "full", 1.0).to_arch(space)
    for spec, block in zip(space.blocks, arch.blocks):
        assert block.kernel == 5 and block.width == spec.widths[-1]
        for role in ("expand", "dw", "project"):
            bits = block.conv_bits(role)
            if bits is not None:
                assert (bits.w_bits, bits.a_bits) == (4, 4)
    for role in ("stem", "last", "classifier"):  # the space's fixed bits
        assert getattr(arch, role).w_bits == 8 and getattr(arch, role).a_bits == 8


def test_short_skips_the_last_block_of_each_stage(space):
    arch = uniform_state(space, 8, 3, "short", 0.0).to_arch(space)
    skipped = [i for i, b in enumerate(arch.blocks) if b.kernel == SKIP]
    last_of_stage = {}
    for b in space.blocks:
        last_of_stage[b.stage] = b.index
    assert skipped == sorted(i for i in last_of_stage.values() if space.blocks[i].can_skip)
    assert skipped == [1, 3, 5]  # fmnist_mbv2: three stages of two blocks
    assert all(b.width == s.widths[0] for b, s in zip(arch.blocks, space.blocks))


def test_width_index_and_positions():
    assert [width_index(r, 7) for r in (0.0, 0.16, 1 / 6, 0.5, 0.99, 1.0)] == [0, 0, 1, 3, 5, 6]
    with pytest.raises(UniformError, match=r"\[0, 1\]"):
        width_index(1.5, 7)


def test_positions_hit_every_width_of_every_block(space):
    positions = width_positions(space)
    assert positions[0] == 0.0 and positions[-1] == 1.0
    for b in space.blocks:
        assert {width_index(r, len(b.widths)) for r in positions} == set(range(len(b.widths)))


def test_bad_choices_are_named(space):
    with pytest.raises(UniformError, match="kernel 4 is not a choice"):
        uniform_state(space, 8, 4, "full", 1.0)
    with pytest.raises(UniformError, match="9 bits is not a choice"):
        uniform_state(space, 9, 3, "full", 1.0)
    with pytest.raises(UniformError, match="depth must be one of"):
        uniform_state(space, 8, 3, "deep", 1.0)


@pytest.mark.parametrize("frac", [0.05, 0.1, 0.15, 0.3])
def test_widest_fits_and_the_next_wider_does_not(space, table, costs, frac):
    targets = _targets(table, space, latency_frac=frac)
    positions = width_positions(space)
    for bits in (2, 4, 8):
        c = widest_uniform(space, costs, targets, bits, 3, "full")
        if c is None:  # even the narrowest is over budget
            narrowest = costs.total(uniform_state(space, bits, 3, "full", 0.0))
            assert narrowest["latency_ms"] > targets.latency_ms
            continue
        # the exact table cost, within budget
        lat, en = table.arch_cost(space, c.arch(space))
        assert c.cost == {"latency_ms": lat, "energy_mj": en}
        assert lat <= targets.latency_ms
        wider = [r for r in positions if r > c.position]
        if wider:  # the next position up is over budget
            cost = costs.total(uniform_state(space, bits, 3, "full", wider[0]))
            assert cost["latency_ms"] > targets.latency_ms


def test_all_8_bit_widest_fits_at_the_default_target_only(space, table, costs):
    # the figures: 0.3809 ms, 82 % of the 0.4662 ms default budget
    c = widest_uniform(space, costs, _targets(table, space, latency_frac=0.3), 8, 3, "full")
    assert c.position == 1.0 and round(c.cost["latency_ms"], 4) == 0.3809
    assert widest_uniform(space, costs, _targets(table, space, latency_frac=0.15), 8, 3, "full")
    assert (
        widest_uniform(
            space, costs, _targets(table, space, latency_frac=0.15), 8, 3, "full"
        ).position
        < 1.0
    )


def test_candidates_report_what_cannot_fit(space, table, costs):
    targets = _targets(table, space, latency_frac=0.05)
    found, unfit = uniform_candidates(space, costs, targets, [2, 4, 8], (3, 5), ("full", "short"))
    assert "b8_k3_full" in unfit and "b8_k3_full" not in {c.name for c in found}
    assert {c.name for c in found} | set(unfit) == {
        f"b{b}_k{k}_{d}" for b in (2, 4, 8) for k in (3, 5) for d in ("full", "short")
    }
    assert all(c.cost["latency_ms"] <= targets.latency_ms for c in found)
    with pytest.raises(UniformError, match="not a depth"):
        uniform_candidates(space, costs, targets, [8], (3,), ("tall",))


def _cand(bits, kernel, depth, position):
    return UniformCandidate(bits, kernel, depth, position, None, {})


def test_prune_keeps_only_undominated():
    a = _cand(8, 3, "full", 1.0)
    b = _cand(4, 3, "full", 1.0)  # a has more bits at the same width: dominated
    c = _cand(8, 3, "short", 1.0)  # a is deeper: dominated
    d = _cand(8, 5, "full", 0.2)  # another kernel: kept
    e = _cand(4, 5, "short", 1.0)  # wider than d: kept
    f = _cand(2, 5, "short", 0.9)  # e has more bits and width: dominated
    kept, dropped = prune_dominated([a, b, c, d, e, f])
    assert kept == [a, d, e]
    assert [(x, by) for x, by in dropped] == [(b, a), (c, a), (f, e)]


# ------------------------------------------------------------------- dnas-uniform end to end
UNIFORM = [
    *TINY_DATA,
    "data.val_fraction=0.25",
    "trainer.max_epochs=1",
    "train.bn_batches=2",
    "target.latency_frac=0.3",
    "uniform.bits=[4,8]",
    "uniform.kernels=[3]",
    "uniform.depths=[full,short]",
    "uniform.prune=false",
]


@pytest.fixture(scope="module")
def uniform_run(tmp_path_factory, cache_dir):
    from dnas.cli.uniform import run

    out = tmp_path_factory.mktemp("uniform")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DNAS_CACHE", str(cache_dir))
        acc = run(compose_config("uniform", *UNIFORM), output_dir=out)
    return out, acc


def _rows(out):
    with open(out / "candidates.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_cli_trains_every_candidate_and_keeps_the_best_on_validation(uniform_run):
    out, acc = uniform_run
    rows = _rows(out)
    assert [r["name"] for r in rows] == ["b4_k3_full", "b4_k3_short", "b8_k3_full", "b8_k3_short"]
    for r in rows:  # each trained in its own dnas-train run, the numbers read back from it
        m = Architecture.load(out / "candidates" / r["name"] / "arch.yaml").metrics
        assert float(r["val_acc"]) == m["val_acc"] and float(r["test_acc"]) == m["test_acc"]
        assert float(r["latency_ms"]) == m["latency_ms"] <= m["target_latency_ms"]
    best = max(rows, key=lambda r: float(r["val_acc"]))  # first of equals
    assert [r["name"] for r in rows if r["chosen"]] == [best["name"]]
    arch = Architecture.load(out / "arch.yaml")
    assert arch.metrics["val_acc"] == float(best["val_acc"])
    assert arch.metrics["test_acc"] == acc == float(best["test_acc"])
    assert (out / "model.pt").is_file() and (out / "uniform.png").stat().st_size > 0
    record = json.loads((out / "run.json").read_text())
    assert record["method"] == "uniform" and record["chosen"] == best["name"]
    assert record["finished"] is True


def test_cli_resume_keeps_finished_candidates(uniform_run, cache_dir):
    from dnas.cli.uniform import run

    out, acc = uniform_run
    models = {r["name"]: (out / "candidates" / r["name"] / "model.pt") for r in _rows(out)}
    before = {k: p.stat().st_mtime_ns for k, p in models.items()}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DNAS_CACHE", str(cache_dir))
        again = run(compose_config("uniform", *UNIFORM, f"resume={out}"))
    assert again == acc
    assert {k: p.stat().st_mtime_ns for k, p in models.items()} == before  # nothing retrained


def test_cli_resume_refuses_other_settings(uniform_run, cache_dir):
    from dnas.cli.uniform import run

    out, _ = uniform_run
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DNAS_CACHE", str(cache_dir))
        with pytest.raises(DnasError, match="other settings"):
            run(compose_config("uniform", *UNIFORM, "seed=1", f"resume={out}"))


def test_cli_lists_without_training(tmp_path, cache_dir):
    from dnas.cli.uniform import run

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DNAS_CACHE", str(cache_dir))
        acc = run(
            compose_config("uniform", *UNIFORM, "uniform.train=false", "uniform.prune=true"),
            output_dir=tmp_path,
        )
    assert acc != acc  # NaN: nothing trained
    rows = _rows(tmp_path)
    # b8_k3_full fits at full width: it dominates the 4-bit and the short networks
    assert [r["name"] for r in rows] == ["b8_k3_full"]
    assert not (tmp_path / "arch.yaml").exists()
    assert (tmp_path / "candidates" / "b8_k3_full.yaml").is_file()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.val_fraction=0.0"], "validation split"),
        (["uniform.bits=[8]", "target.latency_frac=0.0"], "no uniform network fits"),
        (["uniform.bits=[3.5]"], "not a bit-width"),
        (["uniform.kernels=[]"], "non-empty list"),
        (["init=auto"], "from scratch"),
    ],
)
def test_cli_refuses_bad_input_before_training(tmp_path, cache_dir, overrides, message):
    from dnas.cli.uniform import run

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DNAS_CACHE", str(cache_dir))
        with pytest.raises(DnasError, match=message):
            run(compose_config("uniform", *UNIFORM, *overrides), output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("terminated", [True, False])
def test_a_signal_while_training_names_the_resume(tmp_path, cache_dir, monkeypatch, terminated):
    """SIGTERM (or Ctrl-C) while a candidate trains: ``Interrupted`` with 143 (130) saying what
    is kept and the ``resume=`` that continues the run."""
    from dnas.cli import train as train_cli
    from dnas.cli.common import Terminated
    from dnas.cli.uniform import run
    from dnas.errors import Interrupted

    def stop(*a, **k):
        raise Terminated() if terminated else KeyboardInterrupt()

    monkeypatch.setenv("DNAS_CACHE", str(cache_dir))
    monkeypatch.setattr(train_cli, "run", stop)
    with pytest.raises(Interrupted) as e:
        run(compose_config("uniform", *UNIFORM), output_dir=tmp_path)
    assert e.value.exit_code == (143 if terminated else 130)
    assert "(1/" in str(e.value) and "0 finished candidate(s) are kept" in str(e.value)
    assert f"dnas-uniform resume={tmp_path}" in str(e.value)
