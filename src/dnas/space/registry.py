"""Named search spaces: the YAML configs in ``dnas/conf/space``, loaded by name or path."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from dnas.errors import DnasError, load_yaml, read_text
from dnas.space.errors import SpaceError
from dnas.space.search_space import SearchSpace


def builtin_space_names() -> list[str]:
    """Names of the spaces shipped with the package (``conf/space/NAME.yaml``)."""
    root = resources.files("dnas") / "conf" / "space"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_space(name_or_path: str | Path = "fmnist_mbv2") -> SearchSpace:
    """Load a search space by built-in name or from a YAML file.

    Args:
        name_or_path: a built-in name (see ``builtin_space_names()``) or a path to a YAML file
            holding a space config mapping.

    Raises:
        ValueError: an unknown name (the message lists the built-in ones).
        FileNotFoundError: a path that does not exist.
        SpaceError: an invalid config (the message names the field).
    """
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if p.is_dir():
            raise DnasError(f"search space {p} is a directory; give a YAML file of one")
        if not p.is_file():
            raise FileNotFoundError(f"search space file not found: {p}")
        text, source = read_text(p, "search space"), str(p)
    else:
        res = resources.files("dnas") / "conf" / "space" / f"{name_or_path}.yaml"
        if not res.is_file():
            raise DnasError(
                f"unknown search space {str(name_or_path)!r}; built-in: {builtin_space_names()} "
                "(or give a path to a YAML file)"
            )
        text, source = res.read_text(), f"built-in space {name_or_path!r}"
    data = load_yaml(text)
    if not isinstance(data, Mapping):
        raise SpaceError("space", f"{source} must hold a mapping, got {type(data).__name__}")
    return SearchSpace.from_dict(data)
