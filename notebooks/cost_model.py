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
# # The BitFusion cost model: what a layer's bits, width and kernel cost
#
# This notebook shows how the latency and energy of one layer move with its bit-widths, its width
# and its kernel size on BitFusion (line plots); which layers of a search space are limited by
# memory traffic rather than by compute; the space's whole cost table as heat maps; and a network's
# cost layer by layer (stacked bars). Everything comes from `dnas.cost`: the hardware
# (`hardware`), the per-layer model (`oracle` for one layer, `backend.evaluate` for many) and the
# cost table the search reads (`table`).
#
# Open it with `jupytext --to ipynb notebooks/cost_model.py` (or Jupyter's jupytext plugin). The
# tests run it as a script, with the parameters below overridden.

# %% tags=["parameters"]
space_name = "fmnist_mbv2"  # a built-in space (conf/space/) or a YAML path
hardware_name = "bitfusion"  # a built-in hardware config (conf/hardware/) or a YAML path
backend = "torch"  # cost backend: torch, triton or auto
block = None  # the block the line plots zoom into (None: the middle one)

# %% [markdown]
# ## 1. The space, the hardware and the cost table

# %%
import matplotlib.pyplot as plt
import numpy as np

from dnas.cost.backend import evaluate
from dnas.cost.hardware import load_hardware
from dnas.cost.layer import arch_layer_shapes, layer_shape
from dnas.cost.table import load_or_build
from dnas.space import LayerKey, load_space

space = load_space(space_name)
hw = load_hardware(hardware_name)
table, table_path, built = load_or_build(space, hw, None, backend)
ext = table.extremes(space)
print(
    f"{space.name}: {space.num_blocks} blocks, {table.num_entries:,} table entries ({table_path})"
)
print(
    f"{hw.name}: {hw.rows_n}x{hw.cols_m} Fusion Units, {hw.pmin_bits}-{hw.pmax_bits} bits, "
    f"{hw.freq_mhz:g} MHz"
)
print(
    f"networks of the space: {ext['min_latency_ms']:.4f}-{ext['max_latency_ms']:.4f} ms, "
    f"{ext['min_energy_mj']:.4f}-{ext['max_energy_mj']:.4f} mJ"
)

layers = {cl.key: cl for cl in space.costed_layers()}
block = space.num_blocks // 2 if block is None else block
roles = [r for r in ("expand", "dw", "project") if LayerKey(r, block) in layers]
zoom = {r: layers[LayerKey(r, block)] for r in roles}

# %% [markdown]
# ## 2. One layer through the model
#
# The model picks, for each layer, the tiling and loop order with the fewest cycles. Cycles are
# compute plus the cycles the array waits for DRAM; energy splits into the core, the on-chip
# buffers (SRAM) and DRAM.

# %%
from dnas.cost.oracle import layer_cost

cl = zoom["expand" if "expand" in zoom else "project"]
shape = layer_shape(cl, 0, len(cl.widths) - 1, len(cl.w_bits) - 1, len(cl.a_bits) - 1)
c = layer_cost(shape, hw)
print(f"{cl.key}: {shape}")
print(
    f"{c.cycles:,} cycles = {c.compute_cycles:,} compute + {c.mem_stall_cycles:,} stalled on DRAM "
    f"-> {c.latency_ms:.4f} ms"
)
print(
    f"energy {c.total_energy_nJ / 1e6:.5f} mJ: core {c.core_energy_nJ / c.total_energy_nJ:.0%}, "
    f"SRAM {c.sram_energy_nJ / c.total_energy_nJ:.0%}, DRAM {c.dram_energy_nJ / c.total_energy_nJ:.0%}"
)
print("tiling", c.tiling_json, "loop order", c.loop_order_str)


# %% [markdown]
# ## 3. Latency and energy against bits, width and kernel
#
# One block's three convs. Bits: weights and activations together. BitFusion fuses its 2-bit units
# into wider ones, so a conv at 4/4 bits computes four times faster than at 8/8 and at 2/2 sixteen
# times, while the data it moves only shrinks in proportion to the bits; bits that are not a power
# of two compute like the next power of two above them but move their real size. Dashed lines: the compute
# cycles alone, so the gap to the solid line is time stalled on DRAM.


# %%
def costs(cl, points):
    """Latency (total and compute only, ms) and energy (mJ) of ``cl`` at grid points
    ``(kernel, width, w_bits, a_bits)`` indices, from the vectorized model."""
    res = evaluate([layer_shape(cl, *p) for p in points], hw, backend)
    return {
        "latency_ms": res.latency_ms(hw).numpy(),
        "compute_ms": res.column("compute_cycles").double().numpy() / hw.cycles_per_ms,
        "energy_mj": res.energies_nj(hw)["total"].numpy() / 1e6,
    }


def same_bits(cl, b):
    """Indices of ``b`` bits in the layer's weight and activation bit lists."""
    return cl.w_bits.index(b), cl.a_bits.index(b)


