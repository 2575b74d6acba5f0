"""dnas-evolve resumes every phase exactly (issue 9).

Fast tests: a search continued from its JSON state equals the search never stopped; genomes and
settings as plain data; resuming with other settings is refused before any work. The slow test
runs ``dnas-evolve`` as a subprocess, stops it with SIGTERM while it measures the predictor's
architectures, resumes it and stops it with SIGTERM in the evolution, then SIGKILL, and checks the
last resumed run ends where an uninterrupted run ends, having measured no architecture twice.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dnas.cost.exact import ExactCost
from dnas.cost.targets import resolve_targets
from dnas.errors import DnasError
from dnas.evolve import GenomeSpace, evolve, random_search
from dnas.evolve.checkpoint import (
    Checkpointer,
    check_resumable,
    differences,
    run_settings,
    state_from_json,
    state_to_json,
)
from tests.runs import EVOLVE, compose_config


@pytest.fixture(scope="module")
def genomes(space):
    return GenomeSpace(space)


def _fitness(genomes):
    """A deterministic, varied fitness: a fixed linear score of the one-hot encoding."""
    import torch

    w = torch.randn(genomes.num_features, generator=torch.Generator().manual_seed(5))
    return lambda states: (genomes.encode(states) @ w).tolist()


def _no_wall(rows):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def test_genome_indices_round_trip(genomes, space):
    rng = random.Random(0)
    for _ in range(20):
        s = genomes.random(rng)
        assert genomes.from_indices(json.loads(json.dumps(genomes.indices(s)))) == s
    bad = genomes.indices(s)
    with pytest.raises(DnasError, match="not a genome"):
        genomes.from_indices(bad[:-1])
    bad[0] = genomes.index_sizes[0]  # one past the last kernel choice
    with pytest.raises(DnasError, match="not a genome"):
        genomes.from_indices(bad)


@pytest.mark.parametrize("algorithm", ["evolution", "random"])
def test_search_resumed_from_its_json_state_equals_the_uninterrupted(
    genomes, space, table, algorithm
):
    costs = ExactCost(space, table)
    targets = resolve_targets({"latency_frac": 0.4}, table.extremes(space))
    fitness = _fitness(genomes)

    def search(rng, **kw):
        if algorithm == "evolution":
            sizes = {"population": 16, "parents": 4, "mutations": 6, "crossovers": 6}
            return evolve(genomes, costs.total, targets, fitness, rng, 6, **sizes, **kw)
        return random_search(genomes, costs.total, targets, fitness, rng, 50, chunk=10, **kw)

    full = search(random.Random(3))
    saved: list[str] = []
    search(random.Random(3), on_state=lambda s: saved.append(json.dumps(state_to_json(genomes, s))))
    assert len(saved) == len(full.history)
    state = state_from_json(genomes, json.loads(saved[2]))  # stopped after generation 2
    assert state.generation == 2
    resumed = search(random.Random(99), resume=state)  # the state brings its own random stream
    assert _no_wall(resumed.history) == _no_wall(full.history)
    assert [c.state for c in resumed.ranked] == [c.state for c in full.ranked]
    assert [c.fitness for c in resumed.ranked] == [c.fitness for c in full.ranked]
    assert [c.cost for c in resumed.ranked] == [c.cost for c in full.ranked]


def test_settings_name_what_a_resumed_run_may_not_change():
    base = run_settings(json.loads(json.dumps(_config())))  # as read back from evolve.json
    assert base == run_settings(_config("evolution.time_limit_s=60", "trainer.accelerator=cpu"))
    assert differences(base, run_settings(_config("target.latency_frac=0.5"))) == [
        "target.latency_frac (0.3 there, 0.5 here)"
    ]
    changed = differences(base, run_settings(_config("seed=1", "evolution.population=30")))
    assert changed == ["evolution.population (20 there, 30 here)", "seed (0 there, 1 here)"]


def _config(*overrides: str):
    from dnas.cli.common import resolved_config

    return resolved_config(compose_config("evolve", *EVOLVE, *overrides))


@pytest.mark.parametrize(
    "overrides, named",
    [(["target.latency_frac=0.5"], "target.latency_frac"), (["seed=7"], "seed (0 there, 7 here)")],
)
def test_resume_with_other_settings_is_refused_before_any_work(
    tmp_path, genomes, monkeypatch, overrides, named
):
    from dnas.cli.evolve import run

    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    before = tmp_path / "before"
    Checkpointer(before, genomes, run_settings(_config()), "hash").save_search(None, 0, {})
    cfg = compose_config("evolve", *EVOLVE, *overrides, f"resume={before}")
    refused = re.escape(f"resume={before}: that run had other settings: ") + ".*" + re.escape(named)
    with pytest.raises(DnasError, match=refused):
        run(cfg, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()  # no table built
    check_resumable(before, run_settings(_config()))  # the same settings are accepted


def test_resume_needs_a_checkpoint_and_excludes_ckpt_path(tmp_path):
    from dnas.cli.evolve import run

    with pytest.raises(DnasError, match="no dnas-evolve checkpoint there"):
        run(compose_config("evolve", *EVOLVE, f"resume={tmp_path}"), output_dir=tmp_path / "o")
    both = compose_config("evolve", *EVOLVE, f"resume={tmp_path}", "ckpt_path=x.ckpt")
    with pytest.raises(DnasError, match="give one"):
        run(both, output_dir=tmp_path / "o")


def test_a_signal_sets_the_flag_and_the_old_handler_comes_back():
    from dnas.cli.signals import StopRequested, stop_on_signals

    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as stop:
        stop.check()  # nothing yet
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        with pytest.raises(StopRequested) as e:
            stop.check()
    assert e.value.exit_code == 143 and e.value.name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


# ---------------------------------------------------------------------- real runs, real signals
# 100 generations: the evolution lasts seconds, long enough for a signal to land inside it.
SAMPLES = 400  # enough measurements (a few seconds on an idle machine) for a signal to land in
RUNS = [
    *EVOLVE,
    "evolution.generations=100",
    "data.noise=1.0",
    "trainer.max_epochs=2",
    "seed=2",
    f"predictor.samples={SAMPLES}",
    "evaluation.bn_batches=4",
]


def _evolve(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "dnas.cli.evolve", *RUNS, f"hydra.run.dir={out}", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _finish(proc: subprocess.Popen) -> str:
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    return err


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _generation(out: Path) -> int:
    search = (_read(out / "checkpoints" / "evolve.json") or {}).get("search")
    return -1 if search is None else search["generation"]


def _stop_when(proc: subprocess.Popen, ready, sig: int, wait_s: float = 0.0) -> tuple[int, str]:
    """Send ``sig`` (``wait_s`` after ``ready()`` holds); returns the exit code and stderr."""
    deadline = time.monotonic() + 900
    while not ready():
        assert proc.poll() is None, f"the run ended before the signal:\n{proc.stderr.read()}"
        assert time.monotonic() < deadline, "not ready within 15 min"
        time.sleep(0.05)
    time.sleep(wait_s)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def _measured(out: Path) -> int:
    return len((_read(out / "checkpoints" / "measured.json") or {"measured": []})["measured"])


def _result(out: Path) -> tuple[dict, list[dict], dict]:
    import yaml

    arch = yaml.safe_load((out / "arch.yaml").read_text())
    with open(out / "evolution.csv", newline="") as f:
        rows = _no_wall(list(csv.DictReader(f)))
    record = json.loads((out / "run.json").read_text())
    keep = ("evaluated", "predicted", "predictor_samples", "generations", "predictor_train_rmse")
    return arch, rows, {k: record[k] for k in keep}


@pytest.mark.slow
def test_stopped_in_every_phase_then_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    full = tmp_path / "full"
    _finish(_evolve(full))

    # SIGTERM while the predictor's architectures are measured: 143, the measurements kept
    a = tmp_path / "a"
    # (the first measurement is saved at once: signal then, most are still to measure)
    code, err = _stop_when(_evolve(a), lambda: _measured(a) >= 1, signal.SIGTERM)
    assert code == 143, err
    assert "predictor data" in err and "SIGTERM" in err and f"resume={a}" in err
    assert 0 < _measured(a) < SAMPLES and _generation(a) == -1
    assert not (a / "arch.yaml").exists() and not (a / "run.json").exists()

    # resumed: measures only the rest; SIGTERM in the evolution saves its generation
    b = tmp_path / "b"
    code, err = _stop_when(_evolve(b, f"resume={a}"), lambda: _generation(b) >= 1, signal.SIGTERM)
    assert code == 143, err
    assert "evolution search" in err and f"resume={b}" in err
    stopped_at = _generation(b)
    assert 1 <= stopped_at < 100 and _measured(b) == SAMPLES
    assert f"after generation {stopped_at}" in err

    # resumed again, killed outright a few generations on: the last saved generation survives
    c = tmp_path / "c"
    code, _ = _stop_when(
        _evolve(c, f"resume={b}"), lambda: _generation(c) >= stopped_at + 2, signal.SIGKILL
    )
    assert code == -signal.SIGKILL and _generation(c) >= stopped_at + 2
    assert not (c / "arch.yaml").exists()

    d = tmp_path / "d"
    _finish(_evolve(d, f"resume={c}"))
    arch, rows, record = _result(d)
    want_arch, want_rows, want_record = _result(full)
    assert arch == want_arch  # the same architecture, cost, fitness and test accuracy
    assert rows == want_rows and len(rows) == 101  # every generation, wall-clock aside
    assert record == want_record  # no architecture measured twice, no prediction lost
    assert want_record["evaluated"] <= SAMPLES + 2
    assert json.loads((d / "run.json").read_text())["resumed_from"] == str(c)
