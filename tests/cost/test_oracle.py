"""The scalar oracle reproduces the public BitFusion simulator's worked examples exactly."""

from __future__ import annotations

import json

import pytest

from dnas.cost.batch import COUNTER_COLUMNS
from dnas.cost.hardware import BitFusionConfig
from dnas.cost.layer import LayerShape
from dnas.cost.oracle import layer_cost

INT_FIELDS = (*COUNTER_COLUMNS, "perf_factor")
FLOAT_FIELDS = (
    "latency_ms",
    "total_energy_nJ",
    "core_energy_nJ",
    "sram_energy_nJ",
    "dram_energy_nJ",
)


def test_oracle_matches_simulator_examples(example):
    layer, row = example
    cost = layer_cost(layer)
    for f in INT_FIELDS:
        assert getattr(cost, f) == int(row[f]), f
    for f in FLOAT_FIELDS:
        assert getattr(cost, f) == pytest.approx(float(row[f]), rel=1e-9, abs=0), f
    assert json.loads(cost.tiling_json) == json.loads(row["best_tiling"])
    assert cost.loop_order_str == row["best_loop_order"]


def test_cycles_split_and_energy_sum(example):
    layer, _ = example
    c = layer_cost(layer)
    assert c.cycles == c.compute_cycles + c.mem_stall_cycles
    assert c.total_energy_nJ == pytest.approx(
        c.core_energy_nJ + c.sram_energy_nJ + c.dram_energy_nJ, rel=1e-12
    )


def test_lower_bits_never_slower_to_compute():
    hw = BitFusionConfig()
    base = dict(in_channels=256, out_channels=128, kernel_size=1, stride=1, output_h=14, batch=1)
    c8 = layer_cost(LayerShape(**base, w_bits=8, a_bits=8), hw)
    c4 = layer_cost(LayerShape(**base, w_bits=4, a_bits=4), hw)
    c2 = layer_cost(LayerShape(**base, w_bits=2, a_bits=2), hw)
    assert c8.compute_cycles == 4 * c4.compute_cycles == 16 * c2.compute_cycles
    assert c8.total_energy_nJ > c4.total_energy_nJ > c2.total_energy_nJ


def test_six_bits_compute_like_eight_but_move_less():
    base = dict(in_channels=96, out_channels=64, kernel_size=1, stride=1, output_h=14, batch=1)
    c8 = layer_cost(LayerShape(**base, w_bits=8, a_bits=8))
    c6 = layer_cost(LayerShape(**base, w_bits=6, a_bits=6))
    assert c6.perf_factor == c8.perf_factor == 1
    assert c6.compute_cycles == c8.compute_cycles
    assert c6.dram_read_bits < c8.dram_read_bits


def test_depthwise_compute_leading_term():
    # C=96 channels, 3x3, 14x14 outputs, 8 bits: T*b*o^2*K^2*ceil(c/8) summed over tiles equals
    # o^2 * K^2 * ceil(C/8) when every channel tile is a multiple of 8.
    layer = LayerShape(96, 96, 3, 1, 14, 1, 8, 8, groups=96)
    c = layer_cost(layer)
    assert c.compute_cycles == 14 * 14 * 9 * 12
    assert set(c.best_tiling) == {"B/b", "OW/ow", "OH/oh", "C/c"}
    # 4-bit operands fuse 4 lanes: a quarter of the compute.
    c4 = layer_cost(LayerShape(96, 96, 3, 1, 14, 1, 4, 4, groups=96))
    assert c4.compute_cycles == c.compute_cycles // 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(groups=2), "depthwise"),
        (dict(in_channels=0), "in_channels"),
        (dict(w_bits=3.5), "w_bits"),
    ],
)
def test_layer_validation(kwargs, match):
    base = dict(
        in_channels=8,
        out_channels=8,
        kernel_size=3,
        stride=1,
        output_h=4,
        batch=1,
        w_bits=8,
        a_bits=8,
    )
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        LayerShape(**base)


def test_bits_above_pmax_rejected():
    with pytest.raises(ValueError, match="pmax_bits"):
        layer_cost(LayerShape(8, 8, 1, 1, 4, 1, 16, 8))


def test_buffers_too_small_named():
    hw = BitFusionConfig(wbuf_bytes=1, ibuf_bytes=1, obuf_bytes=1)
    with pytest.raises(ValueError, match="no tiling"):
        layer_cost(LayerShape(8, 8, 1, 1, 4, 1, 8, 8), hw)


@pytest.mark.parametrize(
    "field, value",
    [
        ("freq_mhz", float("nan")),
        ("freq_mhz", float("inf")),
        ("e_core_nj_per_cycle", float("inf")),
        ("e_core_nj_per_cycle", 1e308),
        ("e_dram_nj_per_bit", float("nan")),
        ("e_dram_nj_per_bit", -1.0),
    ],
)
def test_hardware_constants_that_give_no_finite_cost_are_refused(field, value):
    from dnas.cost.hardware import BitFusionConfig
    from dnas.errors import DnasError

    with pytest.raises(DnasError, match=f"hardware.{field} must be"):
        BitFusionConfig.from_dict({**BitFusionConfig().to_dict(), field: value})
    BitFusionConfig.from_dict({**BitFusionConfig().to_dict(), field: 2.0})
