"""A speed figure for benchmark records: one fixed piece of work timed on the machine at hand.

Machines of the same kind (2 cores, the same torch) differed by up to ~1.8x in wall-clock for the
same search on different days, so a record's wall-clock alone cannot be compared with one taken
on another day. Each record of ``bench_search.py`` therefore carries ``speed_s``: the median time
of a training step of the search's own workload, the ``fmnist_mbv2`` supernet with every choice
drawn uniformly (its warm-up and APQ's supernet training), on a fixed batch of 64 images, measured
just before the run. Dividing a wall-clock by it gives a machine-independent figure (in steps),
to the extent that the run's work is like that step; two records' ``speed_s`` show how far their
machines differed.

    python bench/speed.py            # prints the figure (a few seconds)
"""

from __future__ import annotations

import statistics
import time

STEPS, WARMUP, BATCH = 15, 3, 64
WHAT = (
    f"median of {STEPS} training steps (forward, backward, SGD) of the fmnist_mbv2 supernet, "
    f"uniform single-path sampling, batch {BATCH}, after {WARMUP} untimed"
)


def step_times(steps: int = STEPS, warmup: int = WARMUP, batch: int = BATCH) -> list[float]:
    """Seconds of each timed training step of the reference workload (seeded: the same paths
    and images on every machine)."""
    import torch
    import torch.nn.functional as F

    from dnas.space import load_space
    from dnas.supernet import SuperNet

    if steps < 1 or warmup < 0 or batch < 1:
        raise ValueError(
            f"need steps >= 1, warmup >= 0, batch >= 1; got {steps}, {warmup}, {batch}"
        )
    rng_state = torch.get_rng_state()
    try:
        torch.manual_seed(0)
        space = load_space("fmnist_mbv2")
        net = SuperNet(space)
        net.set_mode("uniform")
        opt = torch.optim.SGD(net.weight_parameters(), lr=0.01, momentum=0.9)
        x = torch.randn(batch, space.in_channels, space.resolution, space.resolution)
        y = torch.randint(0, space.num_classes, (batch,))
        times = []
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        return times
    finally:
        torch.set_rng_state(rng_state)


def speed_s() -> float:
    """The machine's speed figure (seconds per reference step; lower is faster)."""
    return round(statistics.median(step_times()), 4)


if __name__ == "__main__":
    print(f"speed_s = {speed_s()} ({WHAT})")
