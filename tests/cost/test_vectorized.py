"""The vectorized PyTorch backend equals the scalar oracle, counter for counter."""

from __future__ import annotations

import random

import pytest
import torch

from dnas.cost.backend import evaluate, resolve_backend
from dnas.cost.batch import COUNTER_COLUMNS
from dnas.cost.hardware import BitFusionConfig
from dnas.cost.layer import LayerShape
from dnas.cost.oracle import layer_cost
from tests.conftest import EXAMPLES


def random_layers(seed: int, n: int) -> list[LayerShape]:
    rng = random.Random(seed)
    layers = []
    for _ in range(n):
        wb, ab = rng.randint(2, 8), rng.randint(2, 8)
        o, s, b = rng.choice([1, 3, 7, 14, 28]), rng.choice([1, 2]), rng.choice([1, 2, 16])
        if rng.random() < 0.4:
            c = rng.choice([8, 24, 72, 144, 200])
            layers.append(LayerShape(c, c, rng.choice([3, 5, 7]), s, o, b, wb, ab, groups=c))
        else:
            ic = rng.choice([3, 16, 40, 96, 320])
            oc = rng.choice([10, 32, 100, 320, 1000])
            k = rng.choice([1, 1, 3])
            layers.append(LayerShape(ic, oc, k, s, o, b, wb, ab, im2col=rng.random() < 0.15))
    return layers


def assert_matches_oracle(layers, hw):
    res = evaluate(layers, hw, backend="torch")
    energy = res.energies_nj(hw)
    for i, layer in enumerate(layers):
        ref = layer_cost(layer, hw)
        got = dict(zip(COUNTER_COLUMNS, res.counters[i].tolist()))
        assert got == {k: getattr(ref, k) for k in COUNTER_COLUMNS}, layer
        assert res.tiling(i) == ref.best_tiling, layer
        assert res.loop_order(i) == ref.best_loop_order, layer
        # Same integers, same summation order: bit-identical energies.
        assert energy["total"][i].item() == ref.total_energy_nJ
        assert energy["sram"][i].item() == ref.sram_energy_nJ
        assert res.latency_ms(hw)[i].item() == ref.latency_ms


def test_examples_match_oracle():
    assert_matches_oracle([layer for layer, _ in EXAMPLES], BitFusionConfig())


def test_random_layers_match_oracle():
    assert_matches_oracle(random_layers(0, 40), BitFusionConfig())


def test_other_hardware_matches_oracle():
    hw = BitFusionConfig(rows_n=8, cols_m=16, dw_lanes=4, ibuf_bytes=16384, dram_bits_per_cycle=64)
    assert_matches_oracle(random_layers(1, 20), hw)


def test_infeasible_rows_marked():
    # 512-bit weight, 32-bit input, 1024-bit output tiles: only the 1x1x1 2-bit layer fits.
    hw = BitFusionConfig(wbuf_bytes=128, ibuf_bytes=8, obuf_bytes=256)
    layers = [LayerShape(8, 8, 1, 1, 4, 1, 8, 8), LayerShape(1, 1, 1, 1, 1, 1, 2, 2)]
    res = evaluate(layers, hw, backend="torch")
    assert res.infeasible.tolist() == [True, False]
    assert (res.counters[0] == -1).all()


def test_chunking_does_not_change_results():
    layers = random_layers(2, 12)
    a = evaluate(layers, backend="torch", chunk=5)
    b = evaluate(layers, backend="torch", chunk=1000)
    assert torch.equal(a.counters, b.counters)
    assert torch.equal(a.order_index, b.order_index)


def test_bits_above_pmax_and_unknown_backend():
    with pytest.raises(ValueError, match="pmax_bits"):
        evaluate([LayerShape(8, 8, 1, 1, 4, 1, 9, 8)])
    with pytest.raises(ValueError, match="allowed"):
        resolve_backend("cuda")


def test_auto_backend_is_torch_without_gpu():
    if not torch.cuda.is_available():
        assert resolve_backend("auto") == "torch"
