# ---
# jupyter:
#   jupytext:
#     formats: py:percent,ipynb
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A search from a notebook: watch the architecture distribution move, derive, finetune
#
# This notebook runs the differentiable search step by step instead of through `dnas-search`: it
# composes the same Hydra config, builds the supernet and its search module, trains it with a
# Lightning `Trainer` here in the notebook while recording the architecture distribution, and
# plots what moved — the kernel probabilities, widths and bits of every block, the Gumbel-softmax
# temperature, and the expected cost of the distribution against the exact cost of the network
# derived from it. It then derives the architecture within the budget, evaluates it inside the
# supernet, and finetunes the child network briefly.
#
# Open it with `jupytext --to ipynb notebooks/search.py` (or Jupyter's jupytext plugin). The
# default parameters are `dnas-search experiment=quick` (Fashion-MNIST, a few minutes on a CPU);
# the tests run it as a script on a tiny synthetic data set.

# %% tags=["parameters"]
overrides = ["experiment=quick", "target.latency_frac=0.3"]  # dnas-search overrides (Hydra)
finetune_epochs = 2  # epochs of quantization-aware finetuning of the derived child
finetune_lr = 0.05  # its SGD learning rate (dnas-train's default)
out_dir = None  # where arch.yaml goes (None: a new temporary directory)

# %% [markdown]
# ## 1. The config, the cost table and the budget

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dnas.cost.hardware import BitFusionConfig
from dnas.cost.table import load_or_build
from dnas.cost.targets import resolve_targets
from dnas.space import SearchSpace

with initialize_config_module("dnas.conf", version_base="1.3"):
    cfg = compose("search", overrides=list(overrides))
out = Path(out_dir or tempfile.mkdtemp(prefix="dnas-search-"))
out.mkdir(parents=True, exist_ok=True)

space = SearchSpace.from_dict(OmegaConf.to_container(cfg.space, resolve=True))
hw = BitFusionConfig.from_dict(OmegaConf.to_container(cfg.hardware, resolve=True))
table, table_path, _ = load_or_build(space, hw, cfg.table.path, cfg.table.backend)
extremes = table.extremes(space)
targets = resolve_targets(OmegaConf.to_container(cfg.target, resolve=True), extremes)
print(f"{space.name}: {space.num_blocks} blocks; cost table {table_path}")
print(
    f"budget {targets.describe()} (networks of the space: "
    f"{extremes['min_latency_ms']:.4f}-{extremes['max_latency_ms']:.4f} ms)"
)

# %% [markdown]
# ## 2. The supernet and its search module
#
# `SearchModule` owns the supernet (one shared weight per layer; a Gumbel-softmax kernel choice,
# a fractional width and fractional bits per conv), the differentiable expected cost and the budget
# term. The table below is the starting distribution: the kernel choices equally likely, every
# width and bit-width at its largest (the search then trades them down to the budget).

# %%
from functools import partial

import pytorch_lightning as pl

from dnas.cost.targets import TargetSpec
from dnas.search.losses import BudgetLoss
from dnas.search.module import SearchModule

pl.seed_everything(int(cfg.seed), workers=True)
data = instantiate(cfg.data)
module = SearchModule(
    space=space,
    hardware=hw,
    table=table,
    target=TargetSpec(latency_ms=targets.latency_ms, energy_mj=targets.energy_mj),
    budget=partial(BudgetLoss, **OmegaConf.to_container(cfg.loss, resolve=True)),
    weight_optimizer=instantiate(cfg.optimizer.weights),
    arch_optimizer=instantiate(cfg.optimizer.arch),
    weight_scheduler=instantiate(cfg.scheduler),
    **OmegaConf.to_container(cfg.search, resolve=True),
)
n_weights = sum(p.numel() for p in module.supernet.weight_parameters())
n_arch = sum(p.numel() for p in module.supernet.arch_parameters())
print(f"supernet: {n_weights:,} weights, {n_arch} architecture parameters")
print(module.supernet.summary())


# %% [markdown]
# ## 3. Search, recording the distribution after every epoch
#
# The first `search.warmup_epochs` train the weights alone with every choice drawn uniformly; the
# architecture parameters start moving after that (the dotted line in the plots below). The module keeps
# its own history (temperature, entropy, expected and derived cost, validation accuracy); a small
# callback adds a snapshot of the distribution.


# %%
class DistributionRecorder(pl.Callback):
    """Kernel probabilities, expected width and expected bits of every block, per epoch."""

    def __init__(self) -> None:
        self.snapshots: list[dict] = []

    def snapshot(self, module: SearchModule, epochs_trained: int) -> None:
        blocks = list(module.supernet.searchable_blocks())
        self.snapshots.append(
            {
                "epochs": epochs_trained,
                "kernel_probs": [b.kernel.probs().detach().numpy().copy() for b in blocks],
                "width": [b.width.expected_width() for b in blocks],
                "bits": [  # mean over the block's convs, weights and activations
                    np.mean(
                        [
                            [c.wq.bits.expected_bits(), c.aq.bits.expected_bits()]
                            for c in b.convs().values()
                        ]
                    )
                    for b in blocks
                ],
            }
        )

    def on_train_start(self, trainer, module) -> None:
        self.snapshot(module, 0)

    def on_train_epoch_end(self, trainer, module) -> None:
        self.snapshot(module, trainer.current_epoch + 1)


recorder = DistributionRecorder()
trainer = instantiate(cfg.trainer, logger=False, callbacks=[recorder], default_root_dir=str(out))
trainer.fit(module, datamodule=data)
print(module.supernet.summary())

