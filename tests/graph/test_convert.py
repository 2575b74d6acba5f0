"""The torch.fx converter: groups, shapes and costs of hand-written networks against what runs."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from dnas.graph import GraphChoice, GraphError, LayerGraph, graph_of_space
from dnas.graph.convert import ConvertWarning, convert, width_choices
from dnas.space import SearchSpace, load_space

fx.wrap("scramble")


def scramble(x: torch.Tensor) -> torch.Tensor:
    """A custom op the converter does not know (it rolls the channels)."""
    return x.roll(1, dims=1)


# ------------------------------------------------------------------------------- networks
class TinyNet(nn.Module):
    """A residual add, a depthwise conv, a concatenation, BN, ReLU, adaptive pool, flatten → FC.

    stem 3→16 /2 → x = x + conv_a(x) → dw(x) → cat(pw(dw) 24, side(x) 8) → fuse 32→32 /2
    → adaptive avg pool 2×2 → flatten (32·4) → fc 10.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 2, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        self.conv_a = nn.Conv2d(16, 16, 3, 1, 1, bias=False)
        self.bn_a = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False)
        self.dw_bn = nn.BatchNorm2d(16)
        self.pw = nn.Conv2d(16, 24, 1)
        self.side = nn.Conv2d(16, 8, 1)
        self.fuse = nn.Conv2d(32, 32, 3, 2, 1, bias=False)
        self.fuse_bn = nn.BatchNorm2d(32)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(32 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(x)))
        x = x + F.relu(self.bn_a(self.conv_a(x)))
        h = F.relu(self.dw_bn(self.dw(x)))
        y = torch.cat([self.pw(h), self.side(x)], dim=1)
        y = F.relu(self.fuse_bn(self.fuse(y)))
        return self.fc(torch.flatten(self.pool(y), 1))


class BasicBlock(nn.Module):
    """He et al.'s CIFAR basic block, with a 1×1 conv shortcut where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class TinyResNet(nn.Module):
    """A ResNet-20-style stack with one block per stage (16, 32, 64 channels)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = nn.Sequential(BasicBlock(16, 16, 1))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2))
        self.layer3 = nn.Sequential(BasicBlock(32, 64, 2))
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


class TwoConvs(nn.Module):
    """conv1 → ``op`` → conv2 → mean → fc: ``op`` is what the converter must follow."""

    def __init__(self, op) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.op = op
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1)
        self.fc = nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv2(self.op(F.relu(self.conv1(x)))).mean((2, 3)))


class Scramble(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return scramble(x)


class Transposed(nn.Module):
    """Channels moved out of dimension 1 and back: the converter follows neither move."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 3).transpose(1, 3)


class DataDependent(nn.Module):
    """Untraceable: Python control flow on a tensor value."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x


# -------------------------------------------------------------------------------- helpers
def hooked_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[nn.Module, tuple, tuple]]:
    """``name → (module, input shape, output shape)`` of every Conv2d and Linear as it runs."""
    seen: dict[str, tuple[nn.Module, tuple, tuple]] = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):

            def hook(mod, inputs, output, name=name):
                seen[name] = (mod, tuple(inputs[0].shape), tuple(output.shape))

            handles.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model.eval()(x)
    for h in handles:
        h.remove()
    return seen


def hand_macs(module: nn.Module, out_shape: tuple) -> int:
    """Per-image MACs of a hooked layer: output elements × (in/groups · k_h · k_w)."""
    per_output = module.weight[0].numel()  # (in / groups) · k_h · k_w, or in_features
    return math.prod(out_shape[1:]) * per_output


def writers(graph: LayerGraph) -> dict[str, set[str]]:
    """``group → the layers writing it``."""
    out: dict[str, set[str]] = {}
    for layer in graph.layers:
        out.setdefault(layer.out_group, set()).add(layer.name)
    return out


def own_choice(graph: LayerGraph, model: nn.Module) -> GraphChoice:
    """The largest widths, and each layer's own kernel (the largest may be a larger choice)."""
    modules = dict(model.named_modules())
    return graph.choice(
        kernels={n.name: modules[n.name].kernel_size[0] for n in graph.layers if n.kind == "conv"}
    )


