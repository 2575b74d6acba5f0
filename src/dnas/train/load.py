"""Build a child network from an architecture (scratch or a supernet's weights) and load a
trained one back from its run directory (no Lightning, no Hydra)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from dnas.errors import DnasError, load_yaml, read_text
from dnas.space import Architecture, SearchSpace, SpaceError
from dnas.supernet import ChildNet, SuperNet

MODEL_FILE = "model.pt"
SPACE_FILE = "space.yaml"
ARCH_FILE = "arch.yaml"
SUPERNET_FILE = "supernet.pt"


class TrainError(DnasError):
    """A problem with the inputs of a training run (architecture, checkpoint, space)."""


def resolve_arch_path(arch: str | Path) -> Path:
    """``arch`` itself, or ``arch/arch.yaml`` when it is a run directory."""
    path = Path(arch).expanduser()
    if path.is_dir():
        path = path / ARCH_FILE
    if not path.is_file():
        raise TrainError(
            f"architecture file not found: {path} (give arch=RUN_DIR or arch=RUN_DIR/arch.yaml "
            "of a dnas-search run)"
        )
    return path


def load_arch(path: Path, space: SearchSpace) -> Architecture:
    """Read ``path`` and check that it is an architecture of ``space``."""
    try:
        arch = Architecture.load(path)
    except (SpaceError, yaml.YAMLError) as e:
        raise TrainError(f"{path} is not a dnas architecture: {e}") from None
    except DnasError as e:  # binary or UTF-16 (dnas.errors.read_text)
        raise TrainError(f"{e} (an arch.yaml, or the run directory holding it)") from None
    try:
        space.validate_arch(arch)
    except SpaceError as e:
        other = (
            f" (it was derived in space {arch.space!r}: pass space={arch.space})"
            if (arch.space and arch.space != space.name)
            else ""
        )
        raise TrainError(f"{path} does not fit space {space.name!r}: {e}{other}") from None
    return arch


def load_supernet(path: str | Path, space: SearchSpace) -> SuperNet:
    """A ``SuperNet`` of ``space`` with the weights of ``path`` (a ``supernet.pt`` state dict).

    Raises:
        TrainError: the file is missing, not a trusted state dict, or of another space.
    """
    path = Path(path).expanduser()
    if path.is_dir() and (path / SUPERNET_FILE).is_file():  # a search's run directory
        path = path / SUPERNET_FILE
    if path.is_dir():
        raise TrainError(f"{path} is a directory without a {SUPERNET_FILE}; give a search's run")
    if not path.is_file():
        raise TrainError(f"supernet checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types
        raise TrainError(
            f"{path} is not a supernet state dict this dnas can load safely "
            f"({type(e).__name__}); use the supernet.pt a dnas-search run wrote"
        ) from None
    if not isinstance(state, Mapping):
        raise TrainError(f"{path} does not hold a state dict")
    if "state_dict" in state:
        raise TrainError(
            f"{path} is a Lightning checkpoint, not a supernet state dict: give the supernet.pt a"
            " dnas-search run wrote (a dnas-train run resumes with ckpt_path=)"
        )

    # one depthwise weight per kernel size (search.kernel_weights=separate) is stored 5-d
    separate = any(k.endswith("dw.weight") and getattr(v, "ndim", 0) == 5 for k, v in state.items())
    supernet = SuperNet(space, kernel_weights="separate" if separate else "shared")
    own = supernet.state_dict()
    arch = ("arch_logits", "arch_index")
    if any(k.endswith(arch) for k in own) and not any(str(k).endswith(arch) for k in state):
        raise TrainError(
            f"{path} holds no architecture parameters: it is not a supernet (a dnas-train "
            "model.pt is a trained child); give the supernet.pt a dnas-search run wrote"
        )
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        raise TrainError(
            f"{path} is not a supernet of space {space.name!r}: {len(missing)} missing, "
            f"{len(unexpected)} unexpected and {len(shapes)} differently shaped tensors"
            + (f" (e.g. {(shapes or missing or unexpected)[0]})")
            + "; pass the space the search ran on (space=...)"
        )
    supernet.load_state_dict(state)
    return supernet


def init_child(
    space: SearchSpace,
    arch: Architecture,
    init: str | Path,
    calibration: Iterable[Any] | None = None,
    bn_batches: int = 50,
) -> ChildNet:
    """The child network of ``arch``, from random weights or inherited from a supernet.

    Args:
        space: the search space.
        arch: the architecture (validated).
        init: ``"scratch"`` or the path of a ``supernet.pt``.
        calibration: training batches for re-estimating BN statistics (inherited weights only).
        bn_batches: how many of them.
    """
    if str(init) == "scratch":
        return ChildNet(space, arch)
    if calibration is None:
        raise TrainError("inheriting supernet weights needs calibration batches for batch norm")
    supernet = load_supernet(init, space)
    return ChildNet.from_supernet(supernet, arch, calibration, bn_batches)


def save_space(space: SearchSpace, path: Path) -> None:
    from dnas.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(space.to_dict(), sort_keys=False))


def load_child(run_dir: str | Path, map_location: str | torch.device = "cpu") -> ChildNet:
    """The trained child network of a ``dnas-train`` run directory, in eval mode.

    Rebuilt from the directory's ``space.yaml``, ``arch.yaml`` and ``model.pt`` (a state dict
    loaded with ``weights_only=True``); its outputs equal those of the trained model.
    """
    run = Path(run_dir).expanduser()
    files = {name: run / name for name in (SPACE_FILE, ARCH_FILE, MODEL_FILE)}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise TrainError(f"{run} is not a dnas-train run directory: missing {', '.join(missing)}")
    space = SearchSpace.from_dict(load_yaml(read_text(files[SPACE_FILE], "run file")))
    try:
        arch = load_arch(files[ARCH_FILE], space)
    except TrainError as e:  # its "pass space=" hint is for dnas-train, not for a finished run
        why = str(e).split(": ", 1)[-1].split(" (it was derived in space")[0]
        raise TrainError(
            f"{files[ARCH_FILE]} does not fit the run's own {files[SPACE_FILE]} ({why}): the "
            "run's files disagree; rerun dnas-train"
        ) from None
    child = ChildNet(space, arch)
    try:
        state = torch.load(files[MODEL_FILE], map_location=map_location, weights_only=True)
        child.load_state_dict(state)
    except Exception as e:  # truncated, foreign or of another architecture: many types
        raise TrainError(
            f"{files[MODEL_FILE]} is not the trained weights of {files[ARCH_FILE]} "
            f"({type(e).__name__}: {' '.join(str(e).split())[:120]}); rerun dnas-train"
        ) from None
    return child.to(map_location).eval()
