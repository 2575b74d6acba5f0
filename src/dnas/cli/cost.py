"""``dnas-cost``: evaluate the BitFusion cost model on the layers of a CSV file or an architecture.

``dnas-cost eval IN.csv -o OUT.csv`` costs arbitrary layers; ``dnas-cost arch ARCH.yaml`` costs every
layer an architecture runs (one table row per layer: shape, bits, cycles, memory-stall share,
latency, energy) and checks the totals against the ``latency_ms``/``energy_mj`` the YAML records.

A layer is *memory-bound* when it stalls on DRAM longer than it computes:
``mem_stall_cycles > compute_cycles``, i.e. a memory-stall share above 50 % of its cycles
(``cycles = compute_cycles + mem_stall_cycles``).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import dnas
from dnas.atomic import atomic_path, foreign_file
from dnas.cost.batch import COUNTER_COLUMNS, PARAM_COLUMNS
from dnas.cost.hardware import load_hardware
from dnas.cost.layer import LayerShape, arch_layer_shapes
from dnas.errors import DnasError, load_yaml

if TYPE_CHECKING:
    from dnas.cost.hardware import BitFusionConfig
    from dnas.space import Architecture, SearchSpace

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


class InputError(DnasError):
    """A problem with the user's input, reported without a traceback."""


def read_layers(
    path: Path, pmax_bits: int, pmin_bits: int = 1
) -> tuple[list[str], list[dict[str, str]], list[LayerShape]]:
    """Parse and validate every row before any work starts; errors name the line and field.

    A UTF-8 byte-order mark and CRLF line ends (as spreadsheets write them) are accepted.
    """
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give the layers CSV (IN.csv)")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save the CSV as UTF-8 "
            "(spreadsheets: 'CSV UTF-8')"
        ) from None
    if "\x00" in text:
        raise InputError(f"{path}: holds NUL bytes: a binary file, not a CSV")
    with io.StringIO(text, newline="") as f:
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
            if None in row:
                extra = len(row[None])
                raise InputError(
                    f"{path}:{line}: {extra} more field(s) than the header's {len(header)} "
                    "(a trailing comma?)"
                )
            values = {}
            for col in (*REQUIRED, *OPTIONAL):
                raw = row.get(col)
                raw = OPTIONAL[col] if raw in (None, "") and col in OPTIONAL else raw
                if raw is None:
                    raise InputError(
                        f"{path}:{line}: no field {col!r}: the row has fewer fields than the "
                        f"header's {len(header)}"
                    )
                text = str(raw).strip()
                # digits only: Python's int() also reads "1_6" as 16 and " +3" as 3
                if not re.fullmatch(r"-?[0-9]+", text):
                    raise InputError(
                        f"{path}:{line}: field {col!r} must be an integer, got {raw!r}"
                    )
                values[col] = int(text)
            if values["im2col"] not in (0, 1):
                raise InputError(f"{path}:{line}: field 'im2col' must be 0 or 1")
            for col in ("w_bits", "a_bits"):
                if values[col] > pmax_bits:
                    raise InputError(
                        f"{path}:{line}: field {col!r}={values[col]} exceeds the hardware's "
                        f"pmax_bits={pmax_bits}"
                    )
                if values[col] < pmin_bits:
                    raise InputError(
                        f"{path}:{line}: field {col!r}={values[col]} is below the hardware's "
                        f"pmin_bits={pmin_bits} (its smallest operand; give {pmin_bits})"
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


def check_output(
    output: str,
    input_path: Path | None,
    flag: str = "-o",
    columns: list[str] | None = None,
    force: bool = False,
) -> Path | None:
    """Where the results go (None: standard output, ``-o -``), checked before any costing:
    not a directory, in a directory that exists (none is created), not the input itself, and not
    a file this command did not write (a CSV without the output ``columns``) unless ``force``."""
    if output == "-":
        return None
    if not output.strip():
        raise InputError(f"{flag} is empty; give a file name (or - for standard output)")
    out = Path(output)
    if out.is_dir():
        raise InputError(
            f"{flag} {output}: is a directory; give a file name, e.g. {out / 'costs.csv'}"
        )
    target = Path(os.path.realpath(out))
    if not target.parent.is_dir():
        raise InputError(f"{flag} {output}: directory {target.parent} does not exist")
    if (
        input_path is not None
        and target.exists()
        and input_path.exists()
        and os.path.samefile(target, input_path)
    ):
        raise InputError(f"{flag} {output}: is the input file; give another name")
    held = None if force or columns is None else foreign_file(target, csv_columns=columns)
    if held:
        raise InputError(
            f"{flag} {output}: holds {held}; give another name or --force to replace it"
        )
    return out


def write_atomic(path: Path | None, header: list[str], rows: list[dict]) -> None:
    """Write a CSV through a temporary file and a rename: never a partial file.

    ``None`` writes to standard output; an existing file that is not a regular file (a device,
    a pipe) is written in place, since it cannot be replaced; a symlink is written through.
    """

    def write(f) -> None:
        w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)

    if path is None:
        write(sys.stdout)
        sys.stdout.flush()
        return
    real = Path(os.path.realpath(path))
    if real.exists() and not real.is_file():
        with open(real, "w", newline="") as f:
            write(f)
        return
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        write(f)