# %% [markdown]
# ### Cost and accuracy per epoch
#
# The expected cost is what the budget term sees: the cost of the relaxed network, interpolated in
# the table. The derived cost is the exact cost of the discrete network read off the distribution
# at that epoch, which never exceeds the target; the accuracy is that network's, inside the
# supernet.

# %%
from dnas.history import history_of
from dnas.search.plot import draw_search

history = history_of(trainer).rows  # one row per epoch of what the search logged
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
draw_search(history, targets, axes)
fig.tight_layout()

# %% [markdown]
# ### Temperature and the distribution
#
# The temperature decays from `search.tau0` to `search.tau_min` over the search epochs. The kernel
# entropy (mean over blocks, in nats) falls as the kernel choices firm up; a block offering `skip`
# may be dropped from the network.

# %%
from matplotlib.ticker import MaxNLocator

warmup = int(cfg.search.warmup_epochs)
epochs = [s["epochs"] for s in recorder.snapshots]


def epoch_axis(ax):
    """Epochs trained on the x axis; a dotted line where the warm-up (architecture frozen) ends."""
    if warmup:
        ax.axvline(warmup, color="black", linestyle=":", linewidth=1, label="end of warm-up")
    ax.set_xlabel("epochs trained")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
for ax, key, label in ((axes[0], "tau", "temperature τ"), (axes[1], "entropy", "kernel entropy")):
    pts = [(h["epoch"] + 1, h[key]) for h in history if key in h]
    epoch_axis(ax)
    ax.plot(*zip(*pts), "-o", markersize=4)
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
fig.tight_layout()

blocks = list(module.supernet.searchable_blocks())
fig, axes = plt.subplots(1, len(blocks), figsize=(2.6 * len(blocks), 3), sharey=True)
for i, (ax, b) in enumerate(zip(np.atleast_1d(axes), blocks)):
    probs = np.array([s["kernel_probs"][i] for s in recorder.snapshots]).T  # [choice, snapshot]
    ax.stackplot(epochs, probs, labels=[str(k) for k in b.spec.kernel_choices], alpha=0.85)
    epoch_axis(ax)
    ax.set_title(f"block {b.spec.index} kernel")
    ax.set_ylim(0, 1)
np.atleast_1d(axes)[0].set_ylabel("probability")
np.atleast_1d(axes)[-1].legend(fontsize=8, loc="lower right")
fig.tight_layout()

fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for i, b in enumerate(blocks):
    widths = [s["width"][i] / b.spec.widths[-1] for s in recorder.snapshots]
    axes[0].plot(epochs, widths, "-o", markersize=3, label=f"block {b.spec.index}")
    axes[1].plot(epochs, [s["bits"][i] for s in recorder.snapshots], "-o", markersize=3)
for ax, label in zip(axes, ("expected width / widest", "expected bits (mean of w and a)")):
    epoch_axis(ax)
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
axes[0].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## 4. Derive within the budget and evaluate inside the supernet
#
# `search.derive` reads the discrete architecture off the distribution so that its exact table
# cost meets the budget. Its accuracy is measured inside the supernet after re-estimating the
# batch-norm statistics for it, as `dnas-search` does.

# %%
arch, cost = module.derive(0)
assert targets.fits(cost)
module.bn_batches = int(cfg.final.bn_batches)
supernet_acc = float(trainer.test(module, datamodule=data, verbose=False)[0]["test/acc"])
arch = arch.with_metrics(supernet_acc=supernet_acc)
arch.save(out / "arch.yaml")
print(
    f"derived: {cost['latency_ms']:.4f} ms, {cost['energy_mj']:.4f} mJ "
    f"(budget {targets.describe()}); inside the supernet: {100 * supernet_acc:.2f} % -> {out}"
)
for b in arch.blocks:
    convs = " ".join(
        f"{role} {c.w_bits}/{c.a_bits}"
        for role in ("expand", "dw", "project")
        if (c := b.conv_bits(role)) is not None
    )
    print(f"  kernel {b.kernel!s:>4}  width {b.width:4d}  bits (w/a) {convs}")

# %% [markdown]
# ## 5. Finetune the child briefly
#
# The child is a plain network: the chosen kernels cropped from the shared weights, the leading
# channels kept, every conv quantized at its fixed bits, batch-norm statistics re-estimated. It is
# trained quantization-aware on every training image (no architecture split), as `dnas-train`
# does (`dnas-train arch=<out_dir>` runs the full recipe from the saved `arch.yaml`).

# %%
from functools import partial

import torch

from dnas.cli.train import evaluate
from dnas.supernet.child import ChildNet
from dnas.train.module import ChildModule

child_data = instantiate(cfg.data, arch_fraction=0.0)
child_data.setup("fit")
bn = int(cfg.final.bn_batches)
child = ChildNet.from_supernet(module.supernet, arch, child_data.bn_recalibration_loader(bn), bn)
inherited_acc = evaluate(child, child_data.test_dataloader())
child_module = ChildModule(
    child,
    partial(torch.optim.SGD, lr=finetune_lr, momentum=0.9, nesterov=True, weight_decay=4e-5),
)
child_trainer = pl.Trainer(
    max_epochs=finetune_epochs,
    accelerator=cfg.trainer.accelerator,
    logger=False,
    enable_checkpointing=False,
    enable_model_summary=False,
    num_sanity_val_steps=0,
    default_root_dir=str(out),
)
child_trainer.fit(child_module, datamodule=child_data)
test_acc = float(
    child_trainer.test(child_module, datamodule=child_data, verbose=False)[0]["test/acc"]
)
print(
    f"child: test accuracy {100 * inherited_acc:.2f} % inherited, "
    f"{100 * test_acc:.2f} % after {finetune_epochs} epoch(s) of finetuning"
)
