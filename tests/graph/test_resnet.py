"""ResNet-20 (the second network family of issue 19) through the torch.fx converter."""

from __future__ import annotations

import pytest
import torch

from dnas.graph.convert import convert
from dnas.networks import resnet20


def test_resnet20_has_the_papers_size():
    model = resnet20()
    params = sum(p.numel() for p in model.parameters())
    # He et al.: 0.27 M; the two 1x1 shortcut convs (+BN) add 16*32 + 32*64 + 2*(32 + 64)*2
    assert 270_000 < params < 275_000
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(m.kernel_size == (3, 3) for m in convs) == 19 and len(convs) == 21


def test_resnet20_converts_with_each_stage_tied_by_its_residual_adds():
    model = resnet20(in_channels=1)
    graph = convert(model, torch.randn(1, 1, 32, 32), skips=True)
    layers = {layer.name: layer for layer in graph.layers}
    assert len(layers) == 22  # 19 + 2 shortcut convs + the classifier
    stage_group = {}
    for stage, blocks in enumerate(((0, 1, 2), (3, 4, 5), (6, 7, 8))):
        outs = {layers[f"layers.{b}.conv2"].out_group for b in blocks}
        assert len(outs) == 1, outs  # every block of a stage writes the one group the adds tie
        stage_group[stage] = outs.pop()
    assert stage_group[0] == layers["stem.0"].out_group  # the stem feeds the first identity add
    assert layers["layers.3.shortcut.0"].out_group == stage_group[1]
    assert layers["layers.6.shortcut.0"].out_group == stage_group[2]
    assert len(set(stage_group.values())) == 3
    inner = {layers[f"layers.{b}.conv1"].out_group for b in range(9)}
    assert len(inner) == 9 and not inner & set(stage_group.values())  # each free on its own
    assert not graph.group(stage_group[0]).is_fixed
    assert graph.group(layers["fc"].out_group).is_fixed  # the classes
    # identity blocks may be skipped; the first block of stages 2 and 3 changes shape
    assert len(graph.skips) == 7
    full = graph.largest_choice()
    macs = graph.macs(full)
    # 40.6 M multiply-accumulates at 32x32 (the 3x3 convs, 1x1 shortcuts and classifier)
    assert macs == pytest.approx(40.6e6, rel=0.01)


def test_dnas_convert_is_the_converter_and_import_dnas_stays_lean():
    import subprocess
    import sys

    import dnas
    from dnas.graph.convert import convert as converter

    assert dnas.convert is converter
    code = "import sys, dnas; assert 'torch' not in sys.modules, 'torch imported'"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
