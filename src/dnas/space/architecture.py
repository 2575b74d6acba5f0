"""Architecture: one resolved choice for every choice of a space, serialisable as YAML."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from dnas.atomic import atomic_path
from dnas.space.choices import SKIP, KernelChoice, check_int
from dnas.space.errors import SpaceError
from dnas.space.spec import check_keys

ARCH_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ConvBits:
    """The bit-widths chosen for one conv: weights and its *input* activation."""

    w_bits: int
    a_bits: int

    KEYS = ("w_bits", "a_bits")

    def __post_init__(self) -> None:
        check_int(self.w_bits, "w_bits")
        check_int(self.a_bits, "a_bits")

    def to_dict(self) -> dict[str, int]:
        return {"w_bits": self.w_bits, "a_bits": self.a_bits}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConvBits:
        check_keys(d, cls.KEYS, "", required=cls.KEYS)
        return cls(d["w_bits"], d["a_bits"])


@dataclass(frozen=True)
class BlockChoice:
    """The choices of one block.

    Attributes:
        kernel: depthwise kernel size, or ``"skip"`` (the block is removed; its width and bits are
            then kept but have no effect).
        width: hidden channel count.
        expand: bits of the expand conv, ``None`` for a block without one.
        dw: bits of the depthwise conv.
        project: bits of the project conv.
    """

    kernel: KernelChoice
    width: int
    expand: ConvBits | None
    dw: ConvBits
    project: ConvBits

    KEYS = ("kernel", "width", "expand", "dw", "project")

    def __post_init__(self) -> None:
        if self.kernel != SKIP:
            check_int(self.kernel, "kernel")
        check_int(self.width, "width")
        for name in ("dw", "project"):
            if not isinstance(getattr(self, name), ConvBits):
                raise SpaceError(name, f"must be ConvBits, got {getattr(self, name)!r}")
        if self.expand is not None and not isinstance(self.expand, ConvBits):
            raise SpaceError("expand", f"must be ConvBits or None, got {self.expand!r}")

    @property
    def skipped(self) -> bool:
        return self.kernel == SKIP

    def conv_bits(self, role: str) -> ConvBits | None:
        """Bits of the conv with ``role`` ``expand``/``dw``/``project``."""
        return {"expand": self.expand, "dw": self.dw, "project": self.project}[role]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "width": self.width,
            "expand": None if self.expand is None else self.expand.to_dict(),
            "dw": self.dw.to_dict(),
            "project": self.project.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BlockChoice:
        check_keys(d, cls.KEYS, "", required=cls.KEYS)
        bits = {}
        for name in ("expand", "dw", "project"):
            if d[name] is None and name == "expand":
                bits[name] = None
                continue
            try:
                bits[name] = ConvBits.from_dict(d[name])
            except SpaceError as e:
                raise e.within(name) from None
        return cls(kernel=d["kernel"], width=d["width"], **bits)


def _check_metrics(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise SpaceError("metrics", f"must be a mapping of name to number, got {metrics!r}")
    out = {}
    for k, v in metrics.items():
        if not isinstance(k, str):
            raise SpaceError("metrics", f"names must be strings, got {k!r}")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SpaceError(f"metrics.{k}", f"must be a number, got {v!r}")
        out[k] = float(v)
    return out


@dataclass(frozen=True)
class Architecture:
    """Every choice of a space resolved: what a search derives and a child network is built from.

    Attributes:
        blocks: one choice per block of the space, in network order.
        stem: bits of the stem conv.
        last: bits of the last 1×1 conv.
        classifier: bits of the classifier.
        space: name of the space it was derived in (informational).
        space_fingerprint: that space's fingerprint (informational: ``SearchSpace.validate_arch``
            checks the choices themselves, so an architecture stays valid in a space that only
            adds choices).
        metrics: free-form numbers written alongside, with units in their names
            (``latency_ms``, ``energy_mj``, ``target_latency_ms``, ``val/acc``). Not compared by
            ``==``.
        table_hash: content hash of the cost table ``latency_ms``/``energy_mj`` were read from
            (provenance; empty when no table priced it). Not compared by ``==``.
    """

    blocks: tuple[BlockChoice, ...]
    stem: ConvBits
    last: ConvBits
    classifier: ConvBits
    space: str = ""
    space_fingerprint: str = ""
    metrics: dict[str, float] = field(default_factory=dict, compare=False, hash=False)
    table_hash: str = field(default="", compare=False, hash=False)

    KEYS = (
        "format_version",
        "space",
        "space_fingerprint",
        "stem",
        "blocks",
        "last",
        "classifier",
        "metrics",
        "table_hash",
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        for i, b in enumerate(self.blocks):
            if not isinstance(b, BlockChoice):
                raise SpaceError(f"blocks[{i}]", f"must be a BlockChoice, got {b!r}")
        for name in ("stem", "last", "classifier"):
            if not isinstance(getattr(self, name), ConvBits):
                raise SpaceError(name, f"must be ConvBits, got {getattr(self, name)!r}")
        object.__setattr__(self, "metrics", _check_metrics(self.metrics))

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def depth(self) -> int:
        """Number of blocks that are not skipped."""
        return sum(not b.skipped for b in self.blocks)

    def with_metrics(self, **metrics: float) -> Architecture:
        """A copy with ``metrics`` added to (or replacing) the existing ones."""
        return replace(self, metrics={**self.metrics, **metrics})

    def priced_by(self, table_hash: str) -> Architecture:
        """A copy recording the content hash of the cost table its metrics came from."""
        return replace(self, table_hash=str(table_hash))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": ARCH_FORMAT_VERSION,
            "space": self.space,
            "space_fingerprint": self.space_fingerprint,
            "stem": self.stem.to_dict(),
            "blocks": [b.to_dict() for b in self.blocks],
            "last": self.last.to_dict(),
            "classifier": self.classifier.to_dict(),
            "metrics": dict(self.metrics),
            **({"table_hash": self.table_hash} if self.table_hash else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Architecture:
        """An architecture from ``to_dict()`` output (or a YAML/OmegaConf mapping of it)."""
        check_keys(d, cls.KEYS, "", required=("stem", "blocks", "last", "classifier"))
        version = d.get("format_version", ARCH_FORMAT_VERSION)
        if version != ARCH_FORMAT_VERSION:
            raise SpaceError(
                "format_version",
                f"{version!r} is not a format this dnas reads ({ARCH_FORMAT_VERSION})",
            )
        if not isinstance(d["blocks"], (list, tuple)):
            raise SpaceError("blocks", f"must be a list, got {d['blocks']!r}")
        blocks = []
        for i, b in enumerate(d["blocks"]):
            try:
                blocks.append(BlockChoice.from_dict(b))
            except SpaceError as e:
                raise e.within(f"blocks[{i}]") from None
        bits = {}
        for name in ("stem", "last", "classifier"):
            try:
                bits[name] = ConvBits.from_dict(d[name])
            except SpaceError as e:
                raise e.within(name) from None
        return cls(
            blocks=tuple(blocks),
            space=str(d.get("space") or ""),
            space_fingerprint=str(d.get("space_fingerprint") or ""),
            metrics=d.get("metrics") or {},
            table_hash=str(d.get("table_hash") or ""),
            **bits,
        )

    def save(self, path: str | Path) -> Path:
        """Write as YAML atomically (temporary file in the same directory, then ``os.replace``)."""
        path = Path(path)
        text = (
            "# dnas architecture: per block kernel (or skip), hidden width and the bits of each\n"
            "# conv (a_bits: bits of the conv's input activation); metrics carry units in names.\n"
            + yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        )
        with atomic_path(path) as tmp:
            tmp.write_text(text)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Architecture:
        """Read an architecture YAML written by ``save``."""
        from dnas.errors import load_yaml, read_text

        path = Path(path)
        if not path.is_file() and not path.is_dir():
            raise FileNotFoundError(f"architecture file not found: {path}")
        data = load_yaml(read_text(path, "architecture file"))
        if not isinstance(data, Mapping):
            raise SpaceError("", f"{path} does not hold an architecture mapping")
        try:
            return cls.from_dict(data)
        except SpaceError as e:
            raise SpaceError(f"{path}: {e.field}" if e.field else str(path), e.reason) from None