bits = [b for b in zoom["dw"].w_bits if b in zoom["dw"].a_bits]
native = [b for b in bits if b & (b - 1) == 0 and hw.pmin_bits <= b]  # the fused precisions
fig, axes = plt.subplots(2, 3, figsize=(14, 7))
for role, cl in zoom.items():
    w_max = len(cl.widths) - 1
    by_bits = costs(cl, [(0, w_max, *same_bits(cl, b)) for b in bits])
    by_width = costs(cl, [(0, w, *same_bits(cl, bits[-1])) for w in range(len(cl.widths))])
    # The table holds the same numbers the model gives: what the search reads is what is plotted.
    t = table.entries[cl.key]
    assert np.allclose(
        by_bits["latency_ms"], [t.latency_ms[(0, w_max, *same_bits(cl, b))] for b in bits]
    )
    (line,) = axes[0, 0].plot(bits, by_bits["latency_ms"], "-o", label=role, markersize=4)
    axes[0, 0].plot(bits, by_bits["compute_ms"], "--", color=line.get_color())
    axes[1, 0].plot(bits, by_bits["energy_mj"], "-o", label=role, markersize=4)
    axes[0, 1].plot(cl.widths, by_width["latency_ms"], "-o", label=role, markersize=4)
    axes[0, 1].plot(cl.widths, by_width["compute_ms"], "--", color=line.get_color())
    axes[1, 1].plot(cl.widths, by_width["energy_mj"], "-o", label=role, markersize=4)
dw = zoom["dw"]
for b in native:
    by_kernel = costs(
        dw, [(k, len(dw.widths) - 1, *same_bits(dw, b)) for k in range(len(dw.kernels))]
    )
    (line,) = axes[0, 2].plot(dw.kernels, by_kernel["latency_ms"], "-o", label=f"{b}/{b} bits")
    axes[0, 2].plot(dw.kernels, by_kernel["compute_ms"], "--", color=line.get_color())
    axes[1, 2].plot(dw.kernels, by_kernel["energy_mj"], "-o", label=f"{b}/{b} bits")
titles = (
    "against bits (w = a), widest",
    f"against hidden width, {bits[-1]}/{bits[-1]} bits",
    "depthwise, against kernel, widest",
)
xlabels = ("bits (weights = activations)", "hidden width (channels)", "kernel size")
for col in range(3):
    axes[0, col].set_title(titles[col])
    axes[1, col].set_xlabel(xlabels[col])
    for row, ylabel in enumerate(("latency (ms)", "energy (mJ)")):
        axes[row, col].set_ylabel(ylabel)
        axes[row, col].set_yscale("log")
        axes[row, col].grid(alpha=0.3, which="both")
        axes[row, col].legend(fontsize=8)
fig.suptitle(f"block {block} of {space.name} on {hw.name} (dashed: compute cycles alone)")
fig.tight_layout()

# %% [markdown]
# ## 4. Memory-bound or compute-bound?
#
# A layer is memory-bound when it waits for DRAM longer than it computes (stall share above 50 %
# of its cycles; `dnas-cost arch` flags the same). Every costed layer of the space at its widest,
# with the smallest kernel, at each precision BitFusion fuses natively (powers of two): lowering
# the bits cuts compute faster than it cuts traffic, so more layers cross the line.

# %%
names = [str(k) for k in layers]
fig, ax = plt.subplots(figsize=(14, 3.8))
for b in native:
    shapes = []
    for cl in layers.values():
        wb = cl.w_bits.index(b) if b in cl.w_bits else len(cl.w_bits) - 1
        ab = cl.a_bits.index(b) if b in cl.a_bits else len(cl.a_bits) - 1
        shapes.append(layer_shape(cl, 0, len(cl.widths) - 1, wb, ab))
    res = evaluate(shapes, hw, backend)
    stall = res.column("mem_stall_cycles").double().numpy()
    share = stall / res.column("cycles").double().numpy()
    bound = share > 0.5
    ax.plot(names, 100 * share, "o", label=f"{b}/{b} bits (fixed layers at their own bits)")
    print(
        f"{b}/{b} bits: {bound.sum()} of {len(names)} layers memory-bound "
        f"({', '.join(n for n, m in zip(names, bound) if m) or 'none'})"
    )
ax.axhline(50, color="crimson", linestyle="--", label="memory-bound above")
ax.set_ylabel("cycles stalled on DRAM (%)")
ax.set_ylim(-3, 103)
ax.tick_params(axis="x", rotation=60)
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## 5. The cost table as heat maps
#
# What the search's expected cost interpolates: left, each block's three convs summed, at its
# widest with the smallest kernel, against the bits (weights = activations); middle, the same in
# energy; right, the zoomed block's depthwise conv over kernel and width at the highest bits.
# Colours are logarithmic.

# %%
from matplotlib.colors import LogNorm


def block_cost(metric, b):
    total = []
    for spec in space.blocks:
        s = 0.0
        for role in ("expand", "dw", "project"):
            cl = layers.get(LayerKey(role, spec.index))
            if cl is not None:
                s += float(getattr(table.entries[cl.key], metric)[(0, -1, *same_bits(cl, b))])
        total.append(s)
    return total


fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
for ax, metric, unit in zip(axes, ("latency_ms", "energy_mj"), ("ms", "mJ")):
    grid = np.array([block_cost(metric, b) for b in bits]).T  # [block, bits]
    im = ax.imshow(grid, aspect="auto", cmap="viridis", norm=LogNorm())
    ax.set_xticks(range(len(bits)), [f"{b}/{b}" for b in bits])
    ax.set_yticks(range(space.num_blocks), [f"block {i}" for i in range(space.num_blocks)])
    ax.set_xlabel("bits (weights/activations)")
    ax.set_title(f"block {metric.split('_')[0]} ({unit}), widest")
    fig.colorbar(im, ax=ax)
t = table.entries[dw.key]
grid = t.latency_ms[:, :, len(dw.w_bits) - 1, len(dw.a_bits) - 1].numpy()  # [kernel, width]
im = axes[2].imshow(grid, aspect="auto", cmap="magma", norm=LogNorm())
axes[2].set_yticks(range(len(dw.kernels)), [f"k={k}" for k in dw.kernels])
step = max(1, len(dw.widths) // 8)
axes[2].set_xticks(range(0, len(dw.widths), step), dw.widths[::step])
axes[2].set_xlabel("hidden width")
axes[2].set_title(f"{dw.key} latency (ms), {dw.w_bits[-1]}/{dw.a_bits[-1]} bits")
fig.colorbar(im, ax=axes[2])
fig.tight_layout()

# %% [markdown]
# And one conv over its weight and activation bits (widest; smallest kernel): weights and
# activations count separately, and the fusion steps show as plateaus.

# %%
fig, axes = plt.subplots(2, len(zoom), figsize=(4.5 * len(zoom), 7))
for col, cl in enumerate(zoom.values()):
    t = table.entries[cl.key]
    for row, (metric, unit) in enumerate((("latency_ms", "ms"), ("energy_mj", "mJ"))):
        ax = axes[row, col]
        im = ax.imshow(getattr(t, metric)[0, -1].numpy(), origin="lower", cmap="viridis")
        ax.set_xticks(range(len(cl.a_bits)), cl.a_bits)
        ax.set_yticks(range(len(cl.w_bits)), cl.w_bits)
        ax.set_xlabel("activation bits")
        ax.set_ylabel("weight bits")
        ax.set_title(f"{cl.key} {metric.split('_')[0]} ({unit})")
        fig.colorbar(im, ax=ax)
fig.tight_layout()

# %% [markdown]
# ## 6. A network, layer by layer
#
# Two networks with every block at its widest and smallest kernel: one at the highest fused
# precision everywhere, one at the next lower (the stem, last conv and classifier keep their own
# bits).
# Latency splits into compute and DRAM stalls, energy into core, SRAM and DRAM. The per-layer sums
# equal the cost table's total for the architecture, which is what the search's budget reads.

# %%
from dnas.space import ArchState


def nearest(choices, b):
    return min(range(len(choices)), key=lambda i: abs(choices[i] - b))


def uniform_arch(b):
    """Every block widest with its smallest kernel; every conv at the bits nearest ``b``."""
    return ArchState(
        kernel={spec.index: 0 for spec in space.blocks},
        width={spec.index: len(spec.widths) - 1 for spec in space.blocks},
        bits={k: (nearest(cl.w_bits, b), nearest(cl.a_bits, b)) for k, cl in layers.items()},
    ).to_arch(space)


networks = {f"{b}/{b} bits": uniform_arch(b) for b in (native[-1], native[-2])}
fig, axes = plt.subplots(2, len(networks), figsize=(7 * len(networks), 7), sharey="row")
for col, (label, arch) in enumerate(networks.items()):
    shapes = arch_layer_shapes(space, arch)
    res = evaluate(list(shapes.values()), hw, backend)
    x = np.arange(len(shapes))
    compute = res.column("compute_cycles").double().numpy() / hw.cycles_per_ms
    stall = res.column("mem_stall_cycles").double().numpy() / hw.cycles_per_ms
    energy = {k: v.numpy() / 1e6 for k, v in res.energies_nj(hw).items()}
    lat, en = table.arch_cost(space, arch)
    assert np.isclose(compute.sum() + stall.sum(), lat) and np.isclose(energy["total"].sum(), en)
    ax = axes[0, col]
    ax.bar(x, compute, label="compute")
    ax.bar(x, stall, bottom=compute, label="DRAM stall")
    ax.set_title(f"{label}: {lat:.4f} ms, {en:.4f} mJ")
    ax.set_ylabel("latency (ms)")
    ax = axes[1, col]
    bottom = np.zeros(len(x))
    for part in ("core", "sram", "dram"):
        ax.bar(x, energy[part], bottom=bottom, label=part.upper() if part != "core" else part)
        bottom += energy[part]
    ax.set_ylabel("energy (mJ)")
    for ax in axes[:, col]:
        ax.set_xticks(x, [str(k) for k in shapes], rotation=60, fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    share = stall.sum() / (compute.sum() + stall.sum())
    print(f"{label}: {lat:.4f} ms ({share:.0%} stalled), {en:.4f} mJ")
fig.tight_layout()