def cmd_eval(args: argparse.Namespace) -> None:
    from rich.progress import Progress

    from dnas.cost.backend import evaluate, resolve_backend

    hw = load_hardware(args.hardware)
    output = check_output(args.output, Path(args.input), columns=list(OUTPUT), force=args.force)
    header, rows, layers = read_layers(Path(args.input), hw.pmax_bits, hw.pmin_bits)
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
    write_atomic(output, out_header, rows)
    dt = time.perf_counter() - t0
    print(
        f"{len(rows)} layers costed on {hw.name} with the {backend} backend in {dt:.2f} s "
        f"-> {args.output}",
        file=sys.stderr,
    )


# ------------------------------------------------------------------------------------ dnas-cost arch
ARCH_COLUMNS = (
    "layer",
    "role",
    "block",
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "output_h",
    "groups",
    "depthwise",
    "im2col",
    "w_bits",
    "a_bits",
    "macs",
    "cycles",
    "compute_cycles",
    "mem_stall_cycles",
    "mem_stall_share",
    "memory_bound",
    "latency_ms",
    "energy_mj",
)


def layer_name(key) -> str:
    """``stem``, ``expand.3``, ``dw.3``, ``project.3``, ``last``, ``classifier``."""
    return key.role if key.block < 0 else f"{key.role}.{key.block}"


def load_arch(path: Path) -> tuple[Architecture, Path]:
    """The architecture of a YAML file, or of the ``arch.yaml`` in a run directory, and its path.

    Raises:
        InputError: saying in one line why there is no architecture there.
    """
    import yaml

    from dnas.space import Architecture, SpaceError

    if path.is_dir():
        if not (path / "arch.yaml").is_file():
            raise InputError(f"{path} is a directory without an arch.yaml")
        path = path / "arch.yaml"
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return Architecture.load(path), path
    except yaml.YAMLError as e:
        reason = " ".join(str(e).split())
        raise InputError(f"{path}: not valid YAML ({reason})") from None
    except SpaceError as e:
        where = e.field.removeprefix(str(path)).removeprefix(": ")  # load() prefixes the path
        detail = f"{where}: {e.reason}" if where else e.reason
        raise InputError(
            f"{path} is not an architecture (an arch.yaml written by dnas-search or "
            f"Architecture.save): {detail}"
        ) from None


def _load_space(name_or_path: str | Path, what: str) -> SearchSpace:
    import yaml

    from dnas.space import SpaceError, load_space

    try:
        return load_space(name_or_path)
    except SpaceError as e:
        raise InputError(f"{what}: not a valid search space ({e})") from None
    except yaml.YAMLError as e:
        raise InputError(f"{what}: not valid YAML ({' '.join(str(e).split())})") from None


