"""Batch norm over the leading channels of its input (once-for-all's dynamic BN)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SlicedBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` that normalises inputs with fewer channels using its leading statistics.

    An input with ``c ≤ num_features`` channels uses (and, in training, updates in place) the
    first ``c`` entries of the affine parameters and running statistics, so a narrower
    sub-network shares them with the full one. ``momentum=None`` (cumulative average) works as
    in ``nn.BatchNorm2d``.
    """

    def forward(self, x: Tensor, update_stats: bool = True) -> Tensor:
        """``x`` ``[B, c, H, W]`` with ``c ≤ num_features`` → same shape.

        Args:
            x: input.
            update_stats: in training, whether this batch updates the running statistics. With
                ``False`` the batch is normalised by its own statistics and the running ones (and
                ``num_batches_tracked``) are left untouched: a forward that is not a real
                sub-network's (a drawn ``skip`` whose branch runs only for its gradient) must not
                move them.
        """
        c = x.shape[1]
        if self.training and not update_stats:
            return F.batch_norm(
                x,
                None,
                None,
                None if self.weight is None else self.weight[:c],
                None if self.bias is None else self.bias[:c],
                True,
                0.0,
                self.eps,
            )
        if c == self.num_features:
            return super().forward(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch = self.training or self.running_mean is None
        return F.batch_norm(
            x,
            None if self.running_mean is None else self.running_mean[:c],
            None if self.running_var is None else self.running_var[:c],
            None if self.weight is None else self.weight[:c],
            None if self.bias is None else self.bias[:c],
            use_batch,
            factor,
            self.eps,
        )
