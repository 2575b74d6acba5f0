"""BitFusion cost of a layer graph: equal to the MobileNetV2 cost path, and defined for a
converted network."""

from __future__ import annotations

import pytest
import torch

from dnas.cli.cost import cost_arch
from dnas.cost.graph import graph_cost
from dnas.cost.hardware import load_hardware
from dnas.graph import choice_of_arch, graph_of_space
from dnas.graph.convert import convert
from dnas.networks import resnet20
from dnas.space import load_space


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_graph_of_a_space_costs_what_the_space_costs(seed):
    """Layer by layer, the graph's BitFusion cost equals dnas-cost arch's (the table's) exactly."""
    space = load_space("fmnist_mbv2")
    hw = load_hardware("bitfusion")
    arch = space.random_arch(seed)
    rows, total = graph_cost(graph_of_space(space), choice_of_arch(space, arch), hw, "torch")
    ref_rows, ref_total = cost_arch(space, arch, hw, "torch")
    assert [r["latency_ms"] for r in rows] == [r["latency_ms"] for r in ref_rows]
    assert [r["energy_mj"] for r in rows] == [r["energy_mj"] for r in ref_rows]
    assert [r["cycles"] for r in rows] == [r["cycles"] for r in ref_rows]
    assert total["latency_ms"] == ref_total["latency_ms"]  # the same additions, same order
    assert total["energy_mj"] == pytest.approx(ref_total["energy_mj"], rel=1e-12)
    assert total["macs"] == ref_total["macs"]


def test_a_converted_resnet20_is_costed_with_its_bitops_and_size():
    graph = convert(resnet20(), torch.randn(1, 3, 32, 32), w_bits=(4, 8), a_bits=(4, 8))
    big, small = graph.largest_choice(), graph.smallest_choice()
    rows, total = graph_cost(graph, big, backend="torch")
    assert len(rows) == 22 and all(r["latency_ms"] > 0 for r in rows)
    assert total["macs"] == graph.macs(big) and total["bitops"] == graph.bitops(big)
    assert total["size_bits"] == graph.size_bits(big)
    assert total["bitops"] == 64 * total["macs"]  # every layer at 8/8 bits
    _, low = graph_cost(graph, small, backend="torch")
    # half the widths (the searchable groups) and 4/4 bits: cheaper on BitFusion, though by far
    # less than the MACs: at 8-32 channels its array is mostly idle at any width
    assert low["latency_ms"] < total["latency_ms"] and low["energy_mj"] < total["energy_mj"]
    assert low["bitops"] == 16 * low["macs"] and low["macs"] < total["macs"] / 3


def test_the_readme_example_prints_what_the_readme_says(capsys):
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("Its BitFusion cost, from Python", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.strip().splitlines()
    said = re.search(r"prints `([^`]+)` and `([^`]+)`", section)
    assert printed == [said.group(1), said.group(2)]