def resolve_arch_space(arch: Architecture, arch_path: Path, space_arg: str | None) -> SearchSpace:
    """The space to cost ``arch`` in, checked to hold every choice of it.

    ``--space`` (a built-in name or a YAML path); else the ``space.yaml`` a run writes beside its
    ``arch.yaml`` (the exact space of the search, overrides included); else the built-in space the
    architecture names.
    """
    from dnas.space import SpaceError, builtin_space_names

    run_space = arch_path.parent / "space.yaml"
    if space_arg is not None:
        space = _load_space(space_arg, f"--space {space_arg}")
    elif run_space.is_file():
        space = _load_space(run_space, str(run_space))
    elif not arch.space:
        raise InputError(f"{arch_path} names no search space; give one with --space NAME|PATH")
    elif arch.space not in builtin_space_names():
        raise InputError(
            f"{arch_path} was derived in space {arch.space!r}, which is not built in "
            f"(built-in: {', '.join(builtin_space_names())}); give its config with --space PATH"
        )
    else:
        space = _load_space(arch.space, f"space {arch.space!r}")
    try:
        space.validate_arch(arch)
    except SpaceError as e:
        if space_arg is not None and arch.space and arch.space != space.name:
            hint = f"it names space {arch.space!r}: try --space {arch.space}"
        else:
            hint = "give the space it was derived in with --space NAME|PATH"
        raise InputError(f"{arch_path} does not fit space {space.name!r}: {e}; {hint}") from None
    return space


def reference_hardware(arch_path: Path) -> tuple[BitFusionConfig, str]:
    """The hardware the YAML's ``latency_ms``/``energy_mj`` were computed on.

    The run's ``.hydra/config.yaml`` beside the architecture when it records a hardware (a search
    run with ``hardware.*`` overrides), otherwise the default BitFusion.
    """
    import yaml

    from dnas.cost.hardware import BitFusionConfig

    cfg_file = arch_path.parent / ".hydra" / "config.yaml"
    if cfg_file.is_file():
        try:
            cfg = load_yaml(cfg_file.read_text())
            if isinstance(cfg, dict) and isinstance(cfg.get("hardware"), dict):
                return BitFusionConfig.from_dict(cfg["hardware"]), f"{cfg_file}'s hardware"
        except (yaml.YAMLError, ValueError, TypeError):
            pass  # not a readable run config: fall back to the default
    return BitFusionConfig(), "the default hardware"


def _cost_rows(
    named: list[tuple[str, object]], cols: dict[str, list], tags: list[tuple[object, object]]
) -> tuple[list[dict], dict]:
    """Per-layer rows (ARCH_COLUMNS) of costed layers and their totals, latency and energy
    summed in the layers' order. ``tags``: each layer's ``(role, block)``."""
    latency, energy, cycles = cols["latency_ms"], cols["energy_mj"], cols["cycles"]
    compute, stall = cols["compute_cycles"], cols["mem_stall_cycles"]
    rows = []
    lat_total = en_total = 0.0
    for i, ((name, s), (role, block)) in enumerate(zip(named, tags)):
        lat_total += latency[i]
        en_total += energy[i]
        rows.append(
            {
                "layer": name,
                "role": role,
                "block": block,
                "in_channels": s.in_channels,
                "out_channels": s.out_channels,
                "kernel_size": s.kernel_size,
                "stride": s.stride,
                "output_h": s.output_h,
                "groups": s.groups,
                "depthwise": int(s.depthwise),
                "im2col": int(s.im2col),
                "w_bits": s.w_bits,
                "a_bits": s.a_bits,
                "macs": s.macs,
                "cycles": cycles[i],
                "compute_cycles": compute[i],
                "mem_stall_cycles": stall[i],
                "mem_stall_share": stall[i] / cycles[i] if cycles[i] else 0.0,
                "memory_bound": int(stall[i] > compute[i]),
                "latency_ms": latency[i],
                "energy_mj": energy[i],
            }
        )
    tc, ts = sum(cycles), sum(stall)
    total = {
        "layer": "total",
        "macs": sum(r["macs"] for r in rows),
        "cycles": tc,
        "compute_cycles": sum(compute),
        "mem_stall_cycles": ts,
        "mem_stall_share": ts / tc if tc else 0.0,
        "memory_bound": "",  # a property of single layers
        "latency_ms": lat_total,
        "energy_mj": en_total,
    }
    return rows, total


