"""APQ's accuracy predictor: an MLP over one-hot architecture encodings (APQ, Sec. 3.2)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dnas.errors import DnasError


class AccuracyPredictor(nn.Module):
    """``layers`` fully-connected ReLU layers of ``hidden`` units and a linear regressor.

    APQ: 3 layers of 400 units over the one-hot encoding of every block's kernel, width and
    quantization policy, trained with MSE on (architecture, supernet accuracy) pairs.

    Args:
        num_features: input width (``GenomeSpace.num_features``).
        hidden: units per layer.
        layers: number of hidden layers.
    """

    def __init__(self, num_features: int, hidden: int = 400, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        width = num_features
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.body = nn.Sequential(*mods)
        self.head = nn.Linear(width, 1)
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[N, num_features]`` → predicted accuracy ``[N]`` (a fraction)."""
        return self.head(self.body(x)).squeeze(-1) * self.y_std + self.y_mean

    def fit(
        self,
        x: Tensor,
        y: Tensor,
        epochs: int = 300,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 128,
        seed: int = 0,
    ) -> float:
        """Train on ``(x [N, F], y [N])`` with Adam and MSE on standardised targets.

        Returns:
            The final training RMSE (in accuracy units).
        """
        if len(x) < 2:
            raise DnasError(f"the predictor needs at least 2 samples, got {len(x)}")
        gen = torch.Generator().manual_seed(seed)
        self.y_mean.fill_(float(y.mean()))
        self.y_std.fill_(max(float(y.std()), 1e-6))
        target = (y - self.y_mean) / self.y_std
        opt = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
        self.train()
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), batch_size):
                idx = perm[i : i + batch_size]
                pred = self.head(self.body(x[idx])).squeeze(-1)
                loss = nn.functional.mse_loss(pred, target[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sched.step()
        self.eval()
        with torch.no_grad():
            return float((self(x) - y).pow(2).mean().sqrt())

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        self.eval()
        return self(x)


def kendall_tau(a: Tensor, b: Tensor) -> float:
    """Kendall's τ-a between two score vectors (pairs tied in either count as 0)."""
    a, b = a.double().flatten(), b.double().flatten()
    if len(a) != len(b) or len(a) < 2:
        raise DnasError(f"need two score vectors of the same length >= 2, got {len(a)}, {len(b)}")
    da = torch.sign(a[:, None] - a[None, :])
    db = torch.sign(b[:, None] - b[None, :])
    n = len(a)
    return float((da * db).sum() / (n * (n - 1)))


def check_holdout(samples: int, fraction: float, source: str = "") -> None:
    """Whether ``samples`` pairs can be split ``fraction`` held out, at least 2 on each side."""
    if not 0 < fraction < 1:
        raise DnasError(f"predictor.holdout must be in (0, 1), got {fraction}")
    n_out = max(2, round(fraction * samples))
    if samples - n_out < 2:
        where = f"{source} holds " if source else ""
        raise DnasError(
            f"too few samples ({where}{samples}) to hold {fraction:.0%} out and fit on the rest "
            f"(at least {n_out + 2}), or set predictor.holdout=0"
        )


def holdout_quality(
    x: Tensor,
    y: Tensor,
    fraction: float,
    hidden: int = 400,
    layers: int = 3,
    seed: int = 0,
    **fit_kwargs,
) -> dict[str, float]:
    """How well a predictor trained on ``1 − fraction`` of the pairs predicts the rest.

    Returns ``holdout_rmse`` (accuracy units), ``holdout_kendall`` (rank agreement, what evolution
    relies on), ``holdout_samples`` and, for scale, ``holdout_std`` (the held-out accuracies'
    standard deviation: an RMSE near it means the predictor explains little).
    """
    check_holdout(len(x), fraction)
    n_out = max(2, round(fraction * len(x)))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed + 1))
    held, kept = perm[:n_out], perm[n_out:]
    with torch.random.fork_rng():  # the same split and initialisation for a seed, no side effect
        torch.manual_seed(seed)
        model = AccuracyPredictor(x.shape[1], hidden, layers)
        model.fit(x[kept], y[kept], seed=seed, **fit_kwargs)
    pred = model.predict(x[held])
    return {
        "holdout_rmse": float((pred - y[held]).pow(2).mean().sqrt()),
        "holdout_kendall": kendall_tau(pred, y[held]),
        "holdout_samples": float(n_out),
        "holdout_std": float(y[held].std()),
    }
