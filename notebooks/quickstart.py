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
# # dnas quickstart: cost a space on BitFusion, search it, read the result
#
# Open with `jupytext --to ipynb notebooks/quickstart.py` (or Jupyter's jupytext plugin). The tests
# run this file as a script with `DNAS_NOTEBOOK_SMALL=1`, which shrinks the search to seconds.

# %%
import os
import tempfile
from pathlib import Path

SMALL = os.environ.get("DNAS_NOTEBOOK_SMALL") == "1"

# %% [markdown]
# ## 1. The search space and its BitFusion cost table

# %%
from dnas.cost.hardware import load_hardware
from dnas.cost.table import build_table
from dnas.space import load_space

space = load_space("fmnist_mbv2")
hw = load_hardware("bitfusion")
table = build_table(space, hw, backend="torch")
ext = table.extremes(space)
print(f"{space.name}: {space.num_blocks} blocks, {table.num_entries:,} table entries")
print(
    f"latency {ext['min_latency_ms']:.4f}-{ext['max_latency_ms']:.4f} ms, "
    f"energy {ext['min_energy_mj']:.4f}-{ext['max_energy_mj']:.4f} mJ"
)

# %% [markdown]
# ## 2. One layer through the cost model (the simulator's schedule and counters)

# %%
from dnas.cost.layer import LayerShape
from dnas.cost.oracle import layer_cost

pw = LayerShape(
    in_channels=96,
    out_channels=576,
    kernel_size=1,
    stride=1,
    output_h=14,
    batch=1,
    w_bits=4,
    a_bits=8,
)
c = layer_cost(pw, hw)
print(
    f"{c.cycles:,} cycles ({c.compute_cycles:,} compute + {c.mem_stall_cycles:,} stall), "
    f"{c.latency_ms:.4f} ms, {c.total_energy_nJ / 1e6:.4f} mJ"
)
print("tiling", c.tiling_json, "loop order", c.loop_order_str)

# %% [markdown]
# ## 3. Latency of every block choice: where the budget goes

# %%
import matplotlib.pyplot as plt

dw = [cl for cl in space.costed_layers() if cl.key.role == "dw"]
fig, axes = plt.subplots(1, len(dw), figsize=(3 * len(dw), 2.8), sharey=True)
for ax, cl in zip(axes, dw):
    t = table.entries[cl.key]
    for k, kernel in enumerate(cl.kernels):  # 8-bit weights and activations
        ax.plot(cl.widths, t.latency_ms[k, :, -1, -1], label=f"k={kernel}")
    ax.set_title(f"block {cl.key.block} depthwise")
    ax.set_xlabel("hidden width")
axes[0].set_ylabel("latency (ms)")
axes[0].legend()
fig.tight_layout()

# %% [markdown]
# ## 4. A search from Python (the same `run` as `dnas-search`)

# %%
from hydra import compose, initialize_config_module

from dnas.cli.search import run

overrides = ["target.latency_frac=0.3"]
if SMALL:
    overrides += [
        "data=synthetic",
        "data.num_train=512",
        "data.num_test=128",
        "trainer.max_epochs=2",
        "search.bn_batches=2",
        "final.bn_batches=2",
        "trainer.enable_model_summary=false",
    ]
else:
    overrides += ["experiment=quick"]
out = Path(tempfile.mkdtemp(prefix="dnas-quickstart-"))
with initialize_config_module("dnas.conf", version_base="1.3"):
    cfg = compose("search", overrides=overrides)
test_acc = run(cfg, output_dir=out)

# %% [markdown]
# ## 5. The derived architecture: exact cost, within the budget

# %%
from dnas.space import Architecture

arch = Architecture.load(out / "arch.yaml")
lat, en = table.arch_cost(space, arch)
assert lat <= arch.metrics["target_latency_ms"]
print(
    f"{lat:.4f} ms (target {arch.metrics['target_latency_ms']:.4f}), {en:.4f} mJ, "
    f"test accuracy {100 * test_acc:.1f} %"
)
for i, b in enumerate(arch.blocks):
    print(
        f"block {i}: kernel {b.kernel!s:>4}  width {b.width:4d}  "
        f"bits (w/a) expand {b.expand.w_bits}/{b.expand.a_bits} "
        f"dw {b.dw.w_bits}/{b.dw.a_bits} project {b.project.w_bits}/{b.project.a_bits}"
    )

# %%
img = plt.imread(out / "search.png")
plt.figure(figsize=(12, 3.5))
plt.imshow(img)
plt.axis("off")
