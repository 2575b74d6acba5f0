"""Budget terms added to the task loss in the architecture step (docs/DESIGN.md, "Loss").

``abs``        λ·|E/T − 1|                 (FBNetV2/ProxylessNAS style: aim at the target)
``hinge``      λ·max(0, E/T − 1)²          (only penalise going over)
``fbnet``      CE·α·(log(e·E/T))^β − CE    (FBNet's multiplicative term; see BudgetLoss)
``lagrangian`` λ·(E/T − 1), λ ← max(0, λ + η·(E/T − 1)) after each architecture step
Each active target (latency, energy) contributes its own term.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dnas.cost.targets import Targets
from dnas.errors import DnasError

KINDS = ("abs", "hinge", "fbnet", "lagrangian")


class BudgetLoss(nn.Module):
    """The budget term for one or two targets.

    Args:
        targets: the budget (first, so that a config can give the rest: ``partial(BudgetLoss,
            kind="hinge", lam=2.0)`` is the ``budget`` of a ``SearchModule``).
        kind: one of ``abs``, ``hinge``, ``fbnet``, ``lagrangian``.
        lam: λ (initial λ for ``lagrangian``).
        alpha, beta: FBNet's coefficients.
        eta: the dual step size of ``lagrangian``.

    Note:
        FBNet writes CE·α·(log E)^β with E in ms, which is undefined for E < 1 ms (our small
        spaces have sub-millisecond networks). We use log(e·E/T) instead of log E: the factor
        α·(log(e·E/T))^β is unit-free and equals α at the target. The term returned is
        CE·factor − CE, so that task loss + term = FBNet's loss.
    """

    def __init__(
        self,
        targets: Targets,
        kind: str,
        lam: float = 1.0,
        alpha: float = 0.2,
        beta: float = 0.6,
        eta: float = 0.05,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise DnasError(f"unknown budget loss {kind!r}; allowed: {', '.join(KINDS)}")
        if lam < 0 or eta < 0 or alpha < 0:
            raise DnasError("budget loss coefficients lam, eta and alpha must be >= 0")
        self.kind, self.targets = kind, targets
        self.alpha, self.beta, self.eta = alpha, beta, eta
        self.register_buffer("lam", torch.full((len(targets.active()),), float(lam)))

    def ratios(self, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: expected[m] / t for m, t in self.targets.active().items()}

    def forward(self, task_loss: torch.Tensor, expected: dict[str, torch.Tensor]) -> torch.Tensor:
        """The budget term (to be added to ``task_loss``), a scalar."""
        r = self.ratios(expected)
        if not r:
            return task_loss.new_zeros(())
        terms = []
        for i, x in enumerate(r.values()):
            x = x.to(task_loss.dtype)
            if self.kind == "abs":
                terms.append(self.lam[i] * (x - 1).abs())
            elif self.kind == "hinge":
                terms.append(self.lam[i] * (x - 1).clamp(min=0) ** 2)
            elif self.kind == "lagrangian":
                terms.append(self.lam[i] * (x - 1))
            else:
                log_term = torch.log(x * math.e).clamp(min=1e-6)
                terms.append(self.alpha * log_term**self.beta)
        if self.kind == "fbnet":
            factor = torch.stack(terms).prod()
            return task_loss * factor - task_loss
        return torch.stack(terms).sum()

    @torch.no_grad()
    def update(self, expected: dict[str, torch.Tensor]) -> None:
        """Dual ascent on λ (``lagrangian`` only), after each architecture step."""
        if self.kind != "lagrangian":
            return
        for i, x in enumerate(self.ratios(expected).values()):
            self.lam[i] = (self.lam[i] + self.eta * (float(x) - 1)).clamp(min=0)
