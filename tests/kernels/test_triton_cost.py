"""The Triton BitFusion kernel reproduces the scalar oracle exactly (counters, tiling, loop order).

Without a CUDA GPU the kernel runs under Triton's CPU interpreter; the variable must be set before
triton kernels are defined, hence before ``dnas_kernels`` is imported.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import json
import subprocess
import sys

import pytest

pytest.importorskip("triton")

import dnas_kernels
from dnas.cost.batch import (
    COUNTER_COLUMNS,
    DENSE_LOOPS,
    DEPTHWISE_LOOPS,
    TILE_COLUMNS,
    CostBatch,
    layers_to_params,
)
from dnas.cost.hardware import BitFusionConfig
from dnas.cost.layer import LayerShape
from dnas.cost.loop_order import reference_loop_orders
from dnas.cost.oracle import LayerCost, layer_cost
from dnas_kernels.bitfusion import bitfusion_cost
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.skipif(not dnas_kernels.available(), reason="triton cannot run here")


def dw(c: int, k: int, s: int, o: int, b: int, w: int, a: int) -> LayerShape:
    """A depthwise layer of c channels."""
    return LayerShape(c, c, k, s, o, b, w, a, groups=c)


# (id, layer): the shapes a search meets, plus odd corners.
CASES: list[tuple[str, LayerShape]] = [
    ("first_im2col", LayerShape(3, 32, 3, 2, 112, 1, 8, 8, im2col=True)),
    ("first_im2col_b4_w4a8", LayerShape(3, 16, 3, 2, 28, 4, 4, 8, im2col=True)),
    ("first_im2col_oc7", LayerShape(3, 7, 5, 2, 9, 1, 2, 2, im2col=True)),
    ("pointwise_112", LayerShape(16, 96, 1, 1, 112, 1, 4, 4)),
    ("pointwise_b16_w8a2", LayerShape(384, 96, 1, 1, 14, 16, 8, 2)),
    ("pointwise_oc1000_o7", LayerShape(320, 1000, 1, 1, 7, 1, 6, 6)),
    ("conv3x3_b2", LayerShape(64, 64, 3, 1, 28, 2, 8, 8)),
    ("conv5x5_s2_w2a8", LayerShape(32, 48, 5, 2, 14, 1, 2, 8)),
    ("conv7_ic3_oc1000_o7_b3", LayerShape(3, 1000, 7, 2, 7, 3, 6, 2)),
    ("conv3x3_b16_w4a4", LayerShape(64, 128, 3, 2, 14, 16, 4, 4)),
    ("conv3x3_w3a5", LayerShape(48, 40, 3, 1, 10, 2, 3, 5)),
    ("conv_w8a2_odd", LayerShape(100, 200, 3, 1, 9, 1, 8, 2)),
    ("conv_w2a6_oc1", LayerShape(17, 1, 3, 1, 5, 1, 2, 6)),
    ("fc_1280_1000", LayerShape(1280, 1000, 1, 1, 1, 1, 8, 8)),
    ("fc_b32_w2a2", LayerShape(512, 10, 1, 1, 1, 32, 2, 2)),
    ("fc_1x1", LayerShape(1, 1, 1, 1, 1, 1, 8, 8)),
    ("dw3_c96", dw(96, 3, 1, 14, 1, 8, 8)),
    ("dw5_s2_c144_w4a4", dw(144, 5, 2, 28, 1, 4, 4)),
    ("dw7_c32_b2_w2a8", dw(32, 7, 1, 56, 2, 2, 8)),
    ("dw3_c960_b16_w6a6", dw(960, 3, 1, 7, 16, 6, 6)),
    ("dw3_s2_c3_w8a2", dw(3, 3, 2, 5, 1, 8, 2)),
    ("dw5_c17_o1", dw(17, 5, 1, 1, 3, 4, 8)),
]

DEFAULT_HW = BitFusionConfig()
SMALL_HW = BitFusionConfig(name="small", rows_n=8, cols_m=16, dw_lanes=4, dram_bits_per_cycle=96)
# Buffers so small that only some layers fit: the others must come back as -1 rows.
TINY_HW = BitFusionConfig(name="tiny", wbuf_bytes=64, ibuf_bytes=64, obuf_bytes=256)
TINY_CASES: list[tuple[str, LayerShape]] = [
    ("conv_nofit", LayerShape(8, 8, 3, 1, 4, 1, 8, 8)),
    ("fc_nofit", LayerShape(64, 64, 1, 1, 1, 1, 8, 8)),
    ("im2col_fits", LayerShape(3, 4, 3, 1, 4, 1, 8, 8, im2col=True)),
    ("dw_fits", dw(4, 3, 1, 2, 2, 8, 8)),
    ("dw_nofit", dw(64, 7, 1, 4, 1, 8, 8)),
]


def run(layers: list[LayerShape], hw: BitFusionConfig) -> CostBatch:
    params = layers_to_params(layers)
    counters, tiles, order_index = bitfusion_cost(params, hw)
    assert counters.shape == (len(layers), len(COUNTER_COLUMNS))
    assert tiles.shape == (len(layers), len(TILE_COLUMNS))
    assert order_index.shape == (len(layers),)
    assert counters.dtype == tiles.dtype == order_index.dtype == torch.int64
    return CostBatch(params, counters, tiles, order_index)


def oracle_or_none(layer: LayerShape, hw: BitFusionConfig) -> LayerCost | None:
    try:
        return layer_cost(layer, hw)
    except ValueError as e:
        assert "no tiling" in str(e)
        return None


def assert_matches_oracle(batch: CostBatch, i: int, layer: LayerShape, hw: BitFusionConfig):
    ref = oracle_or_none(layer, hw)
    if ref is None:
        assert batch.counters[i].tolist() == [-1] * len(COUNTER_COLUMNS)
        assert batch.tiles[i].tolist() == [-1] * len(TILE_COLUMNS)
        assert int(batch.order_index[i]) == -1
        return
    got = dict(zip(COUNTER_COLUMNS, batch.counters[i].tolist(), strict=True))
    assert got == {c: getattr(ref, c) for c in COUNTER_COLUMNS}
    _b, _o, ic, oc = batch.tiles[i].tolist()
    if layer.depthwise:
        assert ic == oc
    assert batch.tiling(i) == ref.best_tiling
    assert batch.loop_order(i) == ref.best_loop_order
    # Energies derived from the integers equal the oracle's to the bit (same summation order).
    energies = {k: float(v[i]) for k, v in batch.energies_nj(hw).items()}
    assert energies == {
        "total": ref.total_energy_nJ,
        "core": ref.core_energy_nJ,
        "sram": ref.sram_energy_nJ,
        "dram": ref.dram_energy_nJ,
    }


@pytest.fixture(scope="module")
def default_batch() -> CostBatch:
    return run([layer for _, layer in CASES], DEFAULT_HW)


@pytest.fixture(scope="module")
def small_batch() -> CostBatch:
    return run([layer for _, layer in CASES], SMALL_HW)


@pytest.fixture(scope="module")
def tiny_batch() -> CostBatch:
    return run([layer for _, layer in TINY_CASES], TINY_HW)


@pytest.mark.parametrize("i", range(len(CASES)), ids=[name for name, _ in CASES])
def test_matches_oracle_default_hw(default_batch, i):
    assert_matches_oracle(default_batch, i, CASES[i][1], DEFAULT_HW)


@pytest.mark.parametrize("i", range(len(CASES)), ids=[name for name, _ in CASES])
def test_matches_oracle_small_hw(small_batch, i):
    assert_matches_oracle(small_batch, i, CASES[i][1], SMALL_HW)


@pytest.mark.parametrize("i", range(len(TINY_CASES)), ids=[name for name, _ in TINY_CASES])
def test_tiny_buffers(tiny_batch, i):
    assert_matches_oracle(tiny_batch, i, TINY_CASES[i][1], TINY_HW)


def test_tiny_buffers_cover_both_outcomes(tiny_batch):
    fits = (tiny_batch.counters[:, 0] >= 0).tolist()
    assert fits == [False, False, True, True, False]


def test_simulator_examples():
    rows = [r for _, r in EXAMPLES]
    assert len(rows) == 10
    layers = [layer for layer, _ in EXAMPLES]
    batch = run(layers, DEFAULT_HW)
    energies = batch.energies_nj(DEFAULT_HW)
    for i, r in enumerate(rows):
        for j, c in enumerate(COUNTER_COLUMNS):
            assert int(batch.counters[i, j]) == int(r[c]), (i, c)
        assert json.loads(batch.tiling_json(i)) == json.loads(r["best_tiling"]), i
        assert ">".join(batch.loop_order(i)) == r["best_loop_order"], i
        for k in ("total", "core", "sram", "dram"):
            want = float(r[f"{k}_energy_nJ"])
            assert float(energies[k][i]) == pytest.approx(want, rel=1e-9, abs=0), (i, k)


def test_order_index_is_a_reference_index(default_batch):
    for i, (_, layer) in enumerate(CASES):
        loops = DEPTHWISE_LOOPS if layer.depthwise else DENSE_LOOPS
        assert 0 <= int(default_batch.order_index[i]) < len(reference_loop_orders(loops))


def test_row_order_and_grouping_do_not_matter(default_batch):
    # Reversed and interleaved with depthwise rows: every row still gets its own result.
    perm = list(reversed(range(len(CASES))))
    batch = run([CASES[i][1] for i in perm], DEFAULT_HW)
    assert torch.equal(batch.counters, default_batch.counters[perm])
    assert torch.equal(batch.tiles, default_batch.tiles[perm])
    assert torch.equal(batch.order_index, default_batch.order_index[perm])


def test_empty_batch():
    counters, tiles, order_index = bitfusion_cost(layers_to_params([]), DEFAULT_HW)
    assert counters.shape == (0, len(COUNTER_COLUMNS))
    assert tiles.shape == (0, len(TILE_COLUMNS))
    assert order_index.shape == (0,)


def test_bits_above_pmax_rejected():
    params = layers_to_params([LayerShape(8, 8, 1, 1, 4, 1, 16, 8)])
    with pytest.raises(ValueError, match="pmax_bits"):
        bitfusion_cost(params, DEFAULT_HW)


def test_malformed_params_rejected():
    with pytest.raises(ValueError, match=r"\[n, 10\]"):
        bitfusion_cost(torch.ones((2, 9), dtype=torch.int64), DEFAULT_HW)
    with pytest.raises(ValueError, match="int64"):
        bitfusion_cost(torch.ones((2, 10), dtype=torch.int32), DEFAULT_HW)


def test_available():
    assert dnas_kernels.available()
    if not torch.cuda.is_available():
        assert dnas_kernels.interpreted()


def test_gpu_block_shapes(default_batch, monkeypatch):
    # The GPU's block shapes (one layer per program, 512 lanes), run here under the interpreter.
    import dnas_kernels.bitfusion as bf

    monkeypatch.setattr(bf, "_INTERPRETER_LAYERS", bf._GPU_LAYERS)
    monkeypatch.setattr(bf, "_INTERPRETER_LANES", bf._GPU_LANES)
    # One layer of each kind, the largest search spaces among them (one program each costs ~0.4 s
    # under the interpreter): im2col, pointwise, dense, fully connected, depthwise, and a 1x1 map.
    names = [
        "first_im2col",
        "pointwise_oc1000_o7",
        "conv3x3_b16_w4a4",
        "fc_1280_1000",
        "dw3_c960_b16_w6a6",
        "dw5_c17_o1",
    ]
    idx = [i for i, (name, _) in enumerate(CASES) if name in names]
    assert len(idx) == len(names)
    batch = run([CASES[i][1] for i in idx], DEFAULT_HW)
    assert torch.equal(batch.counters, default_batch.counters[idx])
    assert torch.equal(batch.tiles, default_batch.tiles[idx])
    assert torch.equal(batch.order_index, default_batch.order_index[idx])


COMPILE_FOR_GPU = """
import os
os.environ["TRITON_INTERPRET"] = "0"
try:
    import triton.backends.nvidia  # noqa: F401
    from triton.backends.compiler import GPUTarget  # noqa: F401
