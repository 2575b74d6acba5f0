"""The integer export of a converted network's child: from its integers alone it computes what the
trained child computes, and it holds no code."""

from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dnas.errors import DnasError
from dnas.export.graph import FUNCTIONS, export_graph_integer, reference_forward_graph
from dnas.export.integer import load_safetensors, save_safetensors
from dnas.graph.supernet import searchable
from dnas.networks import resnet20
from tests.graph.test_convert import TinyNet, TinyResNet
from tests.graph.test_graph_supernet import random_choice, randomise_batch_norms

NETWORKS = {
    "tiny": (TinyNet, (3, 16, 16), {"kernels": {3: (3, 5)}}),
    "tiny_resnet": (TinyResNet, (3, 16, 16), {"skips": True}),
    "resnet20": (lambda: resnet20(in_channels=1), (1, 16, 16), {"skips": True}),
}


@pytest.mark.parametrize("net", sorted(NETWORKS))
@pytest.mark.parametrize("seed", [0, 1])
def test_the_integer_export_computes_what_the_child_computes(net, seed, tmp_path):
    make, shape, kwargs = NETWORKS[net]
    torch.manual_seed(seed)
    model = make()
    randomise_batch_norms(model, seed)
    supernet = searchable(model, torch.randn(2, *shape), w_bits=(4, 8), a_bits=(4, 8), **kwargs)
    child = supernet.child(random_choice(supernet.graph, random.Random(seed))).eval()
    exported = export_graph_integer(child, meta={"note": "test"})
    back = load_safetensors(save_safetensors(exported, tmp_path / "m.safetensors"))
    assert back.graph == exported.graph and back.meta["note"] == "test"
    x = torch.randn(256, *shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = child(x)
    got = reference_forward_graph(back, x)
    assert got.shape == want.shape
    # the same integers: logits agree to float rounding (an activation on a rounding boundary can
    # flip one level), so the median difference is tiny and the classes nearly all agree
    diff = (got - want).abs()
    assert float(diff.median()) < 1e-4 * float(want.abs().max()) + 1e-5
    # (untrained random networks have near-tied logits: a broken export agrees on ~10 %)
    assert float((got.argmax(1) == want.argmax(1)).float().mean()) >= 0.97
    # batch norms directly after a layer were folded into it (only layers and no BN ops left)
    kinds = {op["op"] for op in back.graph}
    assert "affine" not in kinds and {"input", "layer", "output"} <= kinds
    # what the file names is data: functions from the fixed list, references to earlier nodes
    text = json.dumps(back.graph)
    assert all(op["fn"] in FUNCTIONS for op in back.graph if op["op"] == "call")
    assert "lambda" not in text and "<" not in text
    ints = [v for k, v in back.tensors.items() if k.endswith(".weight_int")]
    assert ints and all(v.dtype == torch.int8 for v in ints)


class PreActBlock(nn.Module):
    """A batch norm that is not directly after a layer (pre-activation), a max pool, a view."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        h = h + self.conv2(F.relu(self.bn(h)))  # bn reads a value two ops read
        h = self.pool(h)
        return self.fc(h.view(h.size(0), -1))


def test_an_unfolded_batch_norm_is_an_affine_op_and_views_follow_sizes(tmp_path):
    torch.manual_seed(0)
    model = PreActBlock()
    randomise_batch_norms(model, 3)
    supernet = searchable(model, torch.randn(2, 3, 8, 8), w_bits=(8,), a_bits=(8,))
    child = supernet.child(supernet.graph.largest_choice()).eval()
    exported = export_graph_integer(child)
    assert [op["op"] for op in exported.graph].count("affine") == 1
    x = torch.randn(64, 3, 8, 8)
    with torch.no_grad():
        want = child(x)
    got = reference_forward_graph(exported, x)
    assert float((got - want).abs().max()) < 1e-3 * float(want.abs().max())


class Unlisted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.logsumexp(self.conv(x), dim=(2, 3)))


def test_an_op_outside_the_list_is_refused_naming_it():
    with pytest.warns(UserWarning):
        supernet = searchable(Unlisted(), torch.randn(2, 3, 8, 8), w_bits=(8,), a_bits=(8,))
    child = supernet.child(supernet.graph.largest_choice())
    with pytest.raises(DnasError, match="logsumexp is not in the integer export's op list"):
        export_graph_integer(child)


@pytest.mark.parametrize("net", [*sorted(NETWORKS), "preact"])
def test_the_onnx_of_a_converted_network_runs_as_its_integers(net, tmp_path):
    """onnxruntime on the ONNX (QuantizeLinear/DequantizeLinear layers, the network's own ops)
    gives the integer reference's outputs, batch size free."""
    np = pytest.importorskip("numpy")
    ort = pytest.importorskip("onnxruntime")
    from dnas.export.onnx import graph_to_onnx, save_onnx

    if net == "preact":
        make, shape, kwargs = PreActBlock, (3, 8, 8), {}
    else:
        make, shape, kwargs = NETWORKS[net]
    torch.manual_seed(0)
    model = make()
    randomise_batch_norms(model, 0)
    supernet = searchable(model, torch.randn(2, *shape), w_bits=(4, 8), a_bits=(4, 8), **kwargs)
    child = supernet.child(random_choice(supernet.graph, random.Random(1))).eval()
    exported = export_graph_integer(child)
    path = save_onnx(
        graph_to_onnx(exported, shape, supernet.graph.num_classes), tmp_path / "m.onnx"
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 128):
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch))
        got = sess.run(None, {"input": x.numpy()})[0]
        want = reference_forward_graph(exported, x).numpy()
        assert got.shape == want.shape
        # the same integers: an activation exactly on a rounding boundary may land one level
        # apart in float32, so most logits agree to rounding and nearly every class agrees
        diff = np.abs(got - want)
        assert float(np.median(diff)) < 1e-4 * float(np.abs(want).max()) + 1e-6
        if batch > 1:
            assert float((got.argmax(1) == want.argmax(1)).mean()) >= 0.97