def cost_arch(
    space: SearchSpace, arch: Architecture, hw: BitFusionConfig, backend: str = "auto"
) -> tuple[list[dict], dict]:
    """Cost every layer ``arch`` runs on ``hw``: per-layer rows (ARCH_COLUMNS) and the totals.

    Latency and energy are derived exactly as ``build_table`` derives a table's entries, and the
    totals are summed in ``CostTable.arch_cost``'s order (``space.arch_indices``), so on the
    table's hardware they equal ``table.arch_cost(space, arch)`` bit for bit.
    """
    from dnas.cost.backend import cost_named_layers

    shapes = arch_layer_shapes(space, arch)  # ordered like space.arch_indices(arch)
    named = [(layer_name(k), s) for k, s in shapes.items()]
    try:
        cols = cost_named_layers(named, hw, backend)
    except DnasError as e:
        raise InputError(str(e)) from None
    # the same float additions, in the same order, as arch_cost
    return _cost_rows(named, cols, [(k.role, k.block) for k in shapes])


def _csv_row(row: dict) -> dict:
    return {k: repr(v) if isinstance(v, float) else v for k, v in row.items()}


def _print_arch_table(rows: list[dict], total: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 132)  # no wrapped columns in a pipe or a log
    t = Table(title=title, caption="memory-bound: mem_stall_cycles > compute_cycles")
    for name, justify in (
        ("layer", "left"),
        ("in→out", "right"),
        ("kernel", "right"),
        ("stride", "right"),
        ("out", "right"),
        ("w/a bits", "center"),
        ("cycles", "right"),
        ("mem stall", "right"),
        ("latency (ms)", "right"),
        ("energy (mJ)", "right"),
        ("bound", "left"),
    ):
        t.add_column(name, justify=justify, no_wrap=True)
    for r in rows:
        dw = r["depthwise"]
        t.add_row(
            r["layer"],
            f"{r['in_channels']} dw" if dw else f"{r['in_channels']}→{r['out_channels']}",
            f"{r['kernel_size']}×{r['kernel_size']}",
            str(r["stride"]),
            f"{r['output_h']}×{r['output_h']}",
            f"{r['w_bits']}/{r['a_bits']}",
            f"{r['cycles']:,}",
            f"{100 * r['mem_stall_share']:.1f} %",
            f"{r['latency_ms']:.6f}",
            f"{r['energy_mj']:.6f}",
            "[yellow]memory[/]" if r["memory_bound"] else "compute",
        )
    t.add_section()
    t.add_row(
        f"total ({len(rows)} layers)",
        "",
        "",
        "",
        "",
        "",
        f"{total['cycles']:,}",
        f"{100 * total['mem_stall_share']:.1f} %",
        f"{total['latency_ms']:.6f}",
        f"{total['energy_mj']:.6f}",
        f"{sum(r['memory_bound'] for r in rows)} memory",
        style="bold",
    )
    console.print(t)


def cost_graph_choice(graph, choice, hw: BitFusionConfig, backend: str = "auto"):
    """``cost_arch`` for a converted network's choice: the same rows (``role`` is the layer's
    kind, ``block`` empty) and totals, summed in execution order as ``graph_cost`` sums them."""
    from dnas.cost.backend import cost_named_layers
    from dnas.cost.graph import graph_layer_shapes

    named = graph_layer_shapes(graph, choice)
    try:
        cols = cost_named_layers(named, hw, backend)
    except DnasError as e:
        raise InputError(str(e)) from None
    return _cost_rows(named, cols, [(graph.layer(name).kind, "") for name, _ in named])


def _graph_run(path: Path):
    """``(record, arch.yaml path)`` when ``path`` (a run directory or its arch.yaml) is a run of
    a converted network, else None."""
    from dnas.cli.common import read_run_record
    from dnas.graph.load import graph_record

    arch_path = path / "arch.yaml" if path.is_dir() else path
    record = read_run_record(arch_path.parent)
    return (record, arch_path) if graph_record(record) is not None else None


