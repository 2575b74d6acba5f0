"""The supernet of a converted network: one-hot supernet = its child, gradients, expected costs."""

from __future__ import annotations

import copy
import random
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dnas.graph import GraphChoice, LayerGraph
from dnas.graph.convert import ConvertWarning, convert, trace_network
from dnas.graph.expected import expected_bitops, expected_size_bits
from dnas.graph.supernet import GraphRelaxed, GraphSuperNet, SearchLayer, SkipGate, searchable
from dnas.networks import resnet20
from tests.graph.test_convert import TinyNet, TinyResNet


def random_choice(graph: LayerGraph, rng: random.Random, skip_p: float = 0.5) -> GraphChoice:
    return graph.choice(
        widths={g.name: rng.choice(g.widths) for g in graph.groups},
        kernels={layer.name: rng.choice(layer.kernels) for layer in graph.layers},
        bits={
            layer.name: (rng.choice(layer.w_bits), rng.choice(layer.a_bits))
            for layer in graph.layers
        },
        skipped=[s.name for s in graph.skips if rng.random() < skip_p],
    )


def randomise_batch_norms(net: nn.Module, seed: int) -> None:
    """Running statistics and affine parameters far from their defaults, so that slicing the
    wrong channel would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.3)


NETWORKS = {
    "tiny": (TinyNet, (2, 3, 16, 16), {"kernels": {3: (3, 5)}}),
    "tiny_resnet": (TinyResNet, (2, 3, 16, 16), {"skips": True}),
    "resnet20": (lambda: resnet20(in_channels=1), (2, 1, 16, 16), {"skips": True}),
}


@pytest.fixture(scope="module", params=sorted(NETWORKS))
def built(request):
    make, shape, kwargs = NETWORKS[request.param]
    torch.manual_seed(0)
    model = make()
    randomise_batch_norms(model, 1)
    x = torch.randn(*shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvertWarning)
        supernet = searchable(model, x, w_bits=(2, 4, 8), a_bits=(2, 4, 8), **kwargs)
    return model, x, supernet


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_one_hot_supernet_computes_what_its_child_computes(built, seed):
    _, x, supernet = built
    graph = supernet.graph
    choice = random_choice(graph, random.Random(seed))
    if seed == 0:
        choice = graph.smallest_choice()
    child = supernet.child(choice)
    supernet.set_mode("fixed", choice)
    for training in (False, True):  # running statistics, then the batch's own
        supernet.train(training)
        child.train(training)
        with torch.no_grad():
            want = supernet(x)
            got = child(x)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # and it trains: no in-place op of the network overwrites a value autograd still needs
    # (a skipped block's ReLU(inplace=True) acts on the identity the add used to copy)
    child.train()
    child(x).square().mean().backward()
    assert all(p.grad is not None for p in child.parameters() if p.requires_grad)
    supernet.set_mode("gumbel")
    supernet.train()


def test_the_child_runs_exactly_the_graphs_layer_shapes(built):
    _, x, supernet = built
    graph = supernet.graph
    choice = random_choice(graph, random.Random(7))
    child = supernet.child(choice)
    seen = {}
    for name, m in child.named_modules():
        if isinstance(m, SearchLayer):
            m.register_forward_hook(
                lambda mod, inp, out, name=name: seen.__setitem__(name, (mod, inp[0], out))
            )
    with torch.no_grad():
        child.eval()(x)
    shapes = graph.layer_shapes(choice)
    assert set(seen) == {s.name for s in shapes}  # skipped layers are gone from the child
    names_in_child = {n for n, m in child.named_modules() if isinstance(m, SearchLayer)}
    assert names_in_child == set(seen)
    for s in shapes:
        mod, inp, out = seen[s.name]
        assert inp.shape[1] == s.in_channels and out.shape[1] == s.out_channels, s.name
        assert mod.weight.numel() == s.weights, s.name
        assert (mod.wq.bits.bits, mod.aq.bits.bits) == ((s.w_bits,), (s.a_bits,)), s.name
        if s.kernel > 1:
            assert mod.weight.shape[-1] == s.kernel and out.shape[2:] == (s.output_h, s.output_w)
    assert not any(isinstance(m, SkipGate) for m in child.modules())


def test_gradients_reach_every_architecture_parameter(built):
    _, x, supernet = built
    supernet.set_mode("gumbel")
    supernet.zero_grad()
    torch.manual_seed(3)
    # Push θ and β off the largest option, so the fractional mask/bits have two neighbours.
    with torch.no_grad():
        for p in supernet.arch_parameters():
            if p.dim() == 0:
                p.sub_(0.4)
    out = supernet(x)
    loss = F.cross_entropy(out, torch.zeros(len(x), dtype=torch.long))
    loss = loss + 1e-9 * expected_bitops(supernet.graph, supernet.relaxed())
    loss.backward()
    missing = [
        n
        for n, p in supernet.named_parameters()
        if n.split(".")[-1].startswith("arch_")
        and (p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0)
    ]
    # A kernel or skip sample's logits get their gradient through the straight-through sample:
    # every parameter must have one.
    assert not missing, missing
    with torch.no_grad():
        for p in supernet.arch_parameters():
            if p.dim() == 0:
                p.add_(0.4)


def one_hot_relaxed(graph: LayerGraph, choice: GraphChoice) -> GraphRelaxed:
    return GraphRelaxed(
        width_index={
            g.name: torch.tensor(float(g.widths.index(choice.widths[g.name])))
            for g in graph.groups
            if not g.is_fixed
        },
        bit_index={
            layer.name: tuple(
                torch.tensor(float(opts.index(b)))
                for opts, b in zip(
                    (layer.w_bits, layer.a_bits),
                    choice.bits.get(layer.name, (layer.w_bits[-1], layer.a_bits[-1])),
                )
            )
            for layer in graph.layers
        },
        kernel_probs={
            layer.name: F.one_hot(
                torch.tensor(
                    layer.kernels.index(choice.kernels.get(layer.name, layer.kernels[-1]))
                ),
                len(layer.kernels),
            ).float()
            for layer in graph.layers
            if len(layer.kernels) > 1
        },
        keep_probs={
            s.name: torch.tensor(0.0 if s.name in choice.skipped else 1.0) for s in graph.skips
        },
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_expected_costs_at_a_discrete_choice_are_the_exact_costs(built, seed):
    graph = built[2].graph
    choice = random_choice(graph, random.Random(seed))
    relaxed = one_hot_relaxed(graph, choice)
    assert float(expected_bitops(graph, relaxed)) == pytest.approx(graph.bitops(choice), rel=1e-6)
    assert float(expected_size_bits(graph, relaxed)) == pytest.approx(
        graph.size_bits(choice), rel=1e-6
    )


def test_expected_bitops_interpolates_a_width_linearly(built):
    """Halfway between two widths of a group, the expected BitOps is halfway between theirs
    when only that group moves (every layer's cost is linear in each width it reads once)."""
    graph = built[2].graph
    group = next(g for g in graph.groups if not g.is_fixed and len(g.widths) >= 2)
    lo = graph.choice(widths={group.name: group.widths[0]})
    hi = graph.choice(widths={group.name: group.widths[1]})
    relaxed = one_hot_relaxed(graph, lo)
    theta = torch.tensor(0.5, requires_grad=True)
    relaxed.width_index[group.name] = theta
    value = expected_bitops(graph, relaxed)
    value.backward()
    value = value.detach()
    # Layers reading the group twice (or reading and writing it) are quadratic: check a layer sum
    # against the exact costs only where no layer does both.
    quadratic = any(
        layer.in_groups.count(group.name) + (layer.out_group == group.name) > 1
        and not layer.depthwise
        for layer in graph.layers
    )
    b_lo, b_hi = graph.bitops(lo), graph.bitops(hi)
    if not quadratic:
        assert float(value) == pytest.approx((b_lo + b_hi) / 2, rel=1e-6)
        assert float(theta.grad) == pytest.approx(b_hi - b_lo, rel=1e-5)
    else:
        assert b_lo < float(value) < b_hi and float(theta.grad) > 0


def test_modes_derive_and_last_choice(built):
    _, x, supernet = built
    graph = supernet.graph
    derived = supernet.derive()
    # θ and β start at the largest option; kernel and skip logits uniform (argmax: the first)
    assert dict(derived.widths) == {g.name: g.channels for g in graph.groups}
    assert all(derived.bits[n.name] == (n.w_bits[-1], n.a_bits[-1]) for n in graph.layers)
    assert all(derived.kernels[n.name] == n.kernels[0] for n in graph.layers)
    assert not derived.skipped
    supernet.set_mode("uniform")
    torch.manual_seed(0)
    seen = set()
    with torch.no_grad():
        for _ in range(4):
            supernet(x)
            seen.add(supernet.last_choice())
    assert len(seen) > 1  # every forward draws anew
    choice = random_choice(graph, random.Random(5))
    supernet.set_mode("fixed", choice)
    with torch.no_grad():
        supernet(x)
    last = supernet.last_choice()
    assert dict(last.widths) == dict(choice.widths) and last.skipped == choice.skipped
    kept = [n.name for n in graph.layers if n.name not in graph.skipped_layers(choice)]
    assert all(
        last.bits[n] == choice.bits[n] and last.kernels[n] == choice.kernels[n] for n in kept
    )
    supernet.set_mode("gumbel")
    with pytest.raises(ValueError, match="needs a GraphChoice"):
        supernet.set_mode("fixed")


def test_building_leaves_the_users_model_untouched():
    torch.manual_seed(0)
    model = TinyNet()
    before = copy.deepcopy(model.state_dict())
    supernet = searchable(model, torch.randn(2, 3, 16, 16), kernels={3: (3, 5)})
    with torch.no_grad():
        for p in supernet.parameters():
            p.add_(1.0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(type(m) is not SearchLayer for m in model.modules())


def test_quantizer_signs_follow_the_example_input():
    torch.manual_seed(0)
    supernet = searchable(TinyNet(), torch.randn(2, 3, 16, 16))
    layers = {op.name: op for op in supernet.search_layers()}
    assert layers["stem"].aq.signed  # the normalised image is signed
    assert not layers["conv_a"].aq.signed  # after F.relu
    assert not layers["pw"].aq.signed  # after the depthwise conv's ReLU
    assert layers["fuse"].aq.signed  # the concatenation of two convs' raw outputs
    positive = searchable(TinyNet(), torch.rand(2, 3, 16, 16))
    assert not next(positive.search_layers()).aq.signed


class ChannelMean(nn.Module):
    """conv → x * x.mean(1, keepdim) (a channel attention): the mean needs every channel."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x))
        h = h * h.mean(1, keepdim=True)
        return self.fc(h.mean((2, 3)))


class ChannelSoftmax(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.softmax(self.conv(x), dim=1).mean((2, 3)))


@pytest.mark.parametrize("net", [ChannelMean, ChannelSoftmax])
def test_an_op_over_the_channels_fixes_the_width_it_reads(net):
    with pytest.warns(ConvertWarning, match="over the channels"):
        graph = convert(net(), torch.randn(1, 3, 8, 8))
    assert graph.group("conv").is_fixed


def test_a_softmax_over_space_keeps_the_width_free():
    class SpatialSoftmax(ChannelSoftmax):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(F.softmax(self.conv(x), dim=-1).mean((2, 3)))

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvertWarning)
        graph = convert(SpatialSoftmax(), torch.randn(1, 3, 8, 8))
    assert not graph.group("conv").is_fixed


def test_trace_network_names_skip_adds_and_node_groups():
    traced = trace_network(TinyResNet(), torch.randn(1, 3, 16, 16), skips=True)
    nodes = {n.name: n for n in traced.module.graph.nodes}
    assert set(traced.skip_adds) == {s.name for s in traced.graph.skips}
    for add, branch in traced.skip_adds.values():
        assert nodes[branch] in nodes[add].all_input_nodes
    conv1 = next(n for n in nodes.values() if n.op == "call_module" and n.target == "conv1")
    (segments, factor) = traced.node_groups[conv1.name]
    assert factor == 1 and segments == ((traced.graph.layer("conv1").out_group, 16),)


def test_graph_supernet_is_a_module_with_the_graphs_choices():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    traced = trace_network(TinyResNet(), x, skips=True)
    supernet = GraphSuperNet(traced, x, tau=2.0)
    graph = traced.graph
    n_widths = sum(not g.is_fixed for g in graph.groups)
    assert len(list(supernet.widths)) == n_widths
    assert len(supernet.arch_parameters()) == n_widths + 2 * len(graph.layers) + len(graph.skips)
    names = {n for n, _ in supernet.named_parameters()}
    assert {n for n, _ in supernet.named_parameters() if "arch_" in n} == {
        n for n in names if n.rsplit(".", 1)[-1].startswith("arch_")
    }
    supernet.tau = 0.7
    assert all(supernet.skip_gate(s.name).tau == 0.7 for s in graph.skips)
