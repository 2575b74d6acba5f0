"""Export: integers at their bits (safetensors) reproduce the fake-quantized network, and so does
the ONNX graph in onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from dnas.cli.export import export_run, main
from dnas.data import SyntheticDataModule
from dnas.export import export_integer, load_safetensors, reference_forward, save_safetensors
from dnas.quant.functions import weight_levels
from dnas.space import load_space
from dnas.supernet import ChildNet, recalibrate_bn
from dnas.train import load_child


def _test_images(n: int = 128) -> torch.Tensor:
    data = SyntheticDataModule(num_train=512, num_test=n, arch_fraction=0.0)
    data.setup("test")
    return data.split("test")[0]


def test_integers_stay_within_their_bits_and_round_trip(tmp_path):
    space = load_space("fmnist_mbv2")
    arch = space.random_arch(7)
    torch.manual_seed(0)
    child = ChildNet(space, arch)
    recalibrate_bn(child, [torch.randn(16, 1, 28, 28) for _ in range(3)], 3)
    model = export_integer(child.eval())
    for op in model.graph:
        if op["op"] in ("conv", "linear"):
            q = model.tensors[f"{op['name']}.weight_int"]
            assert q.dtype == torch.int8
            assert int(q.abs().max()) <= weight_levels(op["w_bits"])
    convs = [op for op in model.graph if op["op"] == "conv"]
    assert len(convs) == 2 + sum(2 + (b.expand is not None) for b in arch.blocks if not b.skipped)
    path = save_safetensors(model, tmp_path / "m.safetensors")
    back = load_safetensors(path)
    assert back.graph == model.graph
    for k, v in model.tensors.items():
        assert torch.equal(back.tensors[k], v), k


def test_reference_forward_reproduces_the_trained_child(train_run, tmp_path):
    """From the file alone: same top-1 on a test batch, logits within a tight tolerance."""
    child = load_child(train_run)
    report = export_run(train_run, tmp_path, onnx=True, check_batches=1)
    model = load_safetensors(tmp_path / "model.safetensors")
    x = _test_images()
    with torch.no_grad():
        ref = child(x)
    got = reference_forward(model, x).float()
    assert torch.equal(got.argmax(1), ref.argmax(1))
    # Float rounding differs (an exact integer accumulator against float32 convs), so an activation
    # on a rounding boundary can land one level apart: most images' logits agree to float
    # precision (the median), the others change a little (measured up to 0.021 with one thread).
    diff = (got - ref).abs() / float(ref.abs().max())
    assert float(diff.max()) <= 0.05
    assert float(diff.median()) <= 1e-5
    assert report["integer_top1_agreement"] >= 0.99


def test_onnx_matches_pytorch_on_a_test_batch(train_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    assert main([str(train_run), "-o", str(tmp_path)]) == 0
    sess = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    types = {n.op_type for n in __import__("onnx").load(str(tmp_path / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= types
    x = _test_images()
    with torch.no_grad():
        ref = load_child(train_run)(x).numpy()
    out = sess.run(None, {"input": x.numpy()})[0]
    assert (out.argmax(1) == ref.argmax(1)).all()
    diff = np.abs(out - ref) / np.abs(ref).max()
    assert diff.max() <= 0.05 and np.median(diff) <= 1e-5


def test_export_errors(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2
    assert "model.pt" in capsys.readouterr().err
    assert not (tmp_path / "export").exists()


def test_export_refuses_a_truncated_model_and_a_file_as_output(train_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(train_run, run)
    (tmp_path / "taken").write_text("mine")
    assert main([str(run), "-o", str(tmp_path / "taken"), "--no-onnx"]) == 2
    assert "is a file; give a directory" in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "mine"
    assert main([str(run), "-o", str(tmp_path / "taken" / "sub"), "--no-onnx"]) == 2
    assert "taken is a file, not a directory" in capsys.readouterr().err
    for n in ("0", "-3", "100000000000000000000"):
        assert main([str(run), "--check-batches", n, "--no-onnx"]) == 2
        assert "--check-batches must be a whole number in [1, 1000]" in capsys.readouterr().err
    assert not (run / "export").exists()
    data = (run / "model.pt").read_bytes()
    (run / "model.pt").write_bytes(data[: len(data) // 2])
    assert main([str(run), "--no-onnx"]) == 2
    err = capsys.readouterr().err
    assert "model.pt is not the trained weights of" in err and "rerun dnas-train" in err
    assert len(err.strip().splitlines()) == 1 and not (run / "export").exists()


def test_export_takes_the_run_equals_form(train_run, tmp_path, capsys):
    """``dnas-export run=DIR``, as dnas-search --help prints it."""
    assert main([f"run={train_run}", "-o", str(tmp_path / "out"), "--no-onnx"]) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()


def _mixed_bits(arch):
    """``arch`` with every bit-width raised to at least 3 (trainable in one short epoch)."""
    from dataclasses import replace

    from dnas.space import ConvBits

    def up(b):
        return None if b is None else ConvBits(max(b.w_bits, 3), max(b.a_bits, 3))

    blocks = tuple(
        replace(b, expand=up(b.expand), dw=up(b.dw), project=up(b.project)) for b in arch.blocks
    )
    return replace(arch, blocks=blocks)


@pytest.mark.slow
def test_onnx_agrees_with_pytorch_on_the_fashion_mnist_test_set(tmp_path, monkeypatch):
    """A child with mixed bits (3..8) trained briefly on Fashion-MNIST, exported: onnxruntime and
    the integer reference give PyTorch's top-1 on >= 99.5 % of the 10 000 test images, and the
    median image's logits to float precision."""
    ort = pytest.importorskip("onnxruntime")
    from dnas.cli.train import run
    from dnas.data import FashionMNISTDataModule
    from tests.runs import compose_config

    monkeypatch.setenv("DNAS_CACHE", str(tmp_path / "cache"))
    space = load_space("fmnist_mbv2")
    _mixed_bits(space.random_arch(11)).save(tmp_path / "arch.yaml")
    cfg = compose_config(
        "train",
        f"arch={tmp_path}/arch.yaml",
        "init=scratch",
        "data.limit_train=6000",
        "trainer.max_epochs=1",
        "trainer.enable_model_summary=false",
    )
    out = tmp_path / "train"
    acc = run(cfg, output_dir=out)
    assert acc > 0.3  # well above chance (0.1): agreement is measured on a network that learned
    assert main([str(out)]) == 0
    data = FashionMNISTDataModule(arch_fraction=0.0)
    data.setup("test")
    x = data.split("test")[0]
    assert len(x) == 10_000
    child = load_child(out)
    with torch.no_grad():
        ref = torch.cat([child(b) for b in x.split(1000)]).numpy()
    sess = ort.InferenceSession(str(out / "export" / "model.onnx"))
    got = np.concatenate([sess.run(None, {"input": b.numpy()})[0] for b in x.split(1000)])
    # An activation that lands on a rounding boundary in one runtime and not in the other moves a
    # whole level (1/7 of its range at 3 bits) and carries through the layers after it, so a few
    # images change their top-1. The bulk must agree to float precision (the median image's logits
    # within 1e-4 of the logit scale) and the top-1 on >= 99.5 % of the images: measured 99.84 %
    # to 99.95 % (CI, here); a wrong scale, zero point, rounding or layout moves most images.
    model = load_safetensors(out / "export" / "model.safetensors")
    ints = torch.cat([reference_forward(model, b) for b in x.split(1000)]).float().numpy()
    scale = float(np.abs(ref).max())
    for name, out_ in (("onnxruntime", got), ("reference_forward", ints)):
        agree = float((out_.argmax(1) == ref.argmax(1)).mean())
        median = float(np.median(np.abs(out_ - ref).max(1))) / scale
        print(f"{name}: top-1 agreement {agree:.4f}, median image max |diff| {median:.2e}")
        assert agree >= 0.995, (name, agree)
        assert median <= 1e-4, (name, median)