def cmd_arch_graph(args: argparse.Namespace, record: dict, arch_path: Path) -> int:
    """``dnas-cost arch`` on a converted network's run: its choice costed layer by layer and the
    totals compared with what its ``arch.yaml`` recorded."""
    import yaml

    from dnas.cost.backend import resolve_backend
    from dnas.graph.io import load_choice
    from dnas.graph.load import rebuild_supernet

    csv_out = (
        check_output(args.csv, None, "--csv", list(ARCH_COLUMNS), args.force) if args.csv else None
    )
    if args.space is not None:
        raise InputError(f"--space: {arch_path} is a network's choice, not a space's architecture")
    graph = rebuild_supernet(record).graph
    choice, metrics = load_choice(arch_path, graph)
    try:
        hw = load_hardware(args.hardware)
    except yaml.YAMLError as e:
        raise InputError(
            f"--hardware {args.hardware}: not valid YAML ({' '.join(str(e).split())})"
        ) from None
    rows, total = cost_graph_choice(graph, choice, hw, resolve_backend(args.backend))
    if csv_out is not None:
        write_atomic(csv_out, list(ARCH_COLUMNS), [_csv_row(r) for r in rows] + [_csv_row(total)])
    _print_arch_table(rows, total, f"{arch_path} on {hw.name} (network {graph.name})")
    lat, en = total["latency_ms"], total["energy_mj"]
    print(
        f"total: latency_ms={lat!r} energy_mj={en!r} bitops={graph.bitops(choice)} "
        f"size_kib={graph.size_kib(choice)!r} ({len(rows)} layers, {hw.name})"
    )
    recorded = {m: metrics[m] for m in ("latency_ms", "energy_mj") if m in metrics}
    if not recorded:
        print(f"{arch_path} records no latency_ms/energy_mj: nothing to compare")
        return 0
    ref, ref_name = reference_hardware(arch_path)
    if hw.fingerprint() != ref.fingerprint():
        print(f"{arch_path}'s costs are for {ref.name} ({ref_name}): not compared")
        return 0
    got = {"latency_ms": lat, "energy_mj": en}
    differ = [m for m, v in recorded.items() if got[m] != v]
    if differ:
        detail = ", ".join(f"{m} {got[m]!r} != {recorded[m]!r} recorded" for m in differ)
        print(
            f"dnas-cost: error: the totals do not match {arch_path}'s metrics on {hw.name}: "
            f"{detail}",
            file=sys.stderr,
        )
        return 1
    print(f"matches {arch_path}'s " + " and ".join(recorded) + " exactly")
    return 0


def cmd_arch(args: argparse.Namespace) -> int:
    import yaml

    from dnas.cost.backend import resolve_backend

    graph_run = _graph_run(Path(args.arch))
    if graph_run is not None:
        return cmd_arch_graph(args, *graph_run)
    csv_out = check_output(args.csv, None, "--csv") if args.csv is not None else None
    arch, arch_path = load_arch(Path(args.arch))
    if csv_out is not None and csv_out.exists() and os.path.samefile(csv_out, arch_path):
        raise InputError(f"--csv {args.csv}: is the architecture file; give another name")
    if csv_out is not None:
        check_output(args.csv, None, "--csv", list(ARCH_COLUMNS), args.force)
    space = resolve_arch_space(arch, arch_path, args.space)
    try:
        hw = load_hardware(args.hardware)
    except yaml.YAMLError as e:
        reason = " ".join(str(e).split())
        raise InputError(f"--hardware {args.hardware}: not valid YAML ({reason})") from None
    backend = resolve_backend(args.backend)
    rows, total = cost_arch(space, arch, hw, backend)
    if args.csv:
        out = [_csv_row(r) for r in rows] + [_csv_row(total)]
        write_atomic(csv_out, list(ARCH_COLUMNS), out)
    _print_arch_table(rows, total, f"{arch_path} on {hw.name} (space {space.name})")
    lat, en = total["latency_ms"], total["energy_mj"]
    print(f"total: latency_ms={lat!r} energy_mj={en!r} ({len(rows)} layers, {hw.name})")
    if args.csv:
        print(f"per-layer costs -> {args.csv}", file=sys.stderr)
    recorded = {m: arch.metrics[m] for m in ("latency_ms", "energy_mj") if m in arch.metrics}
    if not recorded:
        print(f"{arch_path} records no latency_ms/energy_mj: nothing to compare")
        return 0
    ref, ref_name = reference_hardware(arch_path)
    if hw.fingerprint() != ref.fingerprint():
        theirs = ref.to_dict()
        diff = sorted(k for k, v in hw.to_dict().items() if k != "name" and theirs[k] != v)
        print(
            f"{arch_path}'s latency_ms/energy_mj are for {ref.name} ({ref_name}); "
            f"--hardware {args.hardware} differs in {', '.join(diff)}: not compared"
        )
        return 0
    got = {"latency_ms": lat, "energy_mj": en}
    differ = [m for m, v in recorded.items() if got[m] != v]
    if differ and arch.table_hash:
        other = _other_pricing_table(space, hw, arch.table_hash)
        if other is not None:
            print(f"{arch_path}'s latency_ms/energy_mj were read from {other}: not compared")
            return 0
    if differ:
        detail = ", ".join(f"{m} {got[m]!r} != {recorded[m]!r} recorded" for m in differ)
        print(
            f"dnas-cost: error: the totals do not match {arch_path}'s metrics on {hw.name}: "
            f"{detail} (was it costed with another space, hardware or dnas version?)",
            file=sys.stderr,
        )
        return 1
    print(f"matches {arch_path}'s " + " and ".join(recorded) + " exactly")
    return 0


