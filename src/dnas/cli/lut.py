"""``dnas-lut``: build the cost table of a search space and summarise it (Hydra entry point)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from dnas.cli.common import hydra_entry
from dnas.errors import DnasError


def describe_file(path: Path) -> str:
    """What an existing file holds, in words: a measured or a computed cost table (of which space
    and hardware), or something else."""
    import torch

    try:
        header = torch.load(path, map_location="cpu", weights_only=True)["header"]
        space, hw = header["space_name"], header["hardware_name"]
    except Exception:
        return "a file that is not a dnas cost table"
    if header.get("source") == "measured":
        return f"a measured cost table (device {hw!r}, space {space!r})"
    return f"a cost table of space {space!r} on {hw!r}"


def _refuse_replacing(path: Path, name: str, why: str = "") -> DnasError:
    return DnasError(
        f"{name}={path} already holds {describe_file(path)}{why}; dnas-lut never replaces a file "
        f"you named: give another {name}= or force=true to replace it"
    )


def check_outputs(cfg: DictConfig, out: Path, named: bool) -> None:
    """Refuse, before any work, to write where it would lose data: a directory, the CSV over the
    table, or a file the user named that is not this very table (unless ``force=true``)."""
    from dnas.atomic import write_problem
    from dnas.cost.table import check_table_writable

    for name, path in (("out", out if named else None), ("export_csv", cfg.export_csv)):
        if path and Path(path).is_dir():
            raise DnasError(f"{name}={path} is a directory; give a file path")
    if cfg.export_csv:  # always written
        problem = write_problem(cfg.export_csv)
        if problem:
            raise DnasError(f"export_csv={cfg.export_csv}: {problem}")
    if cfg.force or cfg.measured_csv or not out.is_file():  # out is written (a table is kept)
        check_table_writable(out, "out" if named else None)
    if cfg.export_csv and Path(cfg.export_csv).resolve() == out.resolve():
        raise DnasError(
            f"export_csv={cfg.export_csv} is the table's own file (out): give the CSV another path"
        )
    if cfg.export_csv and Path(cfg.export_csv).exists() and not cfg.force:
        raise DnasError(
            f"export_csv={cfg.export_csv} already exists; dnas-lut never replaces a file you named:"
            " give another export_csv= or force=true to replace it"
        )
    if named and cfg.measured_csv and out.exists() and not cfg.force:
        raise _refuse_replacing(out, "out")


def run(cfg: DictConfig) -> dict[str, float]:
    """Build, import or load the table that ``cfg`` names, print a summary, return its figures."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from dnas.cost.backend import resolve_backend
    from dnas.cost.hardware import BitFusionConfig
    from dnas.cost.table import (
        CostTable,
        TableError,
        build_table,
        check_device_name,
        check_table_writable,
        default_table_path,
        import_csv,
    )
    from dnas.space import SearchSpace

    console = Console(stderr=True)
    resolve_backend(cfg.backend)  # before the cache: a cached table would hide it
    device = check_device_name(None if cfg.device_name is None else str(cfg.device_name))
    hw = BitFusionConfig.from_dict(OmegaConf.to_container(cfg.hardware, resolve=True))
    space = SearchSpace.from_dict(OmegaConf.to_container(cfg.space, resolve=True))
    space.validate_bits(hw.pmax_bits)
    if int(cfg.batch) < 1:
        raise DnasError(f"batch must be a positive integer, got {cfg.batch}")
    named = bool(cfg.out)
    if cfg.measured_csv and not named:
        # the cache slot is the computed table of this hardware config: a measured table there
        # would silently price every later search "on BitFusion" with the device's costs
        raise DnasError(
            f"measured_csv={cfg.measured_csv} needs out=FILE: a measured table goes to a file you"
            " name (search with it by table.path=FILE), never into the cache of computed"
            f" {hw.name} tables"
        )
    out = Path(cfg.out) if named else default_table_path(space, hw, int(cfg.batch))
    check_outputs(cfg, out, named)
    t0 = time.perf_counter()
    status = "built"
    if cfg.force and out.is_file() and describe_file(out).startswith("a measured"):
        console.print(f"[yellow]replacing {describe_file(out)} at {out} (force=true)[/]")
    if cfg.measured_csv:
        table = import_csv(cfg.measured_csv, space, device, int(cfg.batch))
        table.save(out)
        status = f"imported from {cfg.measured_csv}"
    else:
        table = None
        if out.exists() and not cfg.force:
            try:
                table = CostTable.load(out, space, hw)
                if table.header.source == "measured":  # loaded: it is never rebuilt over
                    status = "loaded (a measured table; force=true replaces it)"
                else:
                    status = "loaded (cached; force=true rebuilds)"
            except TableError as e:
                if named:  # the user's own file: never replaced without force=true
                    raise _refuse_replacing(out, "out", f" ({_first_clause(e)})") from None
                console.print(f"[yellow]{e}[/] - rebuilding")
        if table is None:
            check_table_writable(out, "out" if named else None)  # a stale cache, rebuilt
            with Progress(
                TextColumn("[bold]costing layers"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} shapes"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            ) as bar:
                task = bar.add_task("lut", total=None)
                table = build_table(
                    space,
                    hw,
                    cfg.backend,
                    int(cfg.batch),
                    progress=lambda d, t: bar.update(task, completed=d, total=t),
                )
            table.header.extra["build_seconds"] = round(time.perf_counter() - t0, 3)
            table.save(out)
    if cfg.export_csv:
        table.to_csv(cfg.export_csv)
    seconds = time.perf_counter() - t0
    ext = table.extremes(space)

    summary = Table(
        title=f"cost table: {space.name} on {table.header.hardware_name}", show_header=False
    )
    summary.add_row("file", str(out))
    summary.add_row("status", status)
    summary.add_row("entries", f"{table.num_entries:,} over {len(table.entries)} costed layers")
    if "unique_shapes" in table.header.extra:
        summary.add_row("unique layer shapes", f"{table.header.extra['unique_shapes']:,}")
    summary.add_row(
        "latency (cheapest / dearest net)",
        f"{ext['min_latency_ms']:.4f} ms / {ext['max_latency_ms']:.4f} ms",
    )
    summary.add_row(
        "energy (cheapest / dearest net)",
        f"{ext['min_energy_mj']:.4f} mJ / {ext['max_energy_mj']:.4f} mJ",
    )
    summary.add_row("time", f"{seconds:.2f} s")
    Console().print(summary)
    return {"entries": table.num_entries, "seconds": seconds, **ext}


def _first_clause(e: Exception) -> str:
    """The part of a table error that says what is wrong, without its rebuild advice."""
    return str(e).split("; ")[0]


@hydra.main(config_path="../conf", config_name="lut", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from dnas.cli.common import error_message
    from dnas.cli.entry import FS_REFUSALS
    from dnas.cost.table import TableError

    try:
        run(cfg)
    except (TableError, ValueError, FileNotFoundError, *FS_REFUSALS) as e:
        print(f"dnas-lut: error: {error_message(e)}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    hydra_entry("dnas-lut", _hydra_main)


if __name__ == "__main__":
    main()
