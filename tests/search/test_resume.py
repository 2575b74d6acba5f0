"""Resume exactly, stop cleanly: checkpoints, signals and non-finite losses (issue 9).

The end-to-end tests run ``dnas-search`` as a subprocess and stop it with real signals: SIGKILL in
the middle of an epoch (then resume from ``last.ckpt``), and SIGTERM (what Slurm, ``docker stop``
and ``timeout`` send), which must exit non-zero, say where the checkpoint is, and write no result.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dnas.space import Architecture
from tests.runs import TINY_DATA

# Long enough epochs (~1-2 s each) that a signal lands inside one.
RESUME = [
    *TINY_DATA,
    "data.num_train=1024",
    "data.batch_size=16",
    "trainer.max_epochs=4",
    "search.warmup_epochs=1",
    "search.bn_batches=2",
    "final.bn_batches=2",
    "target.latency_frac=0.2",
    "seed=3",
]


def _search(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "dnas.cli.search", *RESUME, f"hydra.run.dir={out}", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _epochs_done(ckpt: Path) -> int:
    if not ckpt.is_file():
        return 0
    try:
        return int(torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"]) + 1
    except Exception:  # being replaced right now
        return 0


def _stop_after(proc: subprocess.Popen, ckpt: Path, epochs: int, sig: int) -> tuple[int, str]:
    """Send ``sig`` once ``ckpt`` holds ``epochs`` finished epochs (so inside the next one)."""
    deadline = time.monotonic() + 1200
    while _epochs_done(ckpt) < epochs:
        assert proc.poll() is None, f"the run ended before epoch {epochs}:\n{proc.stderr.read()}"
        assert time.monotonic() < deadline, "no checkpoint within 20 min"
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch's batches
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def _arch_params(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "supernet.pt", map_location="cpu", weights_only=True)
    return {k: v for k, v in state.items() if "alpha" in k or "theta" in k or "arch" in k}


@pytest.mark.slow
def test_killed_mid_epoch_then_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    full = _search(tmp_path / "full")
    _, err = full.communicate(timeout=900)
    assert full.returncode == 0, err

    cut = tmp_path / "cut"
    ckpt = cut / "checkpoints" / "last.ckpt"
    code, err = _stop_after(_search(cut), ckpt, 2, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert not (cut / "arch.yaml").exists()
    assert _epochs_done(ckpt) == 2  # the checkpoint survived the kill whole

    resumed = _search(tmp_path / "resumed", f"ckpt_path={ckpt}")
    _, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err
    again = _search(tmp_path / "again")  # the same seed again, uninterrupted
    _, err = again.communicate(timeout=900)
    assert again.returncode == 0, err

    a = Architecture.load(tmp_path / "full" / "arch.yaml")
    b = Architecture.load(tmp_path / "resumed" / "arch.yaml")
    assert b.to_dict()["blocks"] == a.to_dict()["blocks"]
    assert b.metrics["latency_ms"] == a.metrics["latency_ms"]
    assert b.metrics["energy_mj"] == a.metrics["energy_mj"]
    c = Architecture.load(tmp_path / "again" / "arch.yaml")  # same seed, same machine: same result
    assert c.to_dict()["blocks"] == a.to_dict()["blocks"]
    assert c.metrics["latency_ms"] == a.metrics["latency_ms"]
    assert c.table_hash == a.table_hash != ""
    pa, pb = _arch_params(tmp_path / "full"), _arch_params(tmp_path / "resumed")
    assert pa and pa.keys() == pb.keys()
    for k in pa:
        torch.testing.assert_close(pb[k], pa[k], rtol=1e-6, atol=1e-7, msg=k)
    import json

    hist_a = json.loads((tmp_path / "full" / "history.json").read_text())
    hist_b = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert [h["epoch"] for h in hist_b] == [h["epoch"] for h in hist_a] == [0, 1, 2, 3]
    assert hist_b[-1]["val_acc"] == pytest.approx(hist_a[-1]["val_acc"], abs=1e-6)


@pytest.mark.slow
def test_sigterm_exits_nonzero_naming_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    ckpt = out / "checkpoints" / "last.ckpt"
    code, err = _stop_after(_search(out), ckpt, 1, signal.SIGTERM)
    assert code == 143, err
    assert "SIGTERM" in err and f"ckpt_path={ckpt}" in err
    assert not (out / "arch.yaml").exists()
    assert not (out / "run.json").exists()


@pytest.mark.slow
def test_a_nan_loss_stops_with_the_step_and_the_last_checkpoint(tmp_path, monkeypatch):
    """Weights blown up at epoch 1: exit 3, naming the step; epoch 0's checkpoint is kept."""
    from dnas.cli.search import run
    from dnas.errors import Interrupted
    from tests.runs import SEARCH, compose_config

    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    cfg = compose_config(
        "search", *SEARCH, "trainer.max_epochs=3", f"hydra.runtime.output_dir={tmp_path}"
    )
    from dnas.search import module as search_module

    real_step = search_module.SearchModule.training_step

    def poisoned(self, batch, batch_idx):
        if self.current_epoch == 1 and batch_idx == 2:
            for p in self.supernet.weight_parameters():
                p.data.fill_(float("nan"))
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(search_module.SearchModule, "training_step", poisoned)
    with pytest.raises(Interrupted) as e:
        run(cfg, output_dir=tmp_path)
    assert e.value.exit_code == 3
    msg = str(e.value)
    assert "loss is nan at epoch 1, batch 2" in msg
    assert f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}" in msg
    assert _epochs_done(tmp_path / "checkpoints" / "last.ckpt") == 1
    assert not (tmp_path / "arch.yaml").exists()
