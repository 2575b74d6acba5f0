"""``dnas-cost``: evaluate the BitFusion cost model on layers listed in a CSV file."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from dnas.atomic import atomic_path
from dnas.cost.batch import COUNTER_COLUMNS, PARAM_COLUMNS
from dnas.cost.hardware import load_hardware
from dnas.cost.layer import LayerShape

REQUIRED = PARAM_COLUMNS[:8]  # in_channels … a_bits
OPTIONAL = {"groups": "1", "im2col": "0"}
OUTPUT = (
    "cycles",
    "compute_cycles",
    "mem_stall_cycles",
    "latency_ms",
    "total_energy_nJ",
    "core_energy_nJ",
    "sram_energy_nJ",
    "dram_energy_nJ",
    "dram_read_bits",
    "dram_write_bits",
    "best_tiling",
    "best_loop_order",
)


class InputError(ValueError):
    """A problem with the user's input, reported without a traceback."""


def read_layers(
    path: Path, pmax_bits: int
) -> tuple[list[str], list[dict[str, str]], list[LayerShape]]:
    """Parse and validate every row before any work starts; errors name the line and field."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise InputError(
                f"{path}: missing column(s) {', '.join(missing)}; required: {', '.join(REQUIRED)}"
                f" (optional: groups, im2col)"
            )
        rows, layers = [], []
        for row in reader:
            line = reader.line_num
            values = {}
            for col in (*REQUIRED, *OPTIONAL):
                raw = row.get(col)
                raw = OPTIONAL[col] if raw in (None, "") and col in OPTIONAL else raw
                try:
                    values[col] = int(str(raw).strip())
                except ValueError:
                    raise InputError(
                        f"{path}:{line}: field {col!r} must be an integer, got {raw!r}"
                    ) from None
            if values["im2col"] not in (0, 1):
                raise InputError(f"{path}:{line}: field 'im2col' must be 0 or 1")
            for col in ("w_bits", "a_bits"):
                if values[col] > pmax_bits:
                    raise InputError(
                        f"{path}:{line}: field {col!r}={values[col]} exceeds the hardware's "
                        f"pmax_bits={pmax_bits}"
                    )
            values["im2col"] = bool(values["im2col"])
            try:
                layers.append(LayerShape(**values))
            except ValueError as e:
                raise InputError(f"{path}:{line}: {e}") from None
            rows.append(row)
    if not layers:
        raise InputError(f"{path}: no layer rows")
    return header, rows, layers


def write_atomic(path: Path, header: list[str], rows: list[dict]) -> None:
    """Write a CSV through a temporary file and a rename: never a partial file."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def cmd_eval(args: argparse.Namespace) -> None:
    from rich.progress import Progress

    from dnas.cost.backend import evaluate, resolve_backend

    hw = load_hardware(args.hardware)
    header, rows, layers = read_layers(Path(args.input), hw.pmax_bits)
    backend = resolve_backend(args.backend)
    t0 = time.perf_counter()
    with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"costing ({backend})", total=len(layers))
        res = evaluate(layers, hw, backend, chunk=1024, progress=lambda k: bar.advance(task, k))
    bad = res.infeasible.nonzero().flatten().tolist()
    if bad:
        first = bad[0]
        raise InputError(
            f"{args.input}: {len(bad)} layer(s) fit no tiling of hardware {hw.name!r}'s buffers, "
            f"first at data row {first + 1}: {layers[first]}"
        )
    energy = res.energies_nj(hw)
    latency = res.latency_ms(hw).tolist()
    cols = {name: res.counters[:, i].tolist() for i, name in enumerate(COUNTER_COLUMNS)}
    en = {k: v.tolist() for k, v in energy.items()}
    for i, row in enumerate(rows):
        row.update(
            cycles=cols["cycles"][i],
            compute_cycles=cols["compute_cycles"][i],
            mem_stall_cycles=cols["mem_stall_cycles"][i],
            latency_ms=repr(latency[i]),
            total_energy_nJ=repr(en["total"][i]),
            core_energy_nJ=repr(en["core"][i]),
            sram_energy_nJ=repr(en["sram"][i]),
            dram_energy_nJ=repr(en["dram"][i]),
            dram_read_bits=cols["dram_read_bits"][i],
            dram_write_bits=cols["dram_write_bits"][i],
            best_tiling=res.tiling_json(i),
            best_loop_order=">".join(res.loop_order(i)),
        )
    out_header = header + [c for c in OUTPUT if c not in header]
    write_atomic(Path(args.output), out_header, rows)
    dt = time.perf_counter() - t0
    print(
        f"{len(rows)} layers costed on {hw.name} with the {backend} backend in {dt:.2f} s "
        f"-> {args.output}",
        file=sys.stderr,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dnas-cost",
        description="Evaluate the BitFusion cost model (cycles, energy) of layers.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser(
        "eval",
        help="cost every layer of a CSV",
        description=(
            "IN.csv has columns " + ",".join(REQUIRED) + " and optional groups (default 1; "
            "groups=in=out channels is depthwise) and im2col (default 0). Other columns are "
            "carried through; output columns already present are overwritten."
        ),
    )
    ev.add_argument("input", metavar="IN.csv")
    ev.add_argument("-o", "--output", metavar="OUT.csv", required=True)
    ev.add_argument(
        "--hardware",
        default="bitfusion",
        metavar="NAME|PATH",
        help="built-in hardware name or YAML path (default: bitfusion)",
    )
    ev.add_argument("--backend", default="auto", choices=("auto", "torch", "triton"))
    ev.set_defaults(func=cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (InputError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"dnas-cost: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