def test_a_second_export_replaces_the_first_and_a_failed_one_leaves_nothing(
    train_run, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "exp"
    assert main([str(train_run), "-o", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "model.onnx", "arch.yaml"}
    # --no-onnx into it: the earlier model.onnx would not match the new safetensors
    assert main([str(train_run), "-o", str(out), "--no-onnx"]) == 0
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "arch.yaml"}
    from dnas.cli import export as export_cli
    from dnas.cli.common import Terminated

    def stop(*a, **k):
        raise Terminated()

    monkeypatch.setattr(export_cli, "_export", stop)
    fresh = tmp_path / "fresh"
    assert main([str(train_run), "-o", str(fresh)]) == 143
    assert "dnas-export: stopped by SIGTERM; nothing was exported" in capsys.readouterr().err
    assert not fresh.exists()  # nothing that looks like an export
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main([str(train_run), "-o", str(out)]) == 143
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # the old one intact

    def nan(*a, **k):
        raise ValueError("cannot convert float NaN to integer")

    monkeypatch.setattr(export_cli, "_export", nan)
    assert main([str(train_run), "-o", str(fresh)]) == 2
    err = capsys.readouterr().err
    assert "model.pt cannot be exported (cannot convert float NaN to integer)" in err


def test_a_run_whose_files_disagree_is_one_line_without_a_space_hint(train_run, tmp_path, capsys):
    import shutil

    from dnas.space import load_space

    run = tmp_path / "run"
    shutil.copytree(train_run, run)
    (run / "space.yaml").write_text(yaml.safe_dump(load_space("cifar_mbv2").to_dict()))
    assert main([str(run), "--no-onnx"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "does not fit the run's own" in err and "rerun dnas-train" in err
    assert "space=" not in err


def test_an_output_directory_that_is_not_an_export_is_never_replaced_unasked(
    train_run, tmp_path, capsys
):
    """-o a search run replaced its arch.yaml with the child's; -o a folder with the user's own
    arch.yaml and model.onnx replaced one and deleted the other (exit 0 both)."""
    search = tmp_path / "search"
    search.mkdir()
    (search / "arch.yaml").write_text("the search's\n")
    (search / "run.json").write_text("{}")
    for out, fragment in (
        (search, "is a run (run.json)"),
        (train_run, "is the run being exported"),
    ):
        assert main([str(train_run), "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"dnas-export: error: -o {out} {fragment}"), err
    assert (search / "arch.yaml").read_text() == "the search's\n"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "arch.yaml").write_text("my notes\n")
    (mine / "model.onnx").write_bytes(b"my model")
    assert main([str(train_run), "-o", str(mine), "--no-onnx"]) == 2
    err = capsys.readouterr().err
    assert "holds model.onnx, arch.yaml but no model.safetensors" in err and "--force" in err
    assert (mine / "arch.yaml").read_text() == "my notes\n" and (mine / "model.onnx").exists()
    assert main([str(train_run), "-o", str(mine), "--no-onnx", "--force"]) == 0
    assert {p.name for p in mine.iterdir()} == {"model.safetensors", "arch.yaml"}
    (tmp_path / "ed" / "model.onnx").mkdir(parents=True)  # refused before the export's work
    assert main([str(train_run), "-o", str(tmp_path / "ed"), "--force"]) == 2
    assert "model.onnx is a directory; the export writes a file there" in capsys.readouterr().err
