"""The BitFusion hardware configuration: every constant of the cost model, validated, with units."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from dnas.errors import DnasError, load_yaml, read_text

MAX_CONSTANT = 1e12
"""The largest magnitude a real-valued hardware constant may take: costs stay finite (a constant
of 1e308 gave infinite energy, NaN or inf ones NaN or zero latency, with exit 0)."""


@dataclass(frozen=True)
class BitFusionConfig:
    """A BitFusion variant (Sharma et al., ISCA 2018). Defaults are the published configuration.

    Buffer sizes are in bytes; one tile may use only half of each buffer (double buffering).
    Energies are in nanojoules per compute cycle (core) or per bit moved (buffers, DRAM).
    """

    name: str = "bitfusion"
    rows_n: int = 16
    cols_m: int = 32
    pmax_bits: int = 8
    pmin_bits: int = 2
    wbuf_bytes: int = 65536
    ibuf_bytes: int = 32768
    obuf_bytes: int = 16384
    dram_bits_per_cycle: int = 192
    freq_mhz: float = 500.0
    out_bits: int = 32
    dw_lanes: int = 8
    e_core_nj_per_cycle: float = 0.235104
    e_wbuf_rd_nj_per_bit: float = 2.1365656250000003e-05
    e_wbuf_wr_nj_per_bit: float = 2.8916156249999998e-05
    e_ibuf_rd_nj_per_bit: float = 5.9474375e-05
    e_ibuf_wr_nj_per_bit: float = 1.137040625e-04
    e_obuf_rd_nj_per_bit: float = 3.31553125e-05
    e_obuf_wr_nj_per_bit: float = 7.30840625e-05
    e_dram_nj_per_bit: float = 0.015

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name == "name":
                continue
            v = getattr(self, f.name)
            if f.type in ("int", int):
                if isinstance(v, bool) or not isinstance(v, int):
                    raise DnasError(f"hardware.{f.name} must be an integer, got {v!r}")
                if v <= 0:
                    raise DnasError(f"hardware.{f.name} must be positive, got {v}")
            else:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise DnasError(f"hardware.{f.name} must be a number, got {v!r}")
                if not math.isfinite(v) or abs(v) > MAX_CONSTANT:
                    raise DnasError(
                        f"hardware.{f.name} must be a finite number of at most {MAX_CONSTANT:g}, "
                        f"got {v}"
                    )
                if f.name.startswith("e_") and v < 0:
                    raise DnasError(f"hardware.{f.name} must be >= 0, got {v}")
                if not f.name.startswith("e_") and v <= 0:
                    raise DnasError(f"hardware.{f.name} must be positive, got {v}")
        if self.pmin_bits > self.pmax_bits:
            raise DnasError(
                f"hardware.pmin_bits ({self.pmin_bits}) must not exceed pmax_bits ({self.pmax_bits})"
            )

    # Capacities in bits available to one tile (half of each buffer, double buffering).
    @property
    def wbuf_cap_bits(self) -> int:
        return self.wbuf_bytes * 8 // 2

    @property
    def ibuf_cap_bits(self) -> int:
        return self.ibuf_bytes * 8 // 2

    @property
    def obuf_cap_bits(self) -> int:
        return self.obuf_bytes * 8 // 2

    @property
    def cycles_per_ms(self) -> float:
        return self.freq_mhz * 1000.0

    def perf_factor(self, a_bits: int, w_bits: int) -> int:
        """Fusion factor: how many low-precision MACs one Fusion Unit does per cycle."""
        return (self.pmax_bits // max(a_bits, self.pmin_bits)) * (
            self.pmax_bits // max(w_bits, self.pmin_bits)
        )

    def energy_nj(
        self, compute, wbuf_rd, wbuf_wr, ibuf_rd, ibuf_wr, obuf_rd, obuf_wr, dram_bits
    ) -> tuple:
        """Step 9: (total, core, sram, dram) energy in nJ from cycles and bit counters.

        The one place the energy sum is written: every backend calls it with Python ints or
        float64 tensors, so that all of them add in the same order and agree to the bit (ties
        between schedules are broken on energy).
        """
        core = self.e_core_nj_per_cycle * compute
        sram = (
            wbuf_rd * self.e_wbuf_rd_nj_per_bit
            + wbuf_wr * self.e_wbuf_wr_nj_per_bit
            + ibuf_rd * self.e_ibuf_rd_nj_per_bit
            + ibuf_wr * self.e_ibuf_wr_nj_per_bit
            + obuf_rd * self.e_obuf_rd_nj_per_bit
            + obuf_wr * self.e_obuf_wr_nj_per_bit
        )
        dram = dram_bits * self.e_dram_nj_per_bit
        return core + sram + dram, core, sram, dram

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """A short hash of every constant (the name excluded): what a cost table depends on."""
        d = self.to_dict()
        d.pop("name")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BitFusionConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DnasError(f"unknown hardware field(s) {unknown}; allowed: {sorted(known)}")
        return cls(**d)


def builtin_hardware_names() -> list[str]:
    root = resources.files("dnas") / "conf" / "hardware"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_hardware(name_or_path: str | Path = "bitfusion") -> BitFusionConfig:
    """Load a hardware config by built-in name (``conf/hardware/NAME.yaml``) or YAML path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if p.is_dir():
            raise DnasError(f"hardware config {p} is a directory; give a YAML file")
        if not p.is_file():
            raise FileNotFoundError(f"hardware config file not found: {p}")
        text = read_text(p, "hardware config")
    else:
        res = resources.files("dnas") / "conf" / "hardware" / f"{name_or_path}.yaml"
        if not res.is_file():
            raise DnasError(
                f"unknown hardware {str(name_or_path)!r}; built-in: {builtin_hardware_names()} "
                "(or give a path to a YAML file)"
            )
        text = res.read_text()
    try:
        data = load_yaml(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise DnasError(
            f"hardware config {name_or_path} is not valid YAML{at}: {problem}"
        ) from None
    if not isinstance(data, dict):
        raise DnasError(f"hardware config {name_or_path} must be a mapping")
    return BitFusionConfig.from_dict(data)
