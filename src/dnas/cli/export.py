"""``dnas-export RUN_DIR``: a trained child network (a ``dnas-train`` run) for deployment.

Writes ``RUN_DIR/export/`` (or ``-o DIR``): ``model.safetensors`` (integer weights at their bits,
per-channel scales, activation bits/clips/signedness, batch norm folded; the layer graph and the
architecture in its metadata), ``arch.yaml`` and ``model.onnx`` (QuantizeLinear/DequantizeLinear;
needs ``pip install "dnas[export]"``). Each output is checked before the command returns: the
integer reference forward and, when written, onnxruntime must give the trained network's top-1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import dnas
from dnas.errors import DnasError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dnas-export",
        description=(
            "Export a trained child network (a dnas-train run directory) as integers "
            "(safetensors) and as ONNX with QuantizeLinear/DequantizeLinear."
        ),
        epilog=(
            "examples:\n"
            "  dnas-export outputs/train/2026-11-30/14-00-00\n"
            "  dnas-export RUN_DIR -o deploy/ --no-onnx\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"dnas-export {dnas.__version__}")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a dnas-train run directory")
    p.add_argument("-o", "--output", metavar="DIR", help="output directory (RUN_DIR/export)")
    p.add_argument("--no-onnx", action="store_true", help="write only the safetensors file")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace arch.yaml / model.onnx in DIR even if they are not an earlier export's",
    )
    p.add_argument(
        "--check-batches",
        type=int,
        default=4,
        metavar="N",
        help="random batches of 64 inputs on which the exports are compared (default 4)",
    )
    return p


MAX_CHECK_BATCHES = 1000
"""At most this many random batches of 64 inputs are compared (a larger count ran for hours)."""


def _normalization(run_dir: Path) -> dict[str, str]:
    from dnas.cli.common import read_run_record

    data = (read_run_record(run_dir).get("config") or {}).get("data") or {}
    if "mean" in data and "std" in data:
        return {"input_normalization": f"(x - {data['mean']}) / {data['std']}, x in [0, 1]"}
    return {}


EXPORT_FILES = ("model.safetensors", "model.onnx", "arch.yaml")
"""What an export writes into its directory."""


def check_export_dir(out: Path, run_dir: Path, force: bool = False) -> None:
    """Refuse an output directory where the export would replace what it did not write: a run
    directory (the run's own ``arch.yaml`` would become the export's), or a directory whose
    ``arch.yaml`` / ``model.onnx`` came without a ``model.safetensors`` (not an earlier export),
    unless ``force``. An earlier export in ``out`` is replaced (re-exporting is normal)."""
    from dnas.cli.common import RUN_MARKERS
    from dnas.train.load import TrainError

    if not out.is_dir():
        return
    blocked = [n for n in EXPORT_FILES if (out / n).is_dir()]
    if blocked:
        raise TrainError(
            f"-o {out}: {out / blocked[0]} is a directory; the export writes a file there"
        )
    found = [m for m in RUN_MARKERS if m != "arch.yaml" and (out / m).exists()]
    if found:
        what = "the run being exported" if out.resolve() == run_dir.resolve() else "a run"
        raise TrainError(
            f"-o {out} is {what} ({', '.join(found)}): the export would replace its arch.yaml;"
            " give another -o (default: RUN_DIR/export)"
        )
    held = [n for n in EXPORT_FILES if (out / n).exists()]
    if held and "model.safetensors" not in held and not force:
        raise TrainError(
            f"-o {out} holds {', '.join(held)} but no model.safetensors: not an earlier export;"
            " give another -o or --force to replace them"
        )


def export_run(run_dir: Path, out: Path, onnx: bool = True, check_batches: int = 4) -> dict:
    """Export a run directory; returns what was written and the agreement figures.

    Everything is written into a hidden staging directory inside ``out`` first and moved in when
    the checks are done, replacing an earlier export's files (a ``model.onnx`` of an earlier
    export is removed by a ``--no-onnx`` one: the pair would not match); a stopped or failed
    export leaves no file that looks like a finished one.
    """
    import shutil
    import tempfile

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-export-", dir=out))
    try:
        report = _export(run_dir, staging, onnx, check_batches)
        for name in EXPORT_FILES[:2]:  # an earlier export's model files
            (out / name).unlink(missing_ok=True)
        written = {}
        for kind, path in report["written"].items():
            written[kind] = str(Path(path).replace(out / Path(path).name))
        Path(staging / "arch.yaml").replace(out / "arch.yaml")
        report["written"] = written
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()


def _export_graph(run_dir: Path, out: Path, onnx: bool, check_batches: int) -> dict:
    """The export of a converted network's training (``dnas.export.graph``): safetensors and
    ONNX, each checked against the trained network as for a space's export."""
    import torch

    from dnas.export.graph import export_graph_integer, reference_forward_graph
    from dnas.export.integer import load_safetensors, save_safetensors
    from dnas.graph.load import load_graph_child
    from dnas.train.load import ARCH_FILE

    if onnx:
        _check_onnx_installed()
    child, graph, _, _ = load_graph_child(run_dir)
    arch_text = (run_dir / ARCH_FILE).read_text()
    model = export_graph_integer(
        child, meta={"arch_yaml": arch_text, "network": graph.name, **_normalization(run_dir)}
    )
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(64, *graph.input_shape, generator=gen) for _ in range(max(1, check_batches))]
    with torch.no_grad():
        ref = torch.cat([child(x) for x in xs])
    written = {"safetensors": save_safetensors(model, out / "model.safetensors")}
    (out / ARCH_FILE).write_text(arch_text)
    back = load_safetensors(written["safetensors"])
    got = torch.cat([reference_forward_graph(back, x) for x in xs]).float()
    report = {
        "integer_top1_agreement": float((got.argmax(1) == ref.argmax(1)).float().mean()),
        "integer_max_abs_diff": float((got - ref).abs().max()),
    }
    if onnx:
        from dnas.export.onnx import graph_to_onnx, save_onnx

        proto = graph_to_onnx(back, tuple(graph.input_shape), graph.num_classes)
        written["onnx"] = save_onnx(proto, out / "model.onnx")
        report.update(_onnx_agreement(written["onnx"], xs, ref))
    report["written"] = {k: str(v) for k, v in written.items()}
    return report


