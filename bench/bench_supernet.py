"""Benchmark of a supernet training step against the largest child network's.

One run measures, on ``fmnist_mbv2`` with a batch of 28×28×1 images (or on another space, e.g.
``apq_mbv2`` at 224×224×3), a training step (forward, backward, SGD step) of the supernet in
gumbel mode (the search: Gumbel kernel mix, fractional width masks, fractional bit-widths) and of
``ChildNet(space, space.largest_arch())`` (the same network without relaxations, with the same
quantizers at 8 bits).

Time: the median of the timed steps after warm-up; the two models' steps are interleaved so that
machine noise hits both alike. The full run also times both in NCHW (``step_s_*_nchw``), to show
what the channels-last memory format buys.

Memory, two ways, both deterministic (the resident set size of a process was not: glibc's
allocator made it vary by ±20% between identical runs):
- ``peak_mb``: the peak of allocated tensor memory during one training step, minus its value at
  the start of the step, from the allocation/free events of ``torch.profiler`` with
  ``profile_memory=True`` (its memory timeline). It counts everything the step holds at its
  peak: saved activations, gradients, optimizer state and temporaries.
- ``saved_mb``: bytes of the distinct tensor storages autograd holds for backward at the end of
  the forward (``torch.autograd.graph.saved_tensors_hooks``); parameters excluded.
``memory_ratio`` is the ratio of ``peak_mb``.

    python bench/bench_supernet.py            # full run -> bench/results/supernet.json
    python bench/bench_supernet.py --quick    # < 1 min  -> bench/results/supernet_quick.json
    python bench/bench_supernet.py --space apq_mbv2 --quick  # 224x224x3, batch 8
                                              # -> bench/results/supernet_apq_mbv2_quick.json

Each space has a default batch this 2-core machine can step (``DEFAULT_BATCH``). A record taken
while other work loaded the machine says so: ``machine_shared`` is true when ``--machine-shared``
is given or the 1-minute load average at the start exceeded ``SHARED_LOAD``; the load averages
at start and end are recorded either way.

Prints one JSON line with ``step_ratio`` and ``memory_ratio`` (supernet / child).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from dnas.space import load_space
from dnas.supernet import ChildNet, SuperNet

RESULTS = Path(__file__).parent / "results"
KINDS = ("supernet", "child")
DEFAULT_SPACE = "fmnist_mbv2"
DEFAULT_BATCH = {"fmnist_mbv2": 128, "cifar_mbv2": 64, "apq_mbv2": 8}
SHARED_LOAD = 0.5  # a 1-minute load average above this means something else was running


def build(kind: str, space_name: str, batch: int, seed: int = 0, channels_last: bool = True):
    """The model (train mode), its SGD optimizer and one fixed batch of inputs and labels."""
    torch.manual_seed(seed)
    space = load_space(space_name)
    if kind == "supernet":
        model: torch.nn.Module = SuperNet(space, channels_last=channels_last)
        model.set_mode("gumbel")
    else:
        model = ChildNet(space, space.largest_arch(), channels_last=channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, space.in_channels, space.resolution, space.resolution)
    y = torch.randint(0, space.num_classes, (batch,))
    return model, opt, x, y


def train_step(model, opt, x, y) -> float:
    """One forward + backward + SGD step; returns its wall time (s)."""
    t = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t


def time_steps(
    space_name: str, batch: int, warmup: int, steps: int, kinds: tuple[str, ...] = KINDS, **kw
) -> dict[str, list[float]]:
    """Interleaved step times (s) of the models after ``warmup`` untimed steps each."""
    setups = {k: build(k, space_name, batch, **kw) for k in kinds}
    for _ in range(warmup):
        for k in kinds:
            train_step(*setups[k])
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(steps):
        for k in kinds:
            times[k].append(train_step(*setups[k]))
    return times


def saved_bytes(kind: str, space_name: str, batch: int) -> int:
    """Bytes of the distinct non-parameter storages autograd saves in one forward."""
    model, _, x, _ = build(kind, space_name, batch)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).sum()
    del loss
    return sum(storages.values())


def peak_memory_mb(kind: str, space_name: str, batch: int) -> float:
    """Peak increase (MB) of allocated tensor memory during one training step (after warm-up).

    From the allocation and free events ``torch.profiler`` records with ``profile_memory=True``
    (``export_memory_timeline``: memory per category over time); the figure is the maximum of the
    total minus its value at the start of the step.
    """
    setup = build(kind, space_name, batch)
    train_step(*setup)
    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        train_step(*setup)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated in favour of a CUDA-only API
        path = Path(tmp) / "timeline.json"
        prof.export_memory_timeline(str(path), device="cpu")
        _, sizes = json.loads(path.read_text())
    totals = [sum(row) for row in sizes]
    return (max(totals) - totals[0]) / 2**20


def run(space_name: str, batch: int, warmup: int, steps: int, layouts: bool) -> dict:
    times = time_steps(space_name, batch, warmup, steps)
    step_s = {k: statistics.median(v) for k, v in times.items()}
    peak = {k: peak_memory_mb(k, space_name, batch) for k in KINDS}
    saved = {k: saved_bytes(k, space_name, batch) / 2**20 for k in KINDS}
    extra = {}
    if layouts:  # the same steps in NCHW: what channels-last buys
        nchw = time_steps(space_name, batch, warmup, steps, channels_last=False)
        extra = {f"step_s_{k}_nchw": round(statistics.median(v), 4) for k, v in nchw.items()}
    return {
        "space": space_name,
        "batch": batch,
        "timed_steps": steps,
        "warmup_steps": warmup,
        "step_s_supernet": round(step_s["supernet"], 4),
        "step_s_child": round(step_s["child"], 4),
        "step_ratio": round(step_s["supernet"] / step_s["child"], 3),
        "peak_mb_supernet": round(peak["supernet"], 1),
        "peak_mb_child": round(peak["child"], 1),
        "memory_ratio": round(peak["supernet"] / peak["child"], 3),
        "saved_mb_supernet": round(saved["supernet"], 1),
        "saved_mb_child": round(saved["child"], 1),
        "saved_ratio": round(saved["supernet"] / saved["child"], 3),
        **extra,
        "memory_method": (
            "peak_mb: torch.profiler(profile_memory=True) allocation timeline of one step, peak "
            "minus start; saved_mb: distinct non-parameter storages saved for backward"
        ),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "processor": platform.machine(),
        },
    }


def results_path(space_name: str, quick: bool) -> Path:
    """``supernet[_<space>][_quick].json`` (the default space keeps the historical name)."""
    stem = "supernet" if space_name == DEFAULT_SPACE else f"supernet_{space_name}"
    return RESULTS / f"{stem}{'_quick' if quick else ''}.json"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (< 1 min)")
    parser.add_argument("--space", default=DEFAULT_SPACE)
    parser.add_argument(
        "--batch", type=int, default=None, help=f"default per space: {DEFAULT_BATCH}, else 32"
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--machine-shared",
        action="store_true",
        help="record machine_shared: true (other work was running)",
    )
    args = parser.parse_args(argv)
    warmup, steps = (2, 5) if args.quick else (3, 15)
    batch = args.batch or DEFAULT_BATCH.get(args.space, 32)
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = run(args.space, batch, warmup, args.steps or steps, layouts=not args.quick)
    result["quick"] = args.quick
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    result["load_avg_1m_start"] = round(load_start, 2)
    result["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    result["machine_shared"] = bool(args.machine_shared or load_start > SHARED_LOAD)
    out = args.out or results_path(args.space, args.quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
