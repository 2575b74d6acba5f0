"""Cost tables: latency (ms) and energy (mJ) of every costed layer of a search space on its grid.

A table is built once per (space, hardware) from the cost model, or imported from measurements, and
saved as a file with a header (format version, hardware, space, code version, content hash) that is
checked on load, so a stale, foreign or damaged table is refused rather than silently used.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import pickle
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import dnas
from dnas.atomic import atomic_path
from dnas.cost.hardware import BitFusionConfig, load_hardware
from dnas.cost.layer import layer_shape
from dnas.errors import DnasError
from dnas.space import Architecture, ArchState, LayerKey, SearchSpace

TABLE_FORMAT_VERSION = 1
METRICS: tuple[str, ...] = ("latency_ms", "energy_mj")  # what a table holds per grid point
_NJ_PER_MJ = 1e6


class TableError(DnasError):
    """A cost table that cannot be used: damaged, foreign, stale or incomplete."""


@dataclass
class LayerTable:
    """Costs of one costed layer over its grid ``[kernels, widths, w_bits, a_bits]``."""

    kernels: tuple[int, ...]
    widths: tuple[int, ...]
    w_bits: tuple[int, ...]
    a_bits: tuple[int, ...]
    latency_ms: torch.Tensor  # float64 [K, W, WB, AB]
    energy_mj: torch.Tensor  # float64 [K, W, WB, AB]

    @property
    def grid_shape(self) -> tuple[int, int, int, int]:
        return (len(self.kernels), len(self.widths), len(self.w_bits), len(self.a_bits))


@dataclass
class TableHeader:
    format_version: int
    space_name: str
    space_fingerprint: str
    hardware_name: str
    hardware_fingerprint: str
    hardware: dict[str, Any]
    source: str  # "bitfusion-model" or "measured"
    batch: int
    code_version: str
    content_hash: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class CostTable:
    """A cost table: a header and one LayerTable per costed layer key of the space."""

    header: TableHeader
    entries: dict[LayerKey, LayerTable]

    @property
    def num_entries(self) -> int:
        return sum(t.latency_ms.numel() for t in self.entries.values())

    # ----------------------------------------------------------------------------------- hashing
    def compute_hash(self) -> str:
        """sha256 over the keys, axes and values of every entry, in key order."""
        h = hashlib.sha256()
        for key in sorted(self.entries):
            t = self.entries[key]
            h.update(repr((key.role, key.block, t.kernels, t.widths, t.w_bits, t.a_bits)).encode())
            h.update(t.latency_ms.to(torch.float64).contiguous().numpy().tobytes())
            h.update(t.energy_mj.to(torch.float64).contiguous().numpy().tobytes())
        return h.hexdigest()

    # -------------------------------------------------------------------------------- cost lookup
    def arch_cost(self, space: SearchSpace, arch: Architecture) -> tuple[float, float]:
        """Exact (latency_ms, energy_mj) of a discrete architecture: the sum of its table entries
        (``dnas.cost.exact.ExactCost``, for one architecture)."""
        from dnas.cost.exact import ExactCost

        cost = ExactCost(space, self).total(ArchState.from_arch(space, arch))
        return cost["latency_ms"], cost["energy_mj"]

    def extremes(self, space: SearchSpace) -> dict[str, float]:
        """Latency and energy of the cheapest and dearest network of the space, per metric.

        Each is the exact cost of an architecture (``dnas.cost.exact.cheapest_state`` and
        ``dearest_state``); keys ``min_latency_ms``, ``max_latency_ms``, ``min_energy_mj``,
        ``max_energy_mj``.
        """
        from dnas.cost.exact import ExactCost, cheapest_state, dearest_state

        costs = ExactCost(space, self)
        out = {}
        for metric in METRICS:
            out[f"min_{metric}"] = costs.total(cheapest_state(space, self, {metric: 1.0}))[metric]
            out[f"max_{metric}"] = costs.total(dearest_state(space, self, metric))[metric]
        return out

    # ------------------------------------------------------------------------------------- files
    def save(self, path: str | Path) -> Path:
        """Write atomically (temporary file + rename); the header's content hash is refreshed."""
        path = Path(path)
        self.header.content_hash = self.compute_hash()
        payload = {
            "header": dict(vars(self.header)),
            "entries": [
                {
                    "role": k.role,
                    "block": k.block,
                    "kernels": list(t.kernels),
                    "widths": list(t.widths),
                    "w_bits": list(t.w_bits),
                    "a_bits": list(t.a_bits),
                    "latency_ms": t.latency_ms,
                    "energy_mj": t.energy_mj,
                }
                for k, t in sorted(self.entries.items())
            ],
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return path

    @classmethod
    def load(cls, path: str | Path, space=None, hw: BitFusionConfig | None = None) -> CostTable:
        """Load and check a table; with ``space``/``hw``, also check it was built for them.

        Raises:
            TableError: the file is damaged, from a newer format, or for another space or hardware;
                the message says what differs and how to rebuild.
        """
        path = Path(path)
        rebuild = _rebuild_hint(space, hw, path)
        if not path.is_file():
            raise TableError(f"cost table {path} does not exist; {rebuild}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            header = TableHeader(**payload["header"])
            entries = {
                LayerKey(e["role"], int(e["block"])): LayerTable(
                    tuple(e["kernels"]),
                    tuple(e["widths"]),
                    tuple(e["w_bits"]),
                    tuple(e["a_bits"]),
                    e["latency_ms"],
                    e["energy_mj"],
                )
                for e in payload["entries"]
            }
        except Exception as e:  # any unpickling/shape/key problem means the file is unusable
            if isinstance(e, pickle.UnpicklingError) and "GLOBAL" in str(e):
                why = "it holds objects other than tensors and plain data, refused unread"
                raise TableError(
                    f"cost table {path} is not a trusted table ({why}); {rebuild}"
                ) from None
            from dnas.checkpoint import torch_file_problem

            first = torch_file_problem(path)  # torch's own text for this is a page on pickle
            raise TableError(
                f"cost table {path} is damaged or not a dnas table ({first}); {rebuild}"
            ) from None
        if header.format_version > TABLE_FORMAT_VERSION:
            raise TableError(
                f"cost table {path} has format {header.format_version}, newer than this dnas "
                f"({dnas.__version__}) reads ({TABLE_FORMAT_VERSION}); upgrade dnas or {rebuild}"
            )
        table = cls(header, entries)
        if table.compute_hash() != header.content_hash:
            raise TableError(f"cost table {path} is damaged (content hash mismatch); {rebuild}")
        bad = [
            key
            for key, e in entries.items()
            if not (torch.isfinite(e.latency_ms).all() and torch.isfinite(e.energy_mj).all())
        ]
        if bad:
            raise TableError(
                f"cost table {path} holds non-finite costs (layer {bad[0].role}, block "
                f"{bad[0].block}; built from non-finite hardware constants or measurements); "
                f"{rebuild}"
            )
        if space is not None:
            table.check_space(space, path)
        if hw is not None and header.source != "measured":
            table.check_hardware(hw, path)
        return table

    def check_space(self, space: SearchSpace, path: Path | str = "table") -> None:
        h = self.header
        if h.space_fingerprint != space.fingerprint():
            what = (
                f"space {h.space_name!r}"
                if h.space_name != space.name
                else f"another version of space {space.name!r} (its choices differ)"
            )
            raise TableError(
                f"cost table {path} was built for {what}, not for space {space.name!r}; "
                f"{_rebuild_hint(space, None, path)}"
            )
        expected = {c.key: c for c in space.costed_layers()}
        missing = sorted(set(expected) - set(self.entries))
        if missing:
            raise TableError(
                f"cost table {path} lacks layers {missing[:5]}; {_rebuild_hint(space, None, path)}"
            )

    def check_hardware(self, hw: BitFusionConfig, path: Path | str = "table") -> None:
        h = self.header
        if h.hardware_fingerprint != hw.fingerprint():
            diff = sorted(
                k for k, v in hw.to_dict().items() if k != "name" and h.hardware.get(k) != v
            )
            raise TableError(
                f"cost table {path} was built for hardware {h.hardware_name!r}, which differs from "
                f"{hw.name!r} in {', '.join(diff) or 'its constants'}; "
                f"{_rebuild_hint(None, hw, path)}"
            )

    # ------------------------------------------------------------------------- CSV import/export
    def to_csv(self, path: str | Path) -> None:
        """One row per grid point: role, block, kernel, width, w_bits, a_bits, latency_ms, energy_mj."""
        rows = []
        for key, t in sorted(self.entries.items()):
            for idx in _grid(t.grid_shape):
                k, w, wb, ab = idx
                rows.append(
                    [
                        key.role,
                        key.block,
                        t.kernels[k],
                        t.widths[w],
                        t.w_bits[wb],
                        t.a_bits[ab],
                        repr(float(t.latency_ms[idx])),
                        repr(float(t.energy_mj[idx])),
                    ]
                )
        _write_csv_atomic(Path(path), CSV_COLUMNS, rows)


CSV_COLUMNS = ("role", "block", "kernel", "width", "w_bits", "a_bits", "latency_ms", "energy_mj")


def _grid(shape: tuple[int, ...]) -> Iterable[tuple[int, ...]]:
    return (
        tuple(int(i) for i in idx)
        for idx in torch.cartesian_prod(*[torch.arange(n) for n in shape])
        .reshape(-1, len(shape))
        .tolist()
    )


def _write_csv_atomic(path: Path, header, rows) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _overrides(group: str, mine: dict, builtin: dict | None) -> list[str]:
    """``group.KEY=VALUE`` for every top-level key of ``mine`` that differs from the built-in
    config of the same name (all of them when there is none), as Hydra reads them."""
    import json

    out = []
    for key, value in mine.items():
        if key == "name" or (builtin is not None and builtin.get(key) == value):
            continue
        text = json.dumps(value, separators=(",", ":")) if isinstance(value, list | dict) else value
        text = str(text).replace('"', "")  # Hydra's grammar: bare strings inside lists
        out.append(f"'{group}.{key}={text}'")
    return out


def _rebuild_hint(space, hw, path) -> str:
    """The ``dnas-lut`` command that builds this table again, with the overrides that made this
    space and hardware differ from the built-in ones of their names."""
    args = []
    if space is not None:
        args.append(f"space={space.name}")
        try:
            from dnas.space import load_space

            builtin = load_space(space.name).to_dict()
        except Exception:  # not a built-in name: every field
            builtin = None
        args += _overrides("space", space.to_dict(), builtin)
    if hw is not None:
        args.append(f"hardware={hw.name}")
        try:
            builtin_hw = load_hardware(hw.name).to_dict()
        except Exception:
            builtin_hw = None
        args += _overrides("hardware", hw.to_dict(), builtin_hw)
    args.append(f"out={path}")
    return "rebuild it with `dnas-lut " + " ".join(args) + "`"


def _header(
    space: SearchSpace, hw: BitFusionConfig | None, source: str, batch: int, name: str
) -> TableHeader:
    return TableHeader(
        format_version=TABLE_FORMAT_VERSION,
        space_name=space.name,
        space_fingerprint=space.fingerprint(),
        hardware_name=name,
        hardware_fingerprint=hw.fingerprint() if hw is not None else f"measured:{name}",
        hardware=hw.to_dict() if hw is not None else {"measured": name},
        source=source,
        batch=batch,
        code_version=dnas.__version__,
    )


def build_table(
    space: SearchSpace,
    hw: BitFusionConfig | None = None,
    backend: str = "auto",
    batch: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> CostTable:
    """Cost every grid point of every costed layer of ``space`` with the BitFusion model.

    Identical layer shapes (common across the blocks of a stage) are costed once.

    Args:
        space: a ``dnas.space.SearchSpace``.
        hw: hardware configuration (default: the published BitFusion).
        backend: cost backend (``auto``, ``torch``, ``triton``).
        batch: images per inference (latency is per batch).
        progress: called as ``progress(done, total)`` with unique shapes costed so far.

    Raises:
        TableError: a layer of the space fits no tiling of the hardware's buffers.
    """
    from dnas.cost.backend import evaluate

    hw = hw or BitFusionConfig()
    layers = space.costed_layers()
    unique: dict = {}
    index: dict = {}
    for cl in layers:
        shape = cl.grid_shape()
        ids = torch.empty(shape, dtype=torch.int64)
        for idx in _grid(shape):
            s = layer_shape(cl, *idx, batch=batch)
            s.check_bits(hw)
            ids[idx] = unique.setdefault(s, len(unique))
        index[cl.key] = ids
    shapes = list(unique)
    total, done = len(shapes), 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress is not None:
            progress(done, total)

    res = evaluate(shapes, hw, backend, chunk=2048, progress=tick)
    bad = res.infeasible.nonzero().flatten().tolist()
    if bad:
        raise TableError(
            f"{len(bad)} layer shape(s) of space {space.name!r} fit no tiling of hardware "
            f"{hw.name!r}'s buffers, e.g. {shapes[bad[0]]}; enlarge the buffers or the space"
        )
    lat = res.latency_ms(hw)
    en = res.energies_nj(hw)["total"] / _NJ_PER_MJ
    entries = {
        cl.key: LayerTable(
            cl.kernels,
            cl.widths,
            cl.w_bits,
            cl.a_bits,
            lat[index[cl.key]].clone(),
            en[index[cl.key]].clone(),
        )
        for cl in layers
    }
    table = CostTable(_header(space, hw, "bitfusion-model", batch, hw.name), entries)
    table.header.extra["unique_shapes"] = total
    table.header.content_hash = table.compute_hash()
    return table


MAX_MEASURED = 1e9
"""The largest measured latency (ms) or energy (mJ) one layer may have in an imported CSV: a
network's sum stays finite (``inf`` and ``1e300`` made tables whose totals were not)."""


def check_device_name(device_name: Any) -> str:
    """The name a measured table gives its device (its ``hardware_name``): a non-empty string."""
    if not isinstance(device_name, str) or not device_name.strip():
        raise TableError(
            f"device_name={device_name!r} must name the device the costs were measured on "
            "(e.g. device_name=pixel8): the table and every search on it are labelled with it"
        )
    return device_name


def import_csv(path: str | Path, space: SearchSpace, device_name: str, batch: int = 1) -> CostTable:
    """A table from measured costs: a CSV with CSV_COLUMNS, one row per grid point.

    Missing grid points are reported (never guessed); rows for keys the space does not have are
    errors too.
    """
    from dnas.errors import read_text

    check_device_name(device_name)
    path = Path(path)
    if not path.is_file() and not path.is_dir():
        raise TableError(f"{path}: no such file")
    try:
        text = read_text(path, "measured_csv", "CSV")
    except DnasError as e:
        raise TableError(str(e)) from None
    layers = {c.key: c for c in space.costed_layers()}
    values: dict = {}
    lines: dict = {}  # grid point -> the line it was first read on
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        miss = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if miss:
            raise TableError(
                f"{path}: missing column(s) {', '.join(miss)}; required: {', '.join(CSV_COLUMNS)}"
            )
        for row in reader:
            line = reader.line_num
            try:
                key = LayerKey(row["role"], int(row["block"]))
                point = tuple(int(row[c]) for c in ("kernel", "width", "w_bits", "a_bits"))
                lat, en = float(row["latency_ms"]), float(row["energy_mj"])
            except ValueError as e:
                raise TableError(f"{path}:{line}: {e}") from None
            if key not in layers:
                raise TableError(
                    f"{path}:{line}: layer ({key.role}, block {key.block}) is not "
                    f"a costed layer of space {space.name!r}"
                )
            cl = layers[key]
            try:
                idx = (
                    cl.kernels.index(point[0]),
                    cl.widths.index(point[1]),
                    cl.w_bits.index(point[2]),
                    cl.a_bits.index(point[3]),
                )
            except ValueError:
                raise TableError(
                    f"{path}:{line}: (kernel, width, w_bits, a_bits)={point} is not "
                    f"on the grid of ({key.role}, block {key.block})"
                ) from None
            if not (0 <= lat <= MAX_MEASURED and 0 <= en <= MAX_MEASURED):
                raise TableError(
                    f"{path}:{line}: latency_ms and energy_mj must be finite numbers in "
                    f"[0, {MAX_MEASURED:g}], got {row['latency_ms']}, {row['energy_mj']}"
                )
            seen = lines.get((key, idx))
            if seen is not None and values[(key, idx)] != (lat, en):
                raise TableError(
                    f"{path}:{line}: ({key.role}, block {key.block}, kernel, width, w_bits, "
                    f"a_bits={point}) was measured on line {seen} already, with other costs; "
                    "keep one row per grid point"
                )
            values[(key, idx)] = (lat, en)
            lines.setdefault((key, idx), line)
    entries, missing = {}, []
    for key, cl in layers.items():
        shape = cl.grid_shape()
        lt = torch.full(shape, float("nan"), dtype=torch.float64)
        et = lt.clone()
        for idx in _grid(shape):
            v = values.get((key, idx))
            if v is None:
                missing.append(
                    (
                        key.role,
                        key.block,
                        cl.kernels[idx[0]],
                        cl.widths[idx[1]],
                        cl.w_bits[idx[2]],
                        cl.a_bits[idx[3]],
                    )
                )
            else:
                lt[idx], et[idx] = v
        entries[key] = LayerTable(cl.kernels, cl.widths, cl.w_bits, cl.a_bits, lt, et)
    if missing:
        shown = "\n  ".join(str(m) for m in missing[:10])
        raise TableError(
            f"{path}: {len(missing)} grid point(s) of space {space.name!r} are missing "
            f"(role, block, kernel, width, w_bits, a_bits), e.g.\n  {shown}"
        )
    table = CostTable(_header(space, None, "measured", batch, device_name), entries)
    table.header.content_hash = table.compute_hash()
    return table


def cache_base() -> tuple[Path, str | None]:
    """The folder the table cache lives in (tables go to its ``tables/``), and ``$DNAS_CACHE`` as
    given (None when unset: ``~/.cache/dnas``). The one place the variable is read: a leading
    ``~`` is the home directory (``DNAS_CACHE='~/x'``, quoted so the shell left it, made a
    folder named ``~`` in the working directory)."""
    given = os.environ.get("DNAS_CACHE")
    if not given:
        return Path.home() / ".cache" / "dnas", None
    return Path(given).expanduser(), given


def default_table_path(space: SearchSpace, hw: BitFusionConfig, batch: int = 1) -> Path:
    """Where a table is cached: keyed by space, hardware and batch fingerprints."""
    base, given = cache_base()
    if base.exists() and not base.is_dir():
        what = f"DNAS_CACHE={given}" if given else str(base)
        raise TableError(f"{what} is a file; the table cache needs a directory there")
    root = base / "tables"
    return (
        root
        / f"{space.name}-{space.fingerprint()[:8]}-{hw.name}-{hw.fingerprint()[:8]}-b{batch}.pt"
    )


def check_table_writable(path: Path, key: str | None) -> None:
    """Before a table is built or imported: ``path`` can be written (not under a file, not in a
    read-only folder), so that the build is not thrown away at the end. A table that is only
    loaded needs no write: a read-only cache of built tables is fine.

    Args:
        path: the table's file.
        key: the setting that named it (``table.path``, ``out``), or None for the cache
            (``DNAS_CACHE``).

    Raises:
        TableError: naming the setting (or ``DNAS_CACHE``) and what is in the way.
    """
    from dnas.atomic import write_problem

    problem = write_problem(path)
    if problem is None:
        return
    if key is not None:
        raise TableError(f"{key}={path}: {problem}")
    _, given = cache_base()
    what = f"DNAS_CACHE={given}" if given else f"the table cache {path.parent}"
    raise TableError(
        f"{what}: {problem}; the table is built there: set DNAS_CACHE= to a directory it can "
        "write (or give table.path=)"
    )


def load_or_build(
    space: SearchSpace,
    hw: BitFusionConfig,
    path: str | Path | None = None,
    backend="auto",
    batch: int = 1,
    progress=None,
) -> tuple[CostTable, Path, bool]:
    """Load the table for (space, hw) or build and save it. Returns (table, path, built).

    Without ``path``, the cache: a stale or damaged cached table is rebuilt silently. A ``path``
    the user named is never replaced: if it exists it must load (else ``TableError`` says how to
    rebuild it); if it does not, the table is built and saved there.
    """
    from dnas.cost.backend import resolve_backend

    resolve_backend(backend)  # an unknown or unavailable backend, even when the table is cached
    named = bool(path)
    path = Path(path) if path else default_table_path(space, hw, batch)
    if named and path.exists() and not path.is_file():
        raise TableError(f"table.path={path} is a directory; give the table's file (.pt)")
    if path.is_file():
        try:
            return CostTable.load(path, space, hw), path, False
        except TableError:
            if named:
                raise
            # the cache is stale or damaged: rebuilt below (an atomic write replaces it)
    check_table_writable(path, "table.path" if named else None)
    t0 = time.perf_counter()
    table = build_table(space, hw, backend, batch, progress)
    table.header.extra["build_seconds"] = round(time.perf_counter() - t0, 3)
    table.save(path)
    return table, path, True
