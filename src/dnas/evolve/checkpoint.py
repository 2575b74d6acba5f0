"""dnas-evolve's checkpoints: what it has measured and where its search stands, as plain JSON.

``RUN/checkpoints/measured.json`` holds every architecture measured inside the supernet with its
accuracy (the direct fitness cache: the predictor's samples, and with ``fitness=direct`` the
search's candidates), so that a resumed run measures only the others. ``RUN/checkpoints/evolve.json``
holds the settings a resumed run must share, the cost table's hash, and the search's state after
its last generation (population, history, ``random.Random`` state), so that it continues exactly.
Both are written atomically, ``measured.json`` first: it always holds at least what the search
state had measured. Neither is a pickle, so reading one runs no code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnas.atomic import atomic_path
from dnas.errors import DnasError
from dnas.evolve.genome import GenomeSpace
from dnas.evolve.search import Candidate, SearchState

FORMAT = 1
CHECKPOINT_DIR = "checkpoints"
EVOLVE_FILE = "evolve.json"
MEASURED_FILE = "measured.json"
SAVE_EVERY_S = 5.0
"""Within a phase, ``measured.json`` is rewritten at most this often (and whenever the search
state is saved, and on a stop)."""

FREE = (
    "hydra",
    "resume",
    "ckpt_path",
    "logger",
    "table",  # its content is compared by hash instead
    "final",  # the final test evaluation only
    "evolution.time_limit_s",
    "data.num_workers",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.log_every_n_steps",
    "trainer.enable_checkpointing",
    "trainer.enable_model_summary",
    "trainer.enable_progress_bar",
)
"""Settings a resumed run may change: they do not change what is measured or searched."""


def run_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a resolved config (``resolved_config(cfg)``) that a resumed run must
    share, flattened to dotted keys: everything but ``FREE``."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping) and node:
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif not any(prefix == f or prefix.startswith(f + ".") for f in FREE):
            flat[prefix] = list(node) if isinstance(node, tuple) else node

    walk(config, "")
    return flat


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key (recorded there, current here)`` for each setting that differs."""
    absent = object()
    out = []
    for key in sorted(set(recorded) | set(current)):
        was, now = recorded.get(key, absent), current.get(key, absent)
        if was != now:
            out.append(
                f"{key} ({'unset' if was is absent else was!r} there, "
                f"{'unset' if now is absent else now!r} here)"
            )
    return out


# ------------------------------------------------------------------------------ as plain data
def _tuples(x: Any) -> Any:
    """JSON lists back to the tuples a ``GenomeSpace.key`` is made of."""
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


def state_to_json(genomes: GenomeSpace, state: SearchState) -> dict[str, Any]:
    version, internal, gauss = state.rng_state
    return {
        "generation": state.generation,
        "population": [
            {"genome": genomes.indices(c.state), "fitness": c.fitness, "cost": c.cost}
            for c in state.population
        ],
        "history": state.history,
        "rng_state": [version, list(internal), gauss],
        "elapsed_s": state.elapsed_s,
    }


def state_from_json(genomes: GenomeSpace, data: Mapping[str, Any]) -> SearchState:
    version, internal, gauss = data["rng_state"]
    return SearchState(
        population=[
            Candidate(genomes.from_indices(c["genome"]), float(c["fitness"]), dict(c["cost"]))
            for c in data["population"]
        ],
        history=[dict(row) for row in data["history"]],
        rng_state=(version, tuple(internal), gauss),
        elapsed_s=float(data["elapsed_s"]),
    )


# ------------------------------------------------------------------------------------ reading
@dataclass
class Resumed:
    """What a run directory's checkpoints give a run resumed from it.

    Attributes:
        run_dir: the directory.
        search: the search state after its last saved generation (None: the search had not
            started).
        predicted: predictor queries up to that state.
        measured: the direct fitness cache, ``GenomeSpace.key -> accuracy``.
    """

    run_dir: Path
    search: SearchState | None = None
    predicted: int = 0
    measured: dict[tuple, float] = field(default_factory=dict)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DnasError(f"resume={path.parent.parent}: cannot read its {what} {path} ({e})") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DnasError(
            f"resume={path.parent.parent}: {path} is not a dnas-evolve checkpoint of format {FORMAT}"
        )
    return data