def _check_onnx_installed() -> None:
    try:
        import onnx as _onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise DnasError(
            'ONNX export needs onnx and onnxruntime: pip install "dnas[export]" (or pass --no-onnx)'
        ) from None


def _onnx_agreement(path, xs, ref) -> dict:
    """onnxruntime's top-1 agreement and largest logit difference with the trained network."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    o = np.concatenate([sess.run(None, {"input": x.numpy()})[0] for x in xs])
    return {
        "onnx_top1_agreement": float((o.argmax(1) == ref.argmax(1).numpy()).mean()),
        "onnx_max_abs_diff": float(np.abs(o - ref.numpy()).max()),
    }


def _export(run_dir: Path, out: Path, onnx: bool, check_batches: int) -> dict:
    import torch

    from dnas.cli.common import read_run_record
    from dnas.export import export_integer, load_safetensors, reference_forward, save_safetensors
    from dnas.graph.load import graph_record
    from dnas.train.load import ARCH_FILE, load_child

    if graph_record(read_run_record(run_dir)) is not None:
        return _export_graph(run_dir, out, onnx, check_batches)
    child = load_child(run_dir)
    arch_text = (run_dir / ARCH_FILE).read_text()
    space = child.space
    if onnx:
        try:
            import onnx as _onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError:
            raise DnasError(
                'ONNX export needs onnx and onnxruntime: pip install "dnas[export]" '
                "(or pass --no-onnx)"
            ) from None
    model = export_integer(
        child, meta={"arch_yaml": arch_text, "space": space.name, **_normalization(run_dir)}
    )
    gen = torch.Generator().manual_seed(0)
    shape = (space.in_channels, space.resolution, space.resolution)
    xs = [torch.randn(64, *shape, generator=gen) for _ in range(max(1, check_batches))]
    with torch.no_grad():
        ref = torch.cat([child(x) for x in xs])
    written = {"safetensors": save_safetensors(model, out / "model.safetensors")}
    (out / ARCH_FILE).write_text(arch_text)
    back = load_safetensors(written["safetensors"])
    got = torch.cat([reference_forward(back, x) for x in xs]).float()
    report = {
        "integer_top1_agreement": float((got.argmax(1) == ref.argmax(1)).float().mean()),
        "integer_max_abs_diff": float((got - ref).abs().max()),
    }
    if onnx:
        import numpy as np
        import onnxruntime as ort

        from dnas.export.onnx import save_onnx, to_onnx

        proto = to_onnx(back, shape, space.num_classes)
        written["onnx"] = save_onnx(proto, out / "model.onnx")
        sess = ort.InferenceSession(str(written["onnx"]), providers=["CPUExecutionProvider"])
        o = np.concatenate([sess.run(None, {"input": x.numpy()})[0] for x in xs])
        report["onnx_top1_agreement"] = float((o.argmax(1) == ref.argmax(1).numpy()).mean())
        report["onnx_max_abs_diff"] = float(np.abs(o - ref.numpy()).max())
    report["written"] = {k: str(v) for k, v in written.items()}
    return report


def main(argv: list[str] | None = None) -> int:
    """``dnas-export``; SIGTERM stops it like Ctrl-C (one line, 143, nothing exported)."""
    import signal
    import threading

    from dnas.cli.common import raise_terminated

    if threading.current_thread() is not threading.main_thread():
        return _main(argv)
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from dnas.train.load import TrainError

    given = args.run_dir
    if given.startswith("run="):  # the Hydra-style form other commands' help prints
        given = given[len("run=") :]
    run_dir = Path(given).expanduser()
    out = Path(args.output).expanduser() if args.output else run_dir / "export"
    try:
        if args.output is not None and not args.output.strip():
            raise TrainError("-o is empty; give a directory, or leave -o out for RUN_DIR/export")
        if run_dir.is_file():
            raise TrainError(
                f"{run_dir} is a file; give the dnas-train run directory (it holds model.pt)"
            )
        if not run_dir.is_dir():
            raise TrainError(f"{run_dir}: no such run directory")
        if not 1 <= args.check_batches <= MAX_CHECK_BATCHES:
            raise TrainError(
                f"--check-batches must be a whole number in [1, {MAX_CHECK_BATCHES}], "
                f"got {args.check_batches}"
            )
        if out.exists() and not out.is_dir():
            raise TrainError(f"-o {out} is a file; give a directory (created if missing)")
        if any(p.exists() and not p.is_dir() for p in out.parents):
            bad = next(p for p in out.parents if p.exists() and not p.is_dir())
            raise TrainError(f"-o {out}: {bad} is a file, not a directory")
        check_export_dir(out, run_dir, args.force)
        report = export_run(run_dir, out, onnx=not args.no_onnx, check_batches=args.check_batches)
    except (DnasError, FileNotFoundError) as e:
        print(f"dnas-export: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # e.g. NaN weights: "cannot convert float NaN to integer"
        print(
            f"dnas-export: error: {run_dir}/model.pt cannot be exported ({e}): are its weights "
            "finite? rerun dnas-train",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt as e:
        from dnas.cli.common import Terminated

        name, code = ("SIGTERM", 143) if isinstance(e, Terminated) else ("an interrupt", 130)
        print(f"dnas-export: stopped by {name}; nothing was exported", file=sys.stderr)
        return code
    for kind, path in report["written"].items():
        print(f"{kind:12s} {path}")
    n = 64 * args.check_batches
    print(
        f"check on {n} random inputs: integer reference top-1 agreement "
        f"{100 * report['integer_top1_agreement']:.2f}% (max |Δlogit| "
        f"{report['integer_max_abs_diff']:.2e})"
        + (
            f", onnxruntime {100 * report['onnx_top1_agreement']:.2f}% "
            f"(max |Δlogit| {report['onnx_max_abs_diff']:.2e})"
            if "onnx_top1_agreement" in report
            else ""
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