except ImportError as e:
    print(f"SKIP no CUDA backend in triton: {e}")
    raise SystemExit(0) from None
from dnas_kernels.bitfusion import compile_for_gpu
for depthwise in (False, True):
    ptx = compile_for_gpu(depthwise).asm["ptx"]
    assert ".entry _bitfusion_kernel" in ptx
    # fp64 FMA contraction would change the rounding of the energy sums (and so the tie-breaks).
    assert "fma.rn.f64" not in ptx, "fp fusion is not disabled"
print("OK")
"""


@pytest.mark.slow  # two compilations for sm_80 (~9 s)
def test_gpu_path_compiles_without_fp64_fma():
    # The GPU launch, compiled for sm_80 on this machine (no GPU needed to compile).
    out = subprocess.run(
        [sys.executable, "-c", COMPILE_FOR_GPU], capture_output=True, text=True, timeout=300
    )
    if out.returncode == 0 and out.stdout.startswith("SKIP"):
        pytest.skip(out.stdout.strip())
    assert out.returncode == 0 and out.stdout.strip() == "OK", out.stdout + out.stderr


def test_triton_imported_first_is_refused_clearly():
    code = (
        "import os; os.environ.pop('TRITON_INTERPRET', None)\n"
        "import triton, torch\n"
        "from dnas.cost.backend import resolve_backend\n"
        "try:\n"
        "    resolve_backend('triton')\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    if torch.cuda.is_available():
        pytest.skip("a GPU runs the compiled kernel")
    assert "imported before dnas_kernels" in out.stdout, out.stdout + out.stderr