def check_resumable(run_dir: str | Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The ``evolve.json`` of ``run_dir``, if the run that wrote it had ``settings``.

    Raises:
        DnasError: no such checkpoint, or one of a run with other settings (naming them).
    """
    run_dir = Path(run_dir).expanduser()
    path = run_dir / CHECKPOINT_DIR / EVOLVE_FILE
    if not path.is_file():
        raise DnasError(
            f"resume={run_dir}: no dnas-evolve checkpoint there ({path} is missing); give the run "
            "directory of an interrupted dnas-evolve"
        )
    data = _read_json(path, "checkpoint")
    diff = differences(data.get("settings", {}), settings)
    if diff:
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        raise DnasError(
            f"resume={run_dir}: that run had other settings: {shown}; resume with the settings it "
            f"ran with (its overrides are in {run_dir / '.hydra' / 'overrides.yaml'})"
        )
    return data


def load_resumed(
    run_dir: str | Path, data: Mapping[str, Any], genomes: GenomeSpace, table_hash: str
) -> Resumed:
    """The state ``check_resumable`` accepted, decoded (``measured.json`` too, when written).

    Raises:
        DnasError: the run priced its architectures with another cost table, or a file is damaged.
    """
    run_dir = Path(run_dir).expanduser()
    if data.get("table_hash") != table_hash:
        raise DnasError(
            f"resume={run_dir}: that run used another cost table (hash "
            f"{str(data.get('table_hash'))[:12]}, this one {table_hash[:12]}); resume with the "
            "table it used (table.path=...)"
        )
    resumed = Resumed(run_dir, predicted=int(data.get("predicted", 0)))
    try:
        if data.get("search") is not None:
            resumed.search = state_from_json(genomes, data["search"])
        path = run_dir / CHECKPOINT_DIR / MEASURED_FILE
        if path.is_file():
            pairs = _read_json(path, "measurements")["measured"]
            resumed.measured = {_tuples(key): float(acc) for key, acc in pairs}
    except (KeyError, TypeError, ValueError) as e:
        raise DnasError(f"resume={run_dir}: its checkpoint is damaged ({e!r})") from e
    return resumed


# ------------------------------------------------------------------------------------ writing
class Checkpointer:
    """Writes one run's ``measured.json`` and ``evolve.json``.

    Args:
        out: the run directory.
        genomes: the genome space.
        settings: ``run_settings`` of the run's config.
        table_hash: the cost table's content hash.
        every_s: ``save_measured`` rewrites the file at most this often unless forced.
    """

    def __init__(
        self,
        out: Path,
        genomes: GenomeSpace,
        settings: Mapping[str, Any],
        table_hash: str,
        every_s: float = SAVE_EVERY_S,
    ) -> None:
        self.dir = Path(out) / CHECKPOINT_DIR
        self.genomes, self.settings, self.table_hash = genomes, dict(settings), table_hash
        self.every_s = every_s
        self.search: SearchState | None = None
        self.predicted = 0
        self._saved_measured = -1  # cache size at the last save
        self._saved_at = float("-inf")

    @property
    def evolve_path(self) -> Path:
        return self.dir / EVOLVE_FILE

    def save_measured(self, measured: Mapping[tuple, float], force: bool = False) -> None:
        """Rewrite ``measured.json`` if ``measured`` grew since the last save, and either
        ``force`` or ``every_s`` has passed."""
        if len(measured) == self._saved_measured:
            return
        if not force and time.monotonic() - self._saved_at < self.every_s:
            return
        self._write(
            MEASURED_FILE, {"format": FORMAT, "measured": [[k, a] for k, a in measured.items()]}
        )
        self._saved_measured, self._saved_at = len(measured), time.monotonic()

    def save_search(
        self, state: SearchState | None, predicted: int, measured: Mapping[tuple, float]
    ) -> None:
        """Rewrite ``evolve.json`` with ``state`` (after ``measured.json``, if that grew)."""
        self.save_measured(measured, force=True)
        self.search, self.predicted = state, predicted
        self._write(
            EVOLVE_FILE,
            {
                "format": FORMAT,
                "settings": self.settings,
                "table_hash": self.table_hash,
                "predicted": predicted,
                "search": None if state is None else state_to_json(self.genomes, state),
            },
        )

    def _write(self, name: str, data: dict[str, Any]) -> None:
        with atomic_path(self.dir / name) as tmp:
            tmp.write_text(json.dumps(data, separators=(",", ":")) + "\n")
