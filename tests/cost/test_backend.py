"""Backend dispatch: which backend ``auto``/``torch``/``triton`` resolve to, and what evaluate runs."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import dnas_kernels
from dnas.cost import backend
from dnas.cost.backend import evaluate, resolve_backend, triton_available
from dnas.cost.batch import layers_to_params
from dnas.cost.layer import LayerShape
from dnas.errors import DnasError

LAYERS = [LayerShape(16, 32, 1, 1, 7, 1, 8, 8), LayerShape(8, 8, 3, 1, 5, 1, 4, 4, groups=8)] * 3


@pytest.fixture
def machine(monkeypatch):
    """Set whether this machine has a CUDA GPU and whether the Triton kernel can run."""

    def set_machine(gpu: bool, triton: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
        monkeypatch.setattr(backend, "triton_available", lambda: triton)

    return set_machine


def _triton_package(monkeypatch, installed: bool) -> None:
    real = importlib.util.find_spec
    spec = object() if installed else None
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args, **kw: spec if name == "triton" else real(name, *args, **kw),
    )


@pytest.mark.parametrize(
    ("gpu", "triton", "expected"),
    [
        (False, True, "torch"),
        (False, False, "torch"),
        (True, True, "triton"),
        (True, False, "torch"),
    ],
)
def test_auto_takes_triton_only_on_a_gpu_that_can_run_it(machine, gpu, triton, expected):
    machine(gpu, triton)
    assert resolve_backend("auto") == expected


@pytest.mark.parametrize("gpu", [False, True])
def test_named_backends_are_kept(machine, gpu):
    machine(gpu, triton=True)
    assert resolve_backend("torch") == "torch"
    assert resolve_backend("triton") == "triton"


@pytest.mark.parametrize("name", ["cuda", "Torch", "", "triton "])
def test_unknown_backend_is_named_with_the_allowed_ones(name):
    with pytest.raises(DnasError) as err:
        resolve_backend(name)
    assert str(err.value) == f"unknown cost backend {name!r}; allowed: auto, torch, triton"


def test_triton_without_the_package_says_so(monkeypatch):
    _triton_package(monkeypatch, installed=False)
    assert triton_available() is False
    with pytest.raises(RuntimeError) as err:
        resolve_backend("triton")
    msg = str(err.value)
    assert msg.startswith(
        "the triton cost backend cannot run: the `triton` package is not installed"
    )
    assert "use --backend torch otherwise" in msg


def test_triton_that_cannot_run_gives_the_kernels_reason(monkeypatch):
    _triton_package(monkeypatch, installed=True)
    monkeypatch.setattr(dnas_kernels, "available", lambda: False)
    monkeypatch.setattr(dnas_kernels, "unavailable_reason", lambda: "no CUDA GPU, and so on")
    assert triton_available() is False
    with pytest.raises(RuntimeError, match=r"cannot run: no CUDA GPU, and so on\. It needs triton"):
        resolve_backend("triton")
    assert resolve_backend("auto") == "torch"


def _spy(calls: list[tuple[str, int]], name: str):
    def fn(params: torch.Tensor, hw):
        calls.append((name, params.shape[0]))
        n = params.shape[0]
        counters = params[:, :1].repeat(1, 11)  # in_channels in every column: rows stay traceable
        return counters, torch.zeros((n, 4), dtype=torch.int64), torch.zeros(n, dtype=torch.int64)

    return fn


@pytest.mark.parametrize(
    ("name", "expected"), [("torch", "torch"), ("auto", "torch"), ("triton", "triton")]
)
def test_evaluate_runs_the_resolved_backend_chunk_by_chunk(machine, monkeypatch, name, expected):
    machine(gpu=False, triton=True)
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(backend, "bitfusion_cost_torch", _spy(calls, "torch"))
    monkeypatch.setattr(dnas_kernels, "bitfusion_cost", _spy(calls, "triton"), raising=False)
    done: list[int] = []
    res = evaluate(LAYERS, backend=name, chunk=4, progress=done.append)
    assert calls == [(expected, 4), (expected, 2)]
    assert done == [4, 2]
    assert torch.equal(res.counters[:, 0], layers_to_params(LAYERS)[:, 0])  # chunks kept in order


def test_evaluate_refuses_an_unavailable_backend_before_any_work(machine, monkeypatch):
    machine(gpu=False, triton=False)
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(backend, "bitfusion_cost_torch", _spy(calls, "torch"))
    with pytest.raises(RuntimeError, match="cannot run"):
        evaluate(LAYERS, backend="triton")
    with pytest.raises(DnasError, match="unknown cost backend"):
        evaluate(LAYERS, backend="cpu")
    assert calls == []