def assert_shapes_match(graph: LayerGraph, model: nn.Module, x: torch.Tensor) -> None:
    seen = hooked_shapes(model, x)
    shapes = graph.layer_shapes(own_choice(graph, model))
    assert {s.name for s in shapes} == set(seen)
    for s in shapes:
        mod, in_shape, out_shape = seen[s.name]
        assert s.in_channels == in_shape[1], s.name
        assert s.out_channels == out_shape[1], s.name
        if isinstance(mod, nn.Conv2d):
            assert (s.output_h, s.output_w) == out_shape[2:], s.name
            assert (s.kernel, s.kernel) == mod.kernel_size and (s.stride, s.stride) == mod.stride
            assert s.groups == mod.groups, s.name
        else:
            assert (s.output_h, s.output_w, s.kernel, s.groups) == (1, 1, 1, 1)


# ------------------------------------------------------------------------------ TinyNet
@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = TinyNet()
    x = torch.randn(2, 3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing in TinyNet is beyond the converter
        graph = convert(model, x, kernels={3: (3, 5)})
    return model, x, graph


def test_tiny_groups(tiny):
    _, _, g = tiny
    # The residual add ties stem and conv_a; the depthwise conv writes the group it reads.
    assert writers(g) == {
        "stem": {"stem", "conv_a", "dw"},
        "pw": {"pw"},
        "side": {"side"},
        "fuse": {"fuse"},
        "fc": {"fc"},
    }
    ins = {layer.name: layer.in_groups for layer in g.layers}
    assert ins == {
        "stem": ("input",),
        "conv_a": ("stem",),
        "dw": ("stem",),
        "pw": ("stem",),
        "side": ("stem",),
        "fuse": ("pw", "side"),  # the concatenation, in channel order
        "fc": ("fuse",),
    }
    fixed = {grp.name: grp.fixed_by for grp in g.groups if grp.is_fixed}
    assert fixed == {"input": "network input", "fc": "network output"}
    assert g.group("stem").widths == (8, 12, 16) and g.group("pw").widths == (12, 18, 24)
    assert g.layer("fc").in_factor == 4  # 32 channels × the 2×2 pooled map
    assert (g.input_shape, g.num_classes, g.input_group) == ((3, 16, 16), 10, "input")
    assert [layer.name for layer in g.layers if layer.im2col] == ["stem"]
    norms = {layer.name: layer.norm for layer in g.layers}
    assert norms == {
        "stem": "stem_bn",
        "conv_a": "bn_a",
        "dw": "dw_bn",
        "pw": None,
        "side": None,
        "fuse": "fuse_bn",
        "fc": None,
    }
    assert not g.skips  # skips=False is the default


def test_tiny_kernel_choices_only_for_depthwise(tiny):
    _, _, g = tiny
    kernels = {layer.name: layer.kernels for layer in g.layers}
    assert kernels["dw"] == (3, 5)
    assert kernels["stem"] == kernels["conv_a"] == kernels["fuse"] == (3,)
    assert kernels["pw"] == kernels["side"] == kernels["fc"] == (1,)


def test_tiny_shapes_equal_the_running_layers(tiny):
    model, x, g = tiny
    assert_shapes_match(g, model, x)


def test_tiny_costs_equal_a_hand_count_from_the_real_layers(tiny):
    model, x, g = tiny
    seen = hooked_shapes(model, x)
    layer_bits = dict(zip(seen, [(8, 8), (4, 2), (2, 4), (8, 4), (2, 2), (4, 8), (8, 2)]))
    choice = g.choice(kernels={"dw": 3}, bits=layer_bits)
    macs = {name: hand_macs(mod, out) for name, (mod, _, out) in seen.items()}
    assert g.macs(choice) == sum(macs.values())
    assert g.bitops(choice) == sum(macs[n] * w * a for n, (w, a) in layer_bits.items())
    # Weights only: the convs' and the fc's biases and every BN are excluded.
    size = sum(seen[n][0].weight.numel() * w for n, (w, _) in layer_bits.items())
    assert g.size_bits(choice) == size
    assert g.size_kib(choice) == size / 8192


def test_tiny_costs_at_a_smaller_choice_hand_counted(tiny):
    _, _, g = tiny
    choice = g.choice(widths={"stem": 8, "pw": 12, "side": 4, "fuse": 16}, kernels={"dw": 5})
    hand = (
        8 * 8 * 9 * 3 * 8  # stem 3→8, 8×8
        + 8 * 8 * 9 * 8 * 8  # conv_a 8→8
        + 8 * 8 * 25 * 8  # dw 8 channels, k 5
        + 8 * 8 * 8 * 12  # pw 8→12
        + 8 * 8 * 8 * 4  # side 8→4
        + 4 * 4 * 9 * (12 + 4) * 16  # fuse reads cat(12, 4), 4×4
        + 16 * 4 * 10  # fc reads 16 channels × 4
    )
    assert g.macs(choice) == hand == 109184


def test_convert_leaves_the_model_as_it_was():
    model = TinyNet().train()
    model.dw_bn.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    convert(model, torch.randn(2, 3, 16, 16))
    assert model.training and not model.dw_bn.training and model.stem_bn.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


# ------------------------------------------------------------------------------- ResNet
def test_resnet_stages_are_tied_by_their_residual_adds():
    model, x = TinyResNet(), torch.randn(1, 3, 16, 16)
    g = convert(model, x, skips=True)
    assert writers(g) == {
        "conv1": {"conv1", "layer1.0.conv2"},  # the identity shortcut of stage 1
        "layer1.0.conv1": {"layer1.0.conv1"},
        "layer2.0.conv1": {"layer2.0.conv1"},
        "layer2.0.conv2": {"layer2.0.conv2", "layer2.0.shortcut.0"},
        "layer3.0.conv1": {"layer3.0.conv1"},
        "layer3.0.conv2": {"layer3.0.conv2", "layer3.0.shortcut.0"},
        "linear": {"linear"},
    }
    assert g.layer("layer2.0.shortcut.0").in_groups == ("conv1",)
    assert g.layer("layer2.0.shortcut.0").norm == "layer2.0.shortcut.1"
    assert g.layer("linear").in_groups == ("layer3.0.conv2",) and g.layer("linear").in_factor == 1
    searchable = [grp.name for grp in g.groups if not grp.is_fixed]
    assert len(searchable) == 6
    # Only the identity-shortcut block can be removed: the others' shortcut convs read more.
    assert [(s.name, s.layers) for s in g.skips] == [
        ("layer1.0", ("layer1.0.conv1", "layer1.0.conv2"))
    ]
    assert_shapes_match(g, model, x)
    seen = hooked_shapes(model, x)
    assert g.macs(g.largest_choice()) == sum(hand_macs(m, o) for m, _, o in seen.values())
    removed = sum(hand_macs(*seen[n][::2]) for n in ("layer1.0.conv1", "layer1.0.conv2"))
    skipped = g.choice(skipped=["layer1.0"])
    assert g.macs(g.largest_choice()) - g.macs(skipped) == removed


# --------------------------------------------------------------------------- unknown ops
@pytest.mark.parametrize(
    ("op", "named"),
    [
        (Scramble(), "function scramble"),  # a wrapped function torch.fx does not trace into
        (nn.ChannelShuffle(2), "module op (ChannelShuffle)"),  # a torch module it does not know
        (Transposed(), "method .transpose() (transpose): it moves the batch or channel dimension"),
    ],
)
def test_an_unknown_op_fixes_its_groups_with_one_warning(op, named):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = convert(TwoConvs(op), torch.randn(1, 3, 8, 8))
    lines = [str(w.message) for w in caught if issubclass(w.category, ConvertWarning)]
    assert len(lines) == 1 and len(caught) == 1, lines
    assert (
        lines[0].startswith("dnas.convert: conv1: width fixed at 8 channels") and named in lines[0]
    )
    assert caught[0].filename == __file__  # it points at the caller's line
    assert g.group("conv1").widths == (8,) and named in g.group("conv1").fixed_by
    (after,) = g.layer("conv2").in_groups  # the op's output: a fixed group of its own
    assert after != "conv1" and g.group(after).widths == (8,)
    assert g.group("conv2").widths == (6, 9, 12)  # conv2's own width is still searched


def test_a_leaf_module_is_opaque_and_an_untraceable_one_is_refused():
    with pytest.raises(GraphError, match=r"model: torch\.fx cannot trace TwoConvs.*leaf_modules="):
        convert(TwoConvs(DataDependent()), torch.randn(1, 3, 8, 8))
    with pytest.warns(ConvertWarning, match=r"conv1: .*module op \(DataDependent\)"):
        g = convert(
            TwoConvs(DataDependent()), torch.randn(1, 3, 8, 8), leaf_modules=[DataDependent]
        )
    assert g.group("conv1").is_fixed and not g.group("conv2").is_fixed


class LiteralView(nn.Module):
    def __init__(self, literal: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 16, 10)
        self.literal = literal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc(y.view(-1, 128) if self.literal else y.view(y.size(0), -1))


def test_a_reshape_to_a_literal_channel_count_fixes_the_width():
    x = torch.randn(2, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = convert(LiteralView(literal=False), x)
    assert g.layer("fc").in_factor == 16 and g.group("conv").widths == (4, 6, 8)
    with pytest.warns(
        ConvertWarning, match=r"conv: width fixed .*it flattens to the size 128, not -1"
    ):
        g = convert(LiteralView(literal=True), x)
    assert g.group("conv").is_fixed and g.layer("fc").in_factor == 1
    assert g.macs(g.largest_choice()) == 8 * 8 * 9 * 3 * 8 + 128 * 10


class Gated(nn.Module):
    """Squeeze-and-excitation gating (ties its expand conv to the gated channels) and a
    1-channel spatial gate (broadcast: ties nothing), then a channel-keeping reshape."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.se_reduce = nn.Conv2d(16, 4, 1)
        self.se_expand = nn.Conv2d(4, 16, 1)
        self.spatial = nn.Conv2d(16, 1, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x))
        s = self.se_expand(F.relu(self.se_reduce(x.mean((2, 3), keepdim=True))))
        x = x * torch.sigmoid(s)
        x = x * torch.sigmoid(self.spatial(x))
        x = x.transpose(2, 3).permute(0, 1, 3, 2).unsqueeze(-1)
        return self.fc(x.reshape(x.size(0), x.shape[1], -1).amax(2, keepdim=True).squeeze(2))


def test_gates_tie_or_broadcast():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = convert(Gated(), torch.randn(1, 3, 8, 8))
    assert writers(g) == {
        "conv": {"conv", "se_expand"},
        "se_reduce": {"se_reduce"},
        "spatial": {"spatial"},
        "fc": {"fc"},
    }
    assert g.group("spatial").widths == (1,) and g.group("conv").widths == (8, 12, 16)
    assert g.layer("fc").in_groups == ("conv",) and g.layer("fc").in_factor == 1


def test_a_depthwise_conv_on_the_image_writes_the_input_group():
    net = nn.Sequential(
        nn.Conv2d(3, 3, 3, padding=1, groups=3),
        nn.Conv2d(3, 8, 1),
        nn.Flatten(),
        nn.Linear(8 * 16, 2),
    )
    g = convert(net, torch.randn(1, 3, 4, 4))
    assert g.layer("0").in_groups == ("input",) and g.layer("0").out_group == "input"
    assert g.layer("1").in_groups == ("input",)
    assert not any(layer.im2col for layer in g.layers)  # the first layer is not a dense conv
    assert g.layer("3").in_factor == 16


def test_kernel_choices_need_same_padding():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 1),
        nn.Conv2d(8, 8, 3, padding=0, groups=8),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 2),
    )
    with pytest.warns(ConvertWarning, match=r"1: kernel choices \[3, 5\] not applied: its padding"):
        g = convert(net, torch.randn(1, 3, 8, 8), kernels={3: (3, 5)})
    assert g.layer("1").kernels == (3,) and g.layer("1").depthwise


# ------------------------------------------------------------------------------- refusals
class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 4, 3, 3))
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.conv2d(x, self.w).mean((2, 3)))


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.Flatten(), nn.Linear(8 * 9, 2)),
            r"0: groups=2 with 4→8 channels: only dense",
        ),
        (
            nn.Sequential(nn.Conv2d(4, 8, (1, 3)), nn.Flatten(), nn.Linear(8 * 15, 2)),
            r"0: kernel \(1, 3\) and stride \(1, 1\) must be square",
        ),
        (
            nn.Sequential(nn.Conv2d(4, 8, 3, dilation=2), nn.Flatten(), nn.Linear(8, 2)),
            r"0: dilation \(2, 2\)",
        ),
        (Functional(), r"conv2d: function conv2d \(conv2d\) has multiply-accumulates"),
        (Shared(), r"conv: the module is called more than once"),
        (
            nn.Sequential(nn.Conv2d(4, 8, 3)),
            r"output: the network must return one \[B, num_classes\]",
        ),
        (
            nn.Sequential(nn.Conv2d(4, 8, 3), nn.ConvTranspose2d(8, 4, 3)),
            r"1: ConvTranspose2d has weight matrices \(weight\)",
        ),
    ],
)
def test_refused_networks_say_why(model, message):
    with pytest.raises(GraphError, match=message):
        convert(model, torch.randn(1, 4, 5, 5))


def test_argument_checks():
    net = TwoConvs(nn.Identity())
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(GraphError, match=r"width_fractions: must include 1\.0"):
        convert(net, x, width_fractions=(0.5, 0.75))
    with pytest.raises(GraphError, match=r"width_fractions: each must be in \(0, 1\]"):
        convert(net, x, width_fractions=(0.0, 1.0))
    with pytest.raises(GraphError, match=r"kernels\[3\]: the layers' own kernel 3 must stay"):
        convert(net, x, kernels={3: (5, 7)})
    with pytest.raises(GraphError, match=r"kernels\[3\]: kernel sizes must be odd"):
        convert(net, x, kernels={3: (3, 4)})
    with pytest.raises(GraphError, match=r"example_input: TwoConvs failed on it"):
        convert(net, torch.randn(1, 5, 8, 8))
    with pytest.raises(GraphError, match=r"^w_bits: must be strictly increasing, got \[8, 4\]"):
        convert(net, x, w_bits=(8, 4))
    g = convert(net, x, w_bits=(4, 8), a_bits=(8,), width_fractions=(0.25, 1.0))
    assert all((layer.w_bits, layer.a_bits) == ((4, 8), (8,)) for layer in g.layers)
    assert g.group("conv1").widths == (2, 8)


def test_width_choices_round_half_up():
    assert width_choices(16, (0.5, 0.75, 1.0)) == (8, 12, 16)
    assert width_choices(10, (0.25, 0.75, 1.0)) == (3, 8, 10)  # 2.5 → 3, 7.5 → 8
    assert width_choices(3, (0.1, 0.2, 1.0)) == (1, 3)  # at least 1, deduplicated


# ----------------------------------------------------------------- agreement with the space
class PlainBlock(nn.Module):
    """A float inverted-residual block of a space at its largest width and kernel."""

    def __init__(self, b) -> None:
        super().__init__()
        hidden, k = b.widths[-1], b.kernels[-1]
        self.residual = b.has_residual
        self.expand = nn.Conv2d(b.in_channels, hidden, 1, bias=False) if b.expand else None
        if b.expand:
            self.bn1 = nn.BatchNorm2d(hidden)
        self.dw = nn.Conv2d(hidden, hidden, k, b.stride, k // 2, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, b.out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(b.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.expand is None else F.relu(self.bn1(self.expand(x)))
        h = F.relu(self.bn2(self.dw(h)))
        y = self.bn3(self.project(h))
        return x + y if self.residual else y


class PlainMobileNetV2(nn.Module):
    """The largest network of a space, in plain float modules named as in QuantMobileNetV2."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        s = space.stem
        self.stem = nn.Conv2d(space.in_channels, s.channels, s.kernel, s.stride, s.kernel // 2)
        self.stem_bn = nn.BatchNorm2d(s.channels)
        self.blocks = nn.ModuleList(PlainBlock(b) for b in space.blocks)
        self.last = nn.Conv2d(space.last_in_channels, space.last.channels, 1, bias=False)
        self.last_bn = nn.BatchNorm2d(space.last.channels)
        self.classifier = nn.Linear(space.last.channels, space.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        x = F.relu(self.last_bn(self.last(x)))
        return self.classifier(x.mean((2, 3)))


def test_convert_agrees_with_graph_of_space():
    """The converted float MobileNetV2 has the space graph's layers, group partition and skips,
    and the same MACs, BitOps and size at every kernel and bit choice."""
    space = load_space("fmnist_mbv2")
    model = PlainMobileNetV2(space)
    x = torch.randn(1, space.in_channels, space.resolution, space.resolution)
    bits = space.stages[0].bits
    converted = convert(
        model, x, w_bits=bits.w_bits, a_bits=bits.a_bits, kernels={7: (3, 5, 7)}, skips=True
    )
    graph = graph_of_space(space)
    assert [layer.name for layer in converted.layers] == [layer.name for layer in graph.layers]
    assert {g.name for g in converted.groups} == {g.name for g in graph.groups}
    for mine, ref in zip(converted.layers, graph.layers, strict=True):
        assert (mine.in_groups, mine.out_group, mine.kernels) == (
            ref.in_groups,
            ref.out_group,
            ref.kernels,
        ), mine.name
        assert (mine.stride, mine.output_h, mine.output_w, mine.depthwise, mine.im2col) == (
            ref.stride,
            ref.output_h,
            ref.output_w,
            ref.depthwise,
            ref.im2col,
        ), mine.name
        assert (mine.in_factor, mine.norm) == (ref.in_factor, ref.norm), mine.name
    assert converted.skips == graph.skips
    # At the largest widths (the converted groups offer other fractions), any kernels, bits, skips.
    fixed = ("stem", "last", "classifier")
    for seed in range(3):
        arch = space.random_arch(seed)
        kernels = {f"blocks.{i}.dw": c.kernel for i, c in enumerate(arch.blocks) if not c.skipped}
        skipped = [f"blocks.{i}" for i, c in enumerate(arch.blocks) if c.skipped]
        layer_bits = {
            layer.name: (8, 8) if layer.name in fixed else (2 + seed, 8 - seed)
            for layer in graph.layers
        }
        a = converted.choice(kernels=kernels, bits=layer_bits, skipped=skipped)
        b = graph.choice(kernels=kernels, bits=layer_bits, skipped=skipped)
        assert converted.layer_shapes(a) == graph.layer_shapes(b)
        assert converted.macs(a) == graph.macs(b) and converted.bitops(a) == graph.bitops(b)
        assert converted.size_bits(a) == graph.size_bits(b)


def test_graph_imports_stay_lean():
    """``dnas.graph`` and its converter import torch and ``dnas.space`` only: no Lightning, Hydra
    or Triton, and nothing above the space in the package."""
    code = (
        "import sys, dnas.graph\n"
        "lean = 'torch' not in sys.modules\n"
        "import dnas.graph.convert\n"
        "names = ('triton', 'pytorch_lightning', 'lightning', 'hydra')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "dnas = sorted({m.split('.')[1] for m in sys.modules if m.startswith('dnas.')})\n"
        "print(lean, heavy, dnas)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True [] ['atomic', 'errors', 'graph', 'space']", out.stdout


def test_layer_bits_give_a_layer_its_own_bit_choices():
    model = TinyResNet()
    graph = convert(
        model,
        torch.randn(1, 3, 16, 16),
        layer_bits={"conv1": ((8,), (8,)), "linear": ([4, 8], [8])},
    )
    assert (graph.layer("conv1").w_bits, graph.layer("conv1").a_bits) == ((8,), (8,))
    assert (graph.layer("linear").w_bits, graph.layer("linear").a_bits) == ((4, 8), (8,))
    assert graph.layer("layer1.0.conv1").w_bits == (2, 4, 8)
    smallest = graph.smallest_choice()
    assert smallest.bits["conv1"] == (8, 8) and smallest.bits["linear"] == (4, 8)
    with pytest.raises(GraphError, match=r"layer_bits\.conv: no such .* did you mean conv1"):
        convert(model, torch.randn(1, 3, 16, 16), layer_bits={"conv": ((8,), (8,))})
    with pytest.raises(GraphError, match=r"layer_bits\.conv1: must be \(w_bits, a_bits\)"):
        convert(model, torch.randn(1, 3, 16, 16), layer_bits={"conv1": (8, 8, 8)})
    with pytest.raises(GraphError, match=r"layer_bits\.conv1\.w_bits: must be strictly increasing"):
        convert(model, torch.randn(1, 3, 16, 16), layer_bits={"conv1": ((8, 4), (8,))})
