"""Searchable depthwise kernel: a Gumbel-softmax choice over centre crops of one shared weight.

FBNet (Wu et al., CVPR 2019) / SNAS: logits α over the kernel choices, ``g = softmax((α + G)/τ)``
with Gumbel noise G; ``hard=True`` makes the forward one-hot with the soft gradient
(straight-through). As in once-for-all, candidate ``k`` uses the centre ``k×k`` crop of one weight
of the largest size, and the supernet convolves once with the mixed kernel ``Σ_i g_i·crop_i(W)``
(zero-padded to the largest size), so a step costs one conv per layer, not one per candidate.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dnas.ops.choice import ArchChoice
from dnas.space import SKIP, KernelChoice


def gumbel_softmax(logits: Tensor, tau: float, hard: bool = True) -> Tensor:
    """A Gumbel-softmax sample over the last axis.

    Args:
        logits: ``[..., K]`` unnormalised log-probabilities α.
        tau: temperature τ > 0.
        hard: if true the forward value is exactly one-hot (argmax of the noisy logits) and the
            gradient is the soft sample's (straight-through).

    Returns:
        ``[..., K]`` weights summing to 1.
    """
    gumbels = -torch.empty_like(logits).exponential_().log()
    soft = ((logits + gumbels) / tau).softmax(-1)
    if not hard:
        return soft
    one_hot = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
    # one_hot + (soft − soft) is exactly one-hot in the forward (one_hot − soft + soft is not).
    return one_hot + (soft - soft.detach())


def crop_masks(kernels: Sequence[int]) -> Tensor:
    """``[K, kmax, kmax]``: 1 on the centre ``k×k`` window of each kernel size, 0 elsewhere."""
    kmax = max(kernels)
    masks = torch.zeros(len(kernels), kmax, kmax)
    for i, k in enumerate(kernels):
        o = (kmax - k) // 2
        masks[i, o : o + k, o : o + k] = 1.0
    return masks


def mix_kernels(weight: Tensor, kernel_weights: Tensor, masks: Tensor) -> Tensor:
    """The mixed depthwise kernel ``Σ_i g_i·crop_i(W)``, zero-padded to the largest size.

    Args:
        weight: shared weight ``[C, 1, kmax, kmax]``.
        kernel_weights: ``[K]`` weights g_i of the kernel sizes.
        masks: ``[K, kmax, kmax]`` from ``crop_masks``.

    Returns:
        ``[C, 1, kmax, kmax]``.
    """
    window = (kernel_weights @ masks.flatten(1)).view(masks.shape[1:])
    return weight * window


def mix_separate_kernels(weights: Tensor, kernel_weights: Tensor, masks: Tensor) -> Tensor:
    """The mixed depthwise kernel ``Σ_i g_i·pad(W_i)`` of one weight per kernel size.

    Args:
        weights: ``[K, C, 1, kmax, kmax]``, weight ``i`` centred in its ``kmax×kmax`` frame.
        kernel_weights: ``[K]`` weights g_i of the kernel sizes.
        masks: ``[K, kmax, kmax]`` from ``crop_masks`` (each weight counts inside its window only).

    Returns:
        ``[C, 1, kmax, kmax]``.
    """
    window = kernel_weights.view(-1, 1, 1) * masks
    return (weights * window.unsqueeze(1).unsqueeze(1)).sum(0)


class GumbelKernel(ArchChoice):
    """The kernel choice of a block: logits ``arch_logits`` over ``choices`` ("skip" last).

    Args:
        choices: kernel sizes, ascending, optionally followed by ``"skip"``.
        tau: Gumbel-softmax temperature (the supernet sets it on every kernel choice).
        hard: straight-through one-hot samples.
    """

    def __init__(self, choices: Sequence[KernelChoice], tau: float = 5.0, hard: bool = True):
        choices = tuple(choices)
        super().__init__(len(choices))
        self.choices = choices
        self.has_skip = choices[-1] == SKIP
        self.kernels: tuple[int, ...] = tuple(int(k) for k in choices if k != SKIP)
        if SKIP in choices[:-1] or not self.kernels:
            raise ValueError(f"kernel choices need a size and 'skip' only last, got {choices}")
        self.tau = tau
        self.hard = hard
        if self.searchable:
            self.arch_logits = nn.Parameter(torch.zeros(len(choices)))
        self.register_buffer("masks", crop_masks(self.kernels), persistent=False)

    def probs(self) -> Tensor:
        """``softmax(α)`` ``[K]`` over ``choices`` (a constant ``[1.]`` for a single choice)."""
        if not self.searchable:
            return torch.ones(1, device=self.masks.device)
        return self.arch_logits.softmax(-1)

    def entropy(self) -> Tensor:
        """Entropy (nats, 0-dim) of ``probs()``."""
        if not self.searchable:
            return torch.zeros((), device=self.masks.device)
        logp = self.arch_logits.log_softmax(-1)
        return -(logp.exp() * logp).sum()

    def argmax(self) -> int:
        if not self.searchable:
            return 0
        return int(self.arch_logits.detach().argmax())

    def sample(self) -> Tensor:
        """A Gumbel-softmax sample ``[K]`` over ``choices`` (gumbel mode)."""
        if not self.searchable:
            return torch.ones(1, device=self.masks.device)
        return gumbel_softmax(self.arch_logits, self.tau, self.hard)

    def relaxed_sample(self) -> tuple[Tensor, Tensor | None]:
        """Draw g and split it into the depthwise kernel mix and the branch scale (gumbel mode).

        With ``"skip"`` offered, the block computes ``x + (1 − g_skip)·branch(x)``, so at a
        one-hot skip it is exactly the identity. The branch's kernel mix must still sum to 1
        (the BN after the depthwise conv would undo any scale), so the skip weight is spread over
        the kernels by their current probabilities: ``w_i = g_i + g_skip·softmax(α_kernels)_i``
        (detached). Thus when skip is drawn the branch runs with the expected kernel, and α_skip
        gets the gradient ``−⟨grad, branch(x)⟩``.

        Returns:
            ``(w, scale)``: kernel weights ``[len(kernels)]`` and ``1 − g_skip`` (0-dim), or
            ``None`` for the scale when skip is not offered.
        """
        g = self.sample()
        if not self.has_skip:
            return g, None
        g_skip = g[-1]
        prior = self.arch_logits[:-1].detach().softmax(-1)
        return g[:-1] + g_skip * prior, 1.0 - g_skip

    def choice(self) -> KernelChoice:
        """The discrete choice of this forward (discrete modes, see ``ArchChoice.index``)."""
        return self.choices[self.index()]

    def extra_repr(self) -> str:
        return f"choices={list(self.choices)}, tau={self.tau}, hard={self.hard}, mode={self.mode!r}"
