"""The supernet: every choice of a search space in one weight-sharing network.

Kernel: Gumbel-softmax over centre crops of one shared depthwise weight (FBNet, Wu et al. 2019;
once-for-all, Cai et al. 2020). Width: fractional channel mask, leading channels kept. Bits:
fractional bit-widths (FracBits, Yang & Jin, arXiv 2007.02017) with PACT clips. See docs/DESIGN.md,
"The three relaxations".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from dnas.ops import ARCH_PREFIX, ArchChoice, GumbelKernel, QuantLayer, check_mode
from dnas.space import Architecture, BlockChoice, ConvBits, LayerKey, SearchSpace
from dnas.supernet.block import SearchableBlock, set_bits_mode
from dnas.supernet.network import QuantMobileNetV2
from dnas.supernet.relaxed import RelaxedArch


def is_arch_parameter(name: str) -> bool:
    """Whether a parameter name (as in ``named_parameters()``) is an architecture parameter."""
    return name.rsplit(".", 1)[-1].startswith(ARCH_PREFIX)


class SuperNet(QuantMobileNetV2):
    """A searchable quantized MobileNetV2 over ``space``.

    Architecture parameters (all named ``arch_*``): per block the kernel logits α (kernel
    choices, "skip" last), the width index θ and, per conv, the weight and activation bit
    indices β_w, β_a; the same for the fixed layers when their bits are searchable. θ and β start
    at the largest option, α at uniform.

    Args:
        space: the search space.
        tau: initial Gumbel-softmax temperature (settable: ``supernet.tau = 1.0``).
        hard: straight-through one-hot Gumbel samples.
        clip: initial PACT clips.
        channels_last: channels-last convs (faster on CPU).
        kernel_weights: ``"shared"``: every kernel size is the centre crop of one depthwise
            weight; ``"separate"``: one weight per size (see ``QuantDepthwiseConv2d``).

    Attributes:
        mode: the sampling mode (see ``set_mode``).
    """

    def __init__(
        self,
        space: SearchSpace,
        tau: float = 5.0,
        hard: bool = True,
        clip: float = 6.0,
        channels_last: bool = True,
        kernel_weights: str = "shared",
    ) -> None:
        blocks = [
            SearchableBlock(
                b, b.index > 0, tau=tau, hard=hard, clip=clip, kernel_weights=kernel_weights
            )
            for b in space.blocks
        ]
        super().__init__(
            space,
            space.stem.bits,
            space.last.bits,
            space.classifier.bits,
            blocks,
            clip=clip,
            channels_last=channels_last,
        )
        self._tau, self._hard = float(tau), bool(hard)
        self.kernel_weights = kernel_weights
        self.mode = "gumbel"
        self._fingerprint = space.fingerprint()
        # Costed layer key → the layer (plain dict: the modules are registered above).
        self._layers: dict[LayerKey, QuantLayer] = {
            LayerKey("stem"): self.stem,
            LayerKey("last"): self.last,
            LayerKey("classifier"): self.classifier,
        }
        for block in self.searchable_blocks():
            for role, layer in block.convs().items():
                self._layers[LayerKey(role, block.spec.index)] = layer

    def searchable_blocks(self) -> Iterator[SearchableBlock]:
        """The blocks, typed."""
        for block in self.blocks:
            assert isinstance(block, SearchableBlock)
            yield block

    # ------------------------------------------------------------------------------ temperature
    @property
    def tau(self) -> float:
        """Gumbel-softmax temperature of every kernel choice."""
        return self._tau

    @tau.setter
    def tau(self, value: float) -> None:
        if not value > 0:
            raise ValueError(f"tau must be positive, got {value}")
        self._tau = float(value)
        for m in self.modules():
            if isinstance(m, GumbelKernel):
                m.tau = self._tau

    @property
    def hard(self) -> bool:
        """Whether Gumbel samples are straight-through one-hot."""
        return self._hard

    @hard.setter
    def hard(self, value: bool) -> None:
        self._hard = bool(value)
        for m in self.modules():
            if isinstance(m, GumbelKernel):
                m.hard = self._hard

    # ---------------------------------------------------------------------------- parameters
    def arch_parameters(self) -> list[nn.Parameter]:
        """Architecture parameters: kernel logits α, width indices θ, bit indices β."""
        return [p for n, p in self.named_parameters() if is_arch_parameter(n)]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every other parameter: conv/FC weights, biases, BN affine, PACT clips."""
        return [p for n, p in self.named_parameters() if not is_arch_parameter(n)]

    @torch.no_grad()
    def clamp_arch_(self) -> None:
        """Clamp every θ and β to ``[0, n − 1]`` (call after each architecture step)."""
        for m in self.modules():
            if isinstance(m, ArchChoice):
                m.clamp_()

    # --------------------------------------------------------------------------------- modes
    def set_mode(self, mode: str, arch: Architecture | None = None) -> None:
        """Set the sampling mode of every choice.

        Args:
            mode: ``"gumbel"`` (search: relaxed choices), ``"uniform"`` (each forward draws every
                choice uniformly: warm-up), ``"fixed"`` (run ``arch``), ``"argmax"`` (run the
                currently most likely architecture, i.e. ``derive()``).
            arch: the architecture for mode ``"fixed"`` (validated against the space).
        """
        check_mode(mode)
        if mode == "fixed":
            if arch is None:
                raise ValueError("mode 'fixed' needs an architecture")
            self.space.validate_arch(arch)
        fixed = arch if mode == "fixed" else None
        space = self.space
        for block in self.searchable_blocks():
            block.set_mode(mode, None if fixed is None else fixed.blocks[block.spec.index])
        for layer, choices, bits in (
            (self.stem, space.stem.bits, None if fixed is None else fixed.stem),
            (self.last, space.last.bits, None if fixed is None else fixed.last),
            (self.classifier, space.classifier.bits, None if fixed is None else fixed.classifier),
        ):
            set_bits_mode(layer, mode, choices, bits)
        self.mode = mode

    # ------------------------------------------------------------------------- architectures
    def _arch(self, pick: Callable[[ArchChoice], int]) -> Architecture:
        def bits(layer: QuantLayer) -> ConvBits:
            w, a = layer.wq.bits, layer.aq.bits
            return ConvBits(w.bits[pick(w)], a.bits[pick(a)])

        blocks = []
        for block in self.searchable_blocks():
            spec = block.spec
            convs = {role: bits(layer) for role, layer in block.convs().items()}
            blocks.append(
                BlockChoice(
                    kernel=spec.kernel_choices[pick(block.kernel)],
                    width=spec.widths[pick(block.width)],
                    expand=convs.get("expand"),
                    dw=convs["dw"],
                    project=convs["project"],
                )
            )
        return Architecture(
            blocks=tuple(blocks),
            stem=bits(self.stem),
            last=bits(self.last),
            classifier=bits(self.classifier),
            space=self.space.name,
            space_fingerprint=self._fingerprint,
        )

    def derive(self) -> Architecture:
        """The most likely architecture: argmax kernel (incl. skip), nearest width and bits."""
        return self._arch(lambda op: op.argmax())

    def last_arch(self) -> Architecture:
        """The discrete architecture the last forward ran (modes uniform/fixed/argmax).

        Choices the last forward did not draw (those of a skipped block) are their argmax.
        """
        return self._arch(lambda op: op.argmax() if op.last_index is None else op.last_index)

    def relaxed(self) -> RelaxedArch:
        """The current distribution for the expected-cost loss (differentiable in α, θ, β)."""
        blocks = list(self.searchable_blocks())
        return RelaxedArch(
            kernel_probs={b.spec.index: b.kernel.probs() for b in blocks},
            width_index={b.spec.index: b.width.value() for b in blocks},
            bit_index={
                key: (layer.wq.bits.value(), layer.aq.bits.value())
                for key, layer in self._layers.items()
            },
        )

    def entropy(self) -> Tensor:
        """Mean entropy (nats, 0-dim) of the kernel distributions of blocks with a choice."""
        ents = [b.kernel.entropy() for b in self.searchable_blocks() if b.kernel.searchable]
        if not ents:
            return torch.zeros(())
        return torch.stack(ents).mean()

    @torch.no_grad()
    def summary(self) -> str:
        """A table of the current distribution: per block kernel probabilities, width, bits."""

        def bits(layer: QuantLayer) -> str:
            return f"{layer.wq.bits.expected_bits():.1f}/{layer.aq.bits.expected_bits():.1f}"

        rows = [("block", "kernel probs", "width θ → channels", "bits w/a: expand dw project")]
        for block in self.searchable_blocks():
            spec = block.spec
            probs = block.kernel.probs().tolist()
            kp = " ".join(f"{k}:{p:.2f}" for k, p in zip(spec.kernel_choices, probs))
            theta = float(block.width.value())
            width = f"{theta:5.2f} → {block.width.expected_width():.0f} / {spec.widths[-1]}"
            convs = block.convs()
            b = " ".join(
                bits(convs[r]) if r in convs else "  -    " for r in ("expand", "dw", "project")
            )
            rows.append((str(spec.index), kp, width, b))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(
            f"stem {bits(self.stem)}  last {bits(self.last)}  classifier {bits(self.classifier)}"
            f"  (tau {self.tau:g}, mode {self.mode})"
        )
        return "\n".join(lines)
