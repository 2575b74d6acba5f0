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
from tests.runs import SEARCH

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

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        acc = pl_module.test_accs[0]  # local counts: torchmetrics unsyncs after compute()
        self.state["test_acc"] = float(trainer.callback_metrics["test/acc"])
        self.state["correct"] = int(acc.tp.sum())
        self.state["seen"] = int((acc.tp + acc.fn).sum())

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "test":
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


@pytest.mark.slow
def test_ddp_search_on_two_cpu_processes(tmp_path, cache_dir):
    run_dir, probe = tmp_path / "run", tmp_path / "probe"
    probe.mkdir()
    env = {
        **os.environ,
        "DNAS_CACHE": str(cache_dir),
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT), str(ROOT / "src"), str(ROOT / "kernels"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    cmd = [
        sys.executable,
        "-m",
        "dnas.cli.search",
        "trainer=ddp",
        *SEARCH,
        "trainer.devices=2",
        f"hydra.run.dir={run_dir}",
        f"+callbacks.probe._target_={__name__}.RankProbe",
        f"+callbacks.probe.out={probe}",
        f"+callbacks.probe.run_dir={run_dir}",
    ]
    done = _run(cmd, env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    ranks = [torch.load(probe / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # identical parameters everywhere: architecture (averaged gradients) and weights (DDP)
    params = [r["params"] for r in ranks]
    assert any("arch" in n for n in params[0])
    for name, value in params[0].items():
        assert torch.equal(value, params[1][name]), name
    # the test accuracy is one number over both shares of the test set
    seen = [r["seen"] for r in ranks]
    assert seen[0] == seen[1] > 0
    overall = sum(r["correct"] for r in ranks) / sum(seen)
    for r in ranks:
        assert r["test_acc"] == pytest.approx(overall, abs=1e-6)
    # only rank 0 writes
    assert ranks[1]["writes"] == []
    written = {Path(p).name for p in ranks[0]["writes"]}
    assert {"arch.yaml", "supernet.pt", "run.json", "search.png", "history.json"} <= written
    # the derived architecture is within budget, with the synced accuracy
    arch = Architecture.load(run_dir / "arch.yaml")
    assert arch.metrics["latency_ms"] <= arch.metrics["target_latency_ms"] * (1 + 1e-12)
    assert arch.metrics["test_acc"] == pytest.approx(ranks[0]["test_acc"])
    record = json.loads((run_dir / "run.json").read_text())
    assert record["config"]["trainer"]["strategy"] == "ddp_find_unused_parameters_true"
