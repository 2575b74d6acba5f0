"""dnas-search under DDP on two CPU processes (gloo): the shipped ``trainer=ddp`` runs, every
process ends with the same parameters, accuracies are synced, and only rank 0 writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from dnas.space import Architecture
from tests.runs import FIT_TINY, SEARCH

ROOT = Path(__file__).resolve().parents[2]


class RankProbe(pl.Callback):
    """What each process ends with, saved to ``out/rank<r>.pt``: its parameters, its test
    accuracy (synced) and the local counts behind it, and every file it opened for writing (or
    created, renamed into place) under ``run_dir`` from its construction on."""

    def __init__(self, out: str, run_dir: str) -> None:
        self.out = Path(out)
        self.run_dir = os.path.realpath(run_dir)
        self.writes: list[str] = []
        self.state: dict = {}
        sys.addaudithook(self._audit)

    def _audit(self, event: str, args: tuple) -> None:
        if event == "open":
            path, _, flags = args
            writing = isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR)
        elif event in ("os.rename", "os.mkdir"):
            path, writing = args[1] if event == "os.rename" else args[0], True
        else:
            return
        if writing and isinstance(path, (str, bytes, os.PathLike)):
            path = os.path.realpath(os.fsdecode(path))
            if path.startswith(self.run_dir):
                self.writes.append(path)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.state["world_size"] = trainer.world_size
        self.state["params"] = {
            n: p.detach().clone() for n, p in pl_module.named_parameters() if "banks" not in n
        }

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._accuracy("val", trainer, pl_module.val_accs[0])

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._accuracy("test", trainer, pl_module.test_accs[0])

    def _accuracy(self, stage: str, trainer: pl.Trainer, metric) -> None:
        """The logged (synced) accuracy and this process's counts (torchmetrics unsyncs its
        state after ``compute()``)."""
        self.state[stage] = {
            "acc": float(trainer.callback_metrics[f"{stage}/acc"]),
            "correct": int(metric.tp.sum()),
            "seen": int((metric.tp + metric.fn).sum()),
        }

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.state["writes"] = sorted(set(self.writes))
        torch.save(self.state, self.out / f"rank{trainer.global_rank}.pt")


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own session; on timeout, end it and the processes it started."""
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"DDP search did not finish in {timeout} s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


# odd, so the two processes' shares differ by one image (the evaluation loaders pad, uncounted)
NUM_TEST = 127


def _command(cli: str, run_dir: Path, probe: Path) -> list[str]:
    """A two-process CPU search with ``cli`` (``search``: dnas-search with the shipped
    ``trainer=ddp``, then a test; ``fit``: ``dnas-fit fit`` with results in the logger's
    directory under ``run_dir``), the probe on every process."""
    if cli == "search":
        search = [a for a in SEARCH if not a.startswith("data.num_test=")]
        return [
            *("-m", "dnas.cli.search", "trainer=ddp", *search, "trainer.devices=2"),
            f"data.num_test={NUM_TEST}",
            f"hydra.run.dir={run_dir}",
            f"+callbacks.probe._target_={__name__}.RankProbe",
            f"+callbacks.probe.out={probe}",
            f"+callbacks.probe.run_dir={run_dir}",
        ]
    callback = {"class_path": f"{__name__}.RankProbe", "init_args": {"out": str(probe)}}
    callback["init_args"]["run_dir"] = str(run_dir)
    return [
        *("-m", "dnas.cli.fit", "fit", *FIT_TINY, f"--data.num_test={NUM_TEST}"),
        *("--trainer.max_epochs=2", "--model.weight_scheduler.init_args.T_max=2"),
        *("--model.warmup_epochs=1", "--model.target.latency_frac=0.2"),
        *("--trainer.strategy=ddp_find_unused_parameters_true", "--trainer.devices=2"),
        f"--trainer.logger.init_args.save_dir={run_dir}",
        f"--trainer.callbacks+={json.dumps(callback)}",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("cli", ["search", "fit"])
def test_ddp_search_on_two_cpu_processes(tmp_path, cache_dir, cli):
    run_dir, probe = tmp_path / "run", tmp_path / "probe"
    probe.mkdir()
    env = {
        **os.environ,
        "DNAS_CACHE": str(cache_dir),
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT), str(ROOT / "src"), str(ROOT / "kernels"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    done = _run([sys.executable, *_command(cli, run_dir, probe)], env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    ranks = [torch.load(probe / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # identical parameters everywhere: architecture (averaged gradients) and weights (DDP)
    params = [r["params"] for r in ranks]
    assert any("arch" in n for n in params[0])
    for name, value in params[0].items():
        assert torch.equal(value, params[1][name]), name
    # accuracies are one number over both shares of the data, every image counted once
    # (validation is on the test set: no val_fraction)
    stages = ["val", "test"] if cli == "search" else ["val"]
    for stage in stages:
        seen = [r[stage]["seen"] for r in ranks]
        assert sorted(seen) == [NUM_TEST // 2, NUM_TEST - NUM_TEST // 2], stage
        overall = sum(r[stage]["correct"] for r in ranks) / sum(seen)
        for r in ranks:
            assert r[stage]["acc"] == pytest.approx(overall, abs=1e-6), stage
    # only rank 0 writes
    assert ranks[1]["writes"] == []
    written = {Path(p).name for p in ranks[0]["writes"]}
    assert {"arch.yaml", "supernet.pt", "run.json", "search.png", "history.json"} <= written
    # the derived architecture is within budget, with the synced accuracy
    (arch_file,) = run_dir.rglob("arch.yaml")
    arch = Architecture.load(arch_file)
    assert arch.metrics["latency_ms"] <= arch.metrics["target_latency_ms"] * (1 + 1e-12)
    assert arch.metrics["val_acc"] == pytest.approx(ranks[0]["val"]["acc"])
    if cli == "search":
        assert arch.metrics["test_acc"] == pytest.approx(ranks[0]["test"]["acc"])
    record = json.loads((arch_file.parent / "run.json").read_text())
    assert "ddp" in str(record["config"]["trainer"]["strategy"])
