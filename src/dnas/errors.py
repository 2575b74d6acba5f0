"""The one base of every error a user can fix by changing their input.

The commands print a ``DnasError`` as one line naming the problem and what is allowed, and exit
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class DnasError(ValueError):
    """Bad input: a config, file, shape or budget that cannot be used (the message says why)."""


class NonFiniteLossError(FloatingPointError):
    """A NaN or infinite loss: the run stops rather than train on garbage."""


class Interrupted(Exception):
    """A run stopped before it finished: a signal, or a non-finite loss (the message says where
    its last checkpoint is)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def read_text(path, what: str, kind: str = "YAML") -> str:
    """The text of a file the user named, or one line saying why it cannot be read as text.

    Args:
        path: the file (``str`` or ``Path``).
        what: how messages name it (``"search space"``, ``"hardware config"``, ...).
        kind: the kind of text expected, for the message (``"YAML"``, ``"CSV"``).

    Raises:
        DnasError: a directory, or bytes that are not UTF-8 text (a binary file, UTF-16): the
            message names the file and the offending byte. A missing file raises
            ``FileNotFoundError`` as ``open`` does (callers say it in their own words).
    """
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        raise DnasError(f"{what} {p} is a directory; give a {kind} file")
    try:
        return p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DnasError(
            f"{what} {p} is not UTF-8 text (byte {e.start}: {e.reason}); give a {kind} file"
        ) from None


_YAML_LOADER = None


def load_yaml(text: str):
    """YAML text as data, read the way Hydra reads its configs (OmegaConf's rules), so that a file
    means the same to every command: ``15e-3`` and ``5e2`` are numbers (PyYAML's ``safe_load``
    reads them as strings, so ``dnas-cost --hardware`` refused a file ``dnas-lut hardware=``
    took), a key given twice is an error (``safe_load`` keeps the last), and dates stay strings.

    Raises:
        yaml.YAMLError: text that is not YAML, or a duplicate key.
    """
    global _YAML_LOADER
    import yaml

    if _YAML_LOADER is None:
        _YAML_LOADER = _yaml_loader()
    return yaml.load(text, Loader=_YAML_LOADER)  # a SafeLoader


def _yaml_loader():
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            keys = set()
            for key_node, _ in node.value:
                if key_node.tag != yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG:
                    continue
                if key_node.value in keys:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key_node.value}",
                        key_node.start_mark,
                    )
                keys.add(key_node.value)
            return super().construct_mapping(node, deep=deep)

    # YAML 1.2's floats (1e-3 without a dot or an exponent sign), as OmegaConf adds them
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            r"""^(?:
             [-+]?[0-9]+(?:_[0-9]+)*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?[0-9]+(?:_[0-9]+)*(?:[eE][-+]?[0-9]+)
            |\.[0-9]+(?:_[0-9]+)*(?:[eE][-+][0-9]+)?
            |[-+]?[0-9]+(?:_[0-9]+)*(?::[0-5]?[0-9])+\.[0-9_]*
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
            re.X,
        ),
        list("-+0123456789."),
    )
    Loader.yaml_implicit_resolvers = {
        key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for key, resolvers in Loader.yaml_implicit_resolvers.items()
    }
    return Loader