def _other_pricing_table(space, hw, table_hash: str) -> str | None:
    """When ``table_hash`` (the table an architecture was priced by) is not the BitFusion-model
    table of ``space`` on ``hw``: which table it was (a cached one with that hash, e.g. a measured
    device's, named with its source), or a description of it. None when it is that table."""
    from dnas.cost.table import CostTable, TableError, default_table_path, load_or_build

    model, _, _ = load_or_build(space, hw)
    if model.header.content_hash == table_hash:
        return None
    for path in sorted(default_table_path(space, hw).parent.glob("*.pt")):
        try:
            t = CostTable.load(path)
        except (TableError, OSError):
            continue
        if t.header.content_hash == table_hash:
            what = (
                f"the measured table of {t.header.hardware_name!r}"
                if t.header.source == "measured"
                else f"a table of hardware {t.header.hardware_name!r}"
            )
            return f"{what} ({path})"
    return (
        f"another cost table (hash {table_hash[:12]}…, e.g. a measured device's or other "
        f"hardware's), not the BitFusion model's table of {space.name} on {hw.name}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dnas-cost",
        description="Evaluate the BitFusion cost model (cycles, energy) of layers.",
    )
    parser.add_argument("--version", action="version", version=f"dnas-cost {dnas.__version__}")
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
    ev.add_argument(
        "-o", "--output", metavar="OUT.csv", required=True, help="results file ('-': stdout)"
    )
    ev.add_argument(
        "--hardware",
        default="bitfusion",
        metavar="NAME|PATH",
        help="built-in hardware name or YAML path (default: bitfusion)",
    )
    ev.add_argument("--backend", default="auto", choices=("auto", "torch", "triton"))
    ev.add_argument(
        "--force", action="store_true", help="replace OUT.csv even if dnas-cost did not write it"
    )
    ev.set_defaults(func=cmd_eval)
    ar = sub.add_parser(
        "arch",
        help="cost every layer of an architecture (arch.yaml)",
        description=(
            "Print the cost of every layer ARCH.yaml runs (shape, bits, cycles, memory-stall "
            "share, latency, energy; memory-bound: mem_stall_cycles > compute_cycles) and the "
            "totals, and check them against the latency_ms/energy_mj the YAML records (exit 1 if "
            "they differ)."
        ),
    )
    ar.add_argument(
        "arch", metavar="ARCH.yaml", help="an arch.yaml, or a run directory holding one"
    )
    ar.add_argument(
        "--space",
        metavar="NAME|PATH",
        help="built-in space name or YAML path (default: the space.yaml beside ARCH.yaml, "
        "else the built-in space ARCH.yaml names)",
    )
    ar.add_argument(
        "--hardware",
        default="bitfusion",
        metavar="NAME|PATH",
        help="built-in hardware name or YAML path (default: bitfusion)",
    )
    ar.add_argument(
        "--csv", metavar="OUT.csv", help="also write the per-layer costs and a total row"
    )
    ar.add_argument("--backend", default="auto", choices=("auto", "torch", "triton"))
    ar.add_argument(
        "--force", action="store_true", help="replace OUT.csv even if dnas-cost did not write it"
    )
    ar.set_defaults(func=cmd_arch)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (DnasError, FileNotFoundError) as e:
        print(f"dnas-cost: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
