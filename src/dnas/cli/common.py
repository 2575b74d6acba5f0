"""What the commands share: quiet Lightning, the run directory, checks before training, what a
search aims at, and the run record (``run.json``) written beside every result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dnas import __version__
from dnas.atomic import write_problem
from dnas.errors import DnasError, Interrupted


def _register_resolvers() -> None:
    """``${dnas.run_id:}``: ``HH-MM-SS-PID``, a run directory two runs started in the same second
    cannot share (Hydra's ``${now:%H-%M-%S}`` alone can)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("dnas.run_id"):
        OmegaConf.register_new_resolver(
            "dnas.run_id", lambda: f"{time.strftime('%H-%M-%S')}-{os.getpid()}", use_cache=True
        )


_register_resolvers()

LIGHTNING_NOISE = (
    r".*isinstance\(treespec, LeafSpec\)",  # Lightning's own use of a deprecated torch API
    r"Experiment logs directory .* exists and is not empty",  # the run dir holds .hydra/
    r"The number of training batches .* is smaller than the logging interval",
    r".*does not have many workers which may be a bottleneck.*",
    r".*a `val_dataloader` but have no `validation_step`.*",
)


def silence_lightning() -> None:
    """Filter Lightning warnings that say nothing about the user's run."""
    for message in LIGHTNING_NOISE:
        warnings.filterwarnings("ignore", message=message)


RUN_MARKERS = ("run.json", "arch.yaml", "supernet.pt", "model.pt", "checkpoints/last.ckpt")
"""Files whose presence makes a directory a run of its own (finished, or interrupted)."""


def output_dir(given: str | Path | None, cfg: Any = None) -> Path:
    """``given``, or Hydra's run directory; created.

    A directory that already holds a run (``RUN_MARKERS``, e.g. ``hydra.run.dir=`` a finished
    run) is refused before any work, so its results are never overwritten, unless this run
    resumes (``cfg.ckpt_path`` set) or ``cfg.overwrite`` is true, and then only over a run of
    the same command (``refuse_a_run``).
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    key, command = "hydra.run.dir=", None
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        if given is None:  # the command's own run directory (not one it trains a child into)
            given, command = hc.runtime.output_dir, hc.job.get("config_name")
        if hc.mode == RunMode.MULTIRUN:
            key = "hydra.sweep.dir="
    out = Path(given)
    if out.exists() and not out.is_dir():
        raise DnasError(f"the run directory {out} is a file; give {key} a directory")
    if cfg is not None:
        refuse_a_run(out, [out], key, cfg, command)
    out.mkdir(parents=True, exist_ok=True)
    return out


COMMAND_OF_METHOD = {
    "train": "train",
    "uniform": "uniform",
    "evolution_predictor": "evolve",
    "evolution_direct": "evolve",
    "random_predictor": "evolve",
    "random": "evolve",
}
"""The command behind each ``run.json`` method that is not a search's (``dnas``, ...)."""


def command_of_run(run_dir: Path) -> str | None:
    """The config name of the command that wrote the run in ``run_dir`` (``search``, ``train``,
    ``evolve``, ``uniform``), from its ``run.json`` (or, for older runs, ``model.pt`` or
    ``supernet.pt``); None when it cannot tell (no run, or one stopped before its record)."""
    method = read_run_record(run_dir).get("method")
    if isinstance(method, str) and method:
        return COMMAND_OF_METHOD.get(method, "search")
    if (run_dir / "model.pt").exists():
        return "train"
    if (run_dir / "supernet.pt").exists():
        return "search"
    return None


def refuse_a_run(
    out: Path, dirs: list[Path], key: str, cfg: Any, command: str | None = None
) -> None:
    """Refuse to write into ``out`` when one of ``dirs`` (``out`` itself, or a sweep's job
    folders) holds a run (``RUN_MARKERS``), unless ``cfg`` resumes (``ckpt_path``, ``resume``) or
    overwrites (``overwrite: true``). ``key`` is the override that names ``out``
    (``hydra.run.dir=``, ``hydra.sweep.dir=``), for the message.

    ``overwrite=true`` replaces a run of the same ``command`` (a config name) only: over another
    command's run (dnas-train into a search's directory) the two runs' files would mix, the
    search's ``arch.yaml``, ``run.json`` and checkpoint replaced beside its ``supernet.pt``.

    Raises:
        DnasError: naming the run's files and the ways out.
    """
    if cfg.get("ckpt_path") or cfg.get("resume"):
        return
    if cfg.get("overwrite") is True:
        for d in dirs if command is not None else []:
            other = command_of_run(d)
            if other is not None and other != command:
                raise DnasError(
                    f"{d} holds a dnas-{other} run; overwrite=true replaces a dnas-{command} run "
                    f"only (the two runs' files would mix in one directory): give a new {key}"
                )
        return
    if dirs == [out]:
        found = [m for m in RUN_MARKERS if (out / m).exists()]
        if found:
            resume = "resume=" if "resume" in cfg else "ckpt_path="  # dnas-evolve, -uniform
            raise DnasError(
                f"{out} already holds a run ({', '.join(found)}); it is not overwritten: give "
                f"another {key}, resume it with {resume}, or overwrite=true to replace it"
            )
        return
    runs = [d for d in dirs if any((d / m).exists() for m in RUN_MARKERS)]
    if runs:
        names = [f"{d.relative_to(out)}/" if d != out else "." for d in runs]
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        raise DnasError(
            f"{out} already holds a sweep's runs (in {shown}); they are not overwritten: give "
            f"another {key}, or overwrite=true to replace them"
        )


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def parallel_jobs() -> int:
    """How many jobs the running Hydra launcher runs at once: joblib's ``n_jobs`` (negative counts
    back from the cores, as joblib does: -1 is all of them), otherwise 1."""
    try:
        from hydra.core.hydra_config import HydraConfig

        n_jobs = HydraConfig.get().launcher.get("n_jobs")
    except (ImportError, ValueError, AttributeError):  # no Hydra run (e.g. run() from Python)
        return 1
    if n_jobs is None:
        return 1
    n_jobs = int(n_jobs)
    return max(1, available_cores() + 1 + n_jobs if n_jobs < 0 else n_jobs)


def set_threads(threads: int | str | None) -> int:
    """Apply the ``threads`` setting to torch's intra-op thread pool; returns the count in use.

    Args:
        threads: ``None`` keeps torch's default; an integer sets it; ``"auto"`` shares the cores
            among the jobs a parallel launcher runs at once (``cores // n_jobs``, at least 1) so
            that parallel jobs do not fight over cores, and keeps torch's default otherwise.
    """
    import torch

    if threads == "auto":
        jobs = parallel_jobs()
        threads = max(1, available_cores() // jobs) if jobs > 1 else None
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise DnasError(f"threads must be a positive integer, auto or null, got {threads!r}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def fit_classes_to_data(cfg, data, say: Callable[[str], object] = print) -> None:
    """Give the space's classifier the data's number of classes (``cfg.space.num_classes``).

    A 3-class image folder then trains a 3-way classifier, and the classifier's cost is priced at
    3 outputs: ``num_classes`` is part of the space's fingerprint, so the cost table's cache key
    changes with it and a table built for another class count is not reused. When the counts
    differ, ``say`` gets one line saying so. Call before the space is built from ``cfg.space``.

    Args:
        cfg: the composed config (its ``space.num_classes`` is updated in place).
        data: the instantiated data module; one without ``num_classes`` leaves the space alone.
        say: prints the line.
    """
    from omegaconf import open_dict

    classes = getattr(data, "num_classes", None)
    if classes is None or int(classes) == int(cfg.space.num_classes):
        return
    was = int(cfg.space.num_classes)
    with open_dict(cfg):
        cfg.space.num_classes = int(classes)
    say(classes_note(data, cfg.space.name, int(classes), was))


def classes_note(data, space_name: str, classes: int, was: int) -> str:
    """The line saying that space ``space_name``'s classifier takes ``data``'s class count."""
    return (
        f"classes: {type(data).__name__} has {classes}, so space {space_name} gets a "
        f"{classes}-way classifier (its config says {was})"
    )


def check_data(space, data) -> None:
    """The data module loads and fits the space (before any training)."""
    from dnas.data import check_data_fits_space

    if hasattr(data, "check"):
        data.check()
    check_data_fits_space(space, data)


def describe_table(table, path: Path | None, built: bool) -> str:
    """``cost table: PATH (cached, 22,053 entries)``."""
    return f"cost table: {path} ({'built' if built else 'cached'}, {table.num_entries:,} entries)"


def describe_budget(module) -> str:
    """``budget: latency_ms <= 0.4662 ms  (space spans ...)``: what a ``SearchModule`` aims at."""
    from dnas.cost.levels import describe_levels

    extremes = module.table.extremes(module.space)
    levels = describe_levels(module.space, module.search_space)
    return (
        f"budget: {'; '.join(t.describe() for t in module.front)}  (space spans "
        f"{extremes['min_latency_ms']:.4g}-{extremes['max_latency_ms']:.4g} ms, "
        f"{extremes['min_energy_mj']:.4g}-{extremes['max_energy_mj']:.4g} mJ)"
        + (f"\n{levels}" if levels else "")
    )


def git_revision() -> str | None:
    """The git revision of the source tree dnas runs from, when it is a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_run_record(out: Path, method: str, **fields: Any) -> Path:
    """``run.json``: what produced this directory (``method``), with which dnas, and from what."""
    from dnas.atomic import atomic_path

    record = {"method": method, "dnas_version": __version__, "git_revision": git_revision()}
    record.update(fields)
    path = out / "run.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    return path


def read_run_record(run_dir: Path) -> dict[str, Any]:
    """The ``run.json`` of a run directory, or ``{}``."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolved_config(cfg) -> dict[str, Any]:
    """The composed config as plain data, interpolations resolved, without Hydra's own node."""
    from omegaconf import OmegaConf

    return {
        str(k): OmegaConf.to_container(cfg[k], resolve=True)
        if OmegaConf.is_config(cfg[k])
        else cfg[k]
        for k in cfg
        if k != "hydra"
    }


# What a config of ours needs that only the ``sweep`` extra installs: group/name -> module.
_SWEEP_PLUGINS = {
    ("hydra/launcher", "parallel"): "hydra_plugins.hydra_joblib_launcher",
    ("hydra/launcher", "slurm"): "hydra_plugins.hydra_submitit_launcher",
    ("hparams_search", "optuna"): "hydra_plugins.hydra_optuna_sweeper",
}


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


FILE_GROUPS = ("space", "hardware")
"""Config groups whose option may be a YAML file of one (``space=$PWD/my.yaml``)."""


def file_overrides(prog: str, argv: list[str] | None = None) -> list[str]:
    """``space=PATH.yaml`` (or ``hardware=``) as Hydra can take it: the file is copied into a
    private config directory as ``<group>/file_<stem>.yaml``, the override becomes
    ``<group>=file_<stem>`` and that directory joins ``hydra.searchpath``. Hydra itself only takes
    names of the package's configs. ``argv`` (default ``sys.argv``) is rewritten in place; a
    path that is not a file is one line on stderr and exit status 2.

    Returns:
        The arguments as rewritten.
    """
    import atexit
    import tempfile

    args = sys.argv if argv is None else argv
    start = 1 if argv is None else 0
    conf_dir: Path | None = None
    first: int | None = None
    for i in range(start, len(args)):
        group, sep, value = args[i].partition("=")
        is_path = value.endswith((".yaml", ".yml")) or "/" in value or value.startswith("~")
        if not sep or group not in FILE_GROUPS or not is_path:
            continue
        path = Path(value).expanduser()
        if path.is_dir():
            print(
                f"{prog}: error: {group}={value} is a directory; give a YAML file", file=sys.stderr
            )
            sys.exit(2)
        if not path.is_file():
            print(f"{prog}: error: {group}={value}: no such file", file=sys.stderr)
            sys.exit(2)
        try:
            import yaml

            from dnas.errors import load_yaml, read_text

            data = load_yaml(read_text(path, f"{group} file"))
        except DnasError as e:
            print(f"{prog}: error: {e}", file=sys.stderr)
            sys.exit(2)
        except yaml.YAMLError as e:
            reason = " ".join(str(e).split())
            print(f"{prog}: error: {group}={value}: not valid YAML ({reason})", file=sys.stderr)
            sys.exit(2)
        if not isinstance(data, dict):
            got = "an empty file" if data is None else type(data).__name__
            print(
                f"{prog}: error: {group}={value} must hold a YAML mapping of {group} settings, "
                f"got {got}",
                file=sys.stderr,
            )
            sys.exit(2)
        if conf_dir is None:
            conf_dir = Path(tempfile.mkdtemp(prefix="dnas-conf-"))
            atexit.register(shutil.rmtree, conf_dir, True)
        name = "file_" + "".join(c if c.isalnum() or c in "-_" else "_" for c in path.stem)
        (conf_dir / group).mkdir(exist_ok=True)
        shutil.copyfile(path, conf_dir / group / f"{name}.yaml")
        args[i] = f"{group}={name}"
        first = i if first is None else first
    if conf_dir is not None and first is not None:  # beside the overrides, before any flag
        args.insert(first, f"hydra.searchpath=[file://{conf_dir}]")
    return args


def check_overrides(prog: str, argv: list[str] | None = None) -> None:
    """Before Hydra composes: a ``GROUP=NAME`` override naming an option no config group of dnas
    offers, or one that needs the ``sweep`` extra when it is not installed, is one line on stderr
    and exit status 2 (Hydra says "Could not find" or "Could not load" and exits 1). Paths,
    ``+``/``~`` overrides, sweeps over names and Hydra's own groups are left to Hydra."""
    from importlib import resources

    conf = resources.files("dnas.conf")
    for arg in sys.argv[1:] if argv is None else argv:
        if arg.startswith(("-", "+", "~")) or "=" not in arg:
            continue
        group, _, name = arg.partition("=")
        if not group or "," in name or "/" in name or name.endswith((".yaml", ".yml")):
            continue
        plugin = _SWEEP_PLUGINS.get((group, name))
        if plugin is not None and not _importable(plugin):
            print(
                f"{prog}: error: {arg} needs Hydra's sweep plugins: pip install 'dnas[sweep]'",
                file=sys.stderr,
            )
            sys.exit(2)
        folder = conf.joinpath(*group.split("/"))
        if group.startswith("hydra/") or not folder.is_dir() or name == "null":
            continue
        if group in FILE_GROUPS and name.startswith("file_"):
            continue  # a user's file, put on Hydra's search path by file_overrides
        offered = sorted(
            p.name.rsplit(".", 1)[0] for p in folder.iterdir() if p.name.endswith(".yaml")
        )
        if name not in offered:
            print(
                f"{prog}: error: {group}={name} is not one of the {group} configs: "
                f"{', '.join(offered)}",
                file=sys.stderr,
            )
            sys.exit(2)


def handle_version(prog: str, argv: list[str] | None = None) -> None:
    """``PROG --version``: print the package version and exit (Hydra's parser has no such flag)."""
    if "--version" in (sys.argv[1:] if argv is None else argv):
        print(f"{prog} {__version__}")
        sys.exit(0)


CONFIG_NAMES = {
    "dnas-search": "search",
    "dnas-train": "train",
    "dnas-lut": "lut",
    "dnas-evolve": "evolve",
    "dnas-uniform": "uniform",
}
"""Each Hydra command's primary config."""


class Terminated(KeyboardInterrupt):
    """SIGTERM outside the phases that handle it themselves (start-up, table, data): raised by
    the handler ``hydra_entry`` installs, so it unwinds like Ctrl-C and exits 143 with a line."""


def raise_terminated(signum: int, frame: object) -> None:
    """SIGTERM handler of the phases no one else handles. While Lightning fits, its own handler
    calls this one after noting the signal (it keeps the previous handler in its chain): then it
    does nothing, and Lightning stops at a safe point, after which the run names its checkpoint."""
    caller = sys._getframe(1)
    if type(caller.f_locals.get("self")).__name__ == "_HandlersCompose":
        return
    raise Terminated()


def hydra_entry(prog: str, hydra_main: Callable[[], Any]) -> None:
    """A Hydra command's ``main()``: ``prepare_argv``, the Hydra app, ``main_exit``; a signal
    before the run's own handling starts is one line and exit 143 (SIGTERM) or 130 (Ctrl-C),
    never a traceback."""
    import signal

    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        prepare_argv(prog)
        hydra_main()
    except KeyboardInterrupt as e:
        name, code = ("SIGTERM", 143) if isinstance(e, Terminated) else ("an interrupt", 130)
        print(f"{prog}: stopped by {name}; no result was written", file=sys.stderr)
        sys.exit(code)
    main_exit(prog)


def quote_non_ascii(argv: list[str] | None = None) -> list[str]:
    """``key=value`` overrides whose value holds non-ASCII characters (``data.root=/data/ünï``)
    quoted for Hydra's grammar, which refuses them unquoted (a five-line LexerNoViableAlt);
    values with quotes, brackets, braces or a sweep's commas are left as the user wrote them.
    Edits ``sys.argv`` in place when ``argv`` is None; returns the arguments."""
    args = sys.argv if argv is None else argv
    for i, arg in enumerate(args):
        key, sep, value = arg.partition("=")
        if not sep or arg.startswith("-") or value.isascii():
            continue
        if any(c in value for c in "'\"[]{}(),\\$"):
            continue
        args[i] = f"{key}='{value}'"
    return args


def prepare_argv(prog: str) -> None:
    """What every Hydra command does before Hydra parses ``sys.argv``: ``--version``,
    ``space=PATH.yaml`` files (``file_overrides``), unknown config names and missing sweep
    plugins (``check_overrides``), then the composed config (``check_composed``), each one line
    and exit status 2 when wrong. Hydra writes ``.hydra/`` into the run directory before a
    command's own checks run, so what would make a run refuse its directory is checked here."""
    handle_version(prog)
    quote_non_ascii()
    file_overrides(prog)
    check_overrides(prog)
    try:
        check_composed(prog, CONFIG_NAMES[prog])
    except (DnasError, FileNotFoundError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)


def _leaves(node: Any, prefix: str = ""):
    """``(dotted key, value)`` of every leaf of a plain container."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}{k}.")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, f"{prefix[:-1]}[{i}].")
    else:
        yield prefix[:-1], node


PATH_KEYS = frozenset(
    {
        "arch",
        "ckpt_path",
        "data.root",
        "export_csv",
        "init",
        "measured_csv",
        "out",
        "predictor.data",
        "resume",
        "supernet",
        "table.path",
    }
)
"""Settings that name one file or directory (their default is null or a word such as auto)."""

CHECKPOINT_KEYS = {"search": "dnas_search", "train": "dnas_train"}
"""The state each command's checkpoints carry (``SearchModule`` / ``ChildModule.checkpoint_key``)."""


def check_resume_checkpoint(config_name: str, ckpt_path: Any) -> None:
    """``ckpt_path=`` read before Hydra writes anything: a checkpoint of another command (a
    dnas-train ``last.ckpt`` given to dnas-search) is named as such, and the run directory it
    would have resumed is left as it was (Hydra rewrote its ``.hydra/`` before the refusal)."""
    from dnas.checkpoint import CheckpointError, read_checkpoint

    key = CHECKPOINT_KEYS.get(config_name)
    if key is None or not ckpt_path or not isinstance(ckpt_path, str) or "${" in ckpt_path:
        return
    state = read_checkpoint(ckpt_path)
    # a dnas-search network=... run's checkpoints carry the graph search's state
    accepted = {key, "dnas_graph_search"} if config_name == "search" else {key}
    if accepted & set(state):
        return
    other = next((c for c, k in CHECKPOINT_KEYS.items() if k in state), None)
    what = f"a dnas-{other} checkpoint" if other else "not a dnas checkpoint"
    raise CheckpointError(
        f"ckpt_path={ckpt_path} is {what}, not one of dnas-{config_name}: resume a dnas-"
        f"{config_name} run with its own checkpoints/last.ckpt"
    )


def check_composed(prog: str, config_name: str, argv: list[str] | None = None) -> None:
    """Compose the config a command line asks for, as Hydra will, and refuse before Hydra runs:

    - an override of a key the config does not have (Hydra: five lines, exit 1);
    - a value that is not true or false where the config holds a boolean (``force=maybe`` would
      count as true), or a string where it holds a number (``train.bn_batches=abc``);
    - a number that is NaN or infinite (no setting means either);
    - ``seed`` outside ``[0, 2**32 - 1]``;
    - a list or a mapping where the config holds one number (``batch=[1]``, ``search.tau0={a:1}``);
    - ``ckpt_path=`` a checkpoint another command wrote (``check_resume_checkpoint``);
    - ``hydra.run.dir=`` empty, a file, or a directory holding a run while the command neither
      resumes nor overwrites (Hydra would rewrite the run's ``.hydra/`` before the refusal).

    Sweeps (``-m``, ``a,b``) and Hydra's own flags are left to Hydra; so is a composition that
    fails for another reason (Hydra says it better). ``argv`` defaults to ``sys.argv[1:]``.

    Raises:
        DnasError: naming the key and what is allowed.
    """
    import math

    args = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-m", "--multirun") for a in args):
        given = {a.partition("=")[0]: a.partition("=")[2] for a in args if "=" in a}
        check_sweep_dir(config_name, given.get("hydra.sweep.dir"), given)
    if any(a.startswith("-") for a in args):
        return  # -m, --cfg, --help, -c ...: Hydra's own
    overrides = [a for a in args if "=" in a]
    if any("," in a.partition("=")[2] and not a.partition("=")[2].startswith("[") for a in args):
        return  # a sweep over values
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    if GlobalHydra.instance().is_initialized():
        return  # inside a running Hydra app (tests composing configs): nothing to pre-check
    groups = [a for a in overrides if _is_group_override(a)]
    try:
        with initialize_config_module("dnas.conf", version_base="1.3"):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
            base = compose(config_name, overrides=groups)
    except Exception as e:  # Hydra's composition errors come in several types
        text = f"{e}\n{e.__cause__ or ''}"
        if "not in struct" in text:
            key = next(
                (a.partition("=")[0] for a in overrides if f"'{a.partition('=')[0]}'" in text),
                None,
            )
            if key is not None:
                raise DnasError(
                    f"{key} is not a setting of {prog} (see {prog} --cfg job; a new key needs "
                    f"+{key}=...)"
                ) from None
        return
    given = {a.partition("=")[0].lstrip("+") for a in overrides}
    try:
        plain = OmegaConf.to_container(cfg, resolve=False)
        defaults = dict(_leaves(OmegaConf.to_container(base, resolve=False)))
    except Exception:
        return
    for key in sorted(given):
        default = defaults.get(key)
        node: Any = plain
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, (list, dict)):
            continue
        if key in PATH_KEYS:
            raise DnasError(f"{key} takes one path, got {node}")
        # Lightning's Trainer takes lists (devices=[0, 1]); a string default may stand for a list
        # (uniform.bits: auto or [4, 8]); None: anything goes
        if not key.startswith(("trainer.", "hydra.")) and isinstance(default, (int, float)):
            kind = "a list" if isinstance(node, list) else "a mapping"
            raise DnasError(f"{key} takes one value (default {default!r}), got {kind}: {node}")
    for key, value in _leaves({k: v for k, v in plain.items() if k != "hydra"}):
        if isinstance(value, float) and not math.isfinite(value):
            raise DnasError(f"{key} must be a finite number, got {value}")
        if key not in given:
            continue
        default = defaults.get(key)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise DnasError(f"{key} must be true or false, got {value!r}")
        number = isinstance(default, (int, float)) and not isinstance(default, bool)
        # Lightning's Trainer takes strings for several numbers (devices=auto): its own to judge
        if number and isinstance(value, str) and not key.startswith("trainer."):
            raise DnasError(f"{key} must be a number, got {value!r}")
    seed = plain.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed < 2**32:
        raise DnasError(f"seed must be an integer in [0, 2**32 - 1], got {seed}")
    check_resume_checkpoint(config_name, plain.get("ckpt_path"))
    if str(plain.get("hydra", {}).get("mode")).endswith("MULTIRUN"):  # an experiment sweeps
        given = next((a.partition("=")[2] for a in args if a.startswith("hydra.sweep.dir=")), None)
        check_sweep_dir(config_name, given, plain)
        return
    run_dir = next((a.partition("=")[2] for a in args if a.startswith("hydra.run.dir=")), None)
    if run_dir is None:
        return
    if not run_dir.strip():
        raise DnasError("hydra.run.dir= is empty; give the directory the run should write")
    out = Path(run_dir).expanduser()
    problem = write_problem(out, directory=True)  # a file, under a file, read-only
    if problem:
        raise DnasError(f"hydra.run.dir={run_dir}: {problem}; give a directory it can write")
    if config_name != "lut":
        refuse_a_run(out, [out], "hydra.run.dir=", plain, config_name)


def check_sweep_dir(config_name: str, sweep_dir: str | None, cfg: Any) -> None:
    """A multirun's ``hydra.sweep.dir=``, before Hydra writes ``multirun.yaml`` there and a
    ``.hydra/`` into each job's folder: not empty, not a file, and no job folder of it holding a
    run unless ``cfg`` (the overrides, or the composed config) resumes or overwrites. A sweep
    directory left unnamed is a new one (its name holds the time and process id).

    Raises:
        DnasError: naming the key, the runs found and the ways out.
    """
    if sweep_dir is None or config_name == "lut" or "${" in sweep_dir:
        return
    if not sweep_dir.strip():
        raise DnasError("hydra.sweep.dir= is empty; give the directory the sweep should write")
    out = Path(sweep_dir).expanduser()
    problem = write_problem(out, directory=True)
    if problem:
        raise DnasError(f"hydra.sweep.dir={sweep_dir}: {problem}; give a directory it can write")
    if not out.is_dir():
        return
    flags = dict(cfg)
    if isinstance(flags.get("overwrite"), str):  # an override as typed: overwrite=true
        flags["overwrite"] = flags["overwrite"].strip().lower() == "true"
    jobs = [out, *sorted((d for d in out.iterdir() if d.is_dir()), key=lambda d: d.name)]
    refuse_a_run(out, jobs, "hydra.sweep.dir=", flags, config_name)


def _is_group_override(arg: str) -> bool:
    """Whether ``GROUP=NAME`` picks an option of one of dnas's config groups."""
    from importlib import resources

    group = arg.partition("=")[0].lstrip("+")
    if not group or group.startswith("hydra"):
        return group.startswith("hydra.searchpath")
    return resources.files("dnas.conf").joinpath(*group.split("/")).is_dir()


def check_epochs(max_epochs: Any, warmup_epochs: Any = 0) -> int:
    """``trainer.max_epochs`` as a positive int leaving at least one epoch after the warm-up."""
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise DnasError(
            f"trainer.max_epochs must be a positive whole number of epochs, got {max_epochs!r} "
            "(-1 and null would train forever, 0 would write a result no training produced)"
        )
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise DnasError(
            f"search.warmup_epochs must be a whole number of epochs >= 0, got {warmup_epochs!r} "
            "(a fraction ran every epoch as warm-up: no search)"
        )
    if warmup_epochs >= max_epochs:
        raise DnasError(
            f"search.warmup_epochs={warmup_epochs} leaves no search epoch in "
            f"trainer.max_epochs={max_epochs}: give max_epochs > warmup_epochs"
        )
    return max_epochs


def _misconfiguration() -> type[BaseException]:
    """Lightning's error for a trainer setting this machine cannot honour (``accelerator=gpu``
    without a GPU)."""
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    return MisconfigurationException


def user_error(e: BaseException) -> BaseException | None:
    """The error a user can fix behind ``e`` (unwrapping Hydra's instantiation error), or None.

    A ``TypeError`` or ``ValueError`` raised while Hydra instantiates a configured object (the
    data module, the trainer, an optimiser) is the config's fault: it comes back as a
    ``DnasError`` naming the config key, in one line. A write the file system refused (read-only,
    a file in the way: ``dnas.cli.entry.FS_REFUSALS``) is the user's to fix too.
    """
    from hydra.errors import InstantiationException

    from dnas.cli.entry import FS_REFUSALS

    seen = 0
    while e is not None and seen < 5:
        if isinstance(e, (DnasError, FileNotFoundError, *FS_REFUSALS)):
            return e
        cause = e.__cause__
        if (
            isinstance(e, InstantiationException)
            and isinstance(cause, (TypeError, ValueError, _misconfiguration()))
            and not isinstance(cause, DnasError)
        ):
            import re

            found = re.search(r"full_key: (\S+)", str(e))
            key = found.group(1) if found else ""
            return DnasError(f"{key + ': ' if key else ''}{_one_line(e.__cause__)}")
        e, seen = e.__cause__, seen + 1
    return None


def error_message(e: BaseException) -> str:
    """What a user error says, in one line: an error a DataLoader worker raised comes back with
    the worker's whole traceback in its message ("Caught DatasetError in DataLoader worker
    process 0. Original Traceback ..."); its last line is the message. A write the file system
    refused says what and where (``Not a directory: /path``)."""
    from dnas.cli.entry import FS_REFUSALS, fs_refusal

    if isinstance(e, FS_REFUSALS):
        return fs_refusal(e)
    text = str(e)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1].strip()
        cls = type(e)
        for name in (f"{cls.__module__}.{cls.__qualname__}", cls.__qualname__):
            if last.startswith(f"{name}: "):
                last = last[len(name) + 2 :]
                break
        text = last
    return " ".join(text.split())


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def check_learning_rate(key: str, optimizer: Any) -> None:
    """Every parameter group of a built ``optimizer`` has a learning rate above 0: torch refuses a
    negative one but takes 0, with which a run trains for hours and changes nothing.

    Args:
        key: how the user sets it (``optimizer.weights.lr``, ``--model.weight_optimizer...``).
        optimizer: a ``torch.optim.Optimizer`` (built on a dummy parameter).

    Raises:
        DnasError: naming ``key`` and the value.
    """
    for group in getattr(optimizer, "param_groups", []):
        lr = group.get("lr")
        if hasattr(lr, "item"):  # a tensor learning rate
            lr = lr.item()
        if isinstance(lr, (int, float)) and not isinstance(lr, bool) and not lr > 0:
            raise DnasError(
                f"{key} must be a learning rate > 0, got {lr}: at 0 training changes nothing"
            )


def check_config(cfg: Any) -> None:
    """What every command checks before any work: ``seed`` an integer, every ``trainer.*`` key
    one ``pytorch_lightning.Trainer`` takes (``+trainer.max_epoch=1`` names ``max_epochs``),
    every optimiser of ``optimizer`` built on a dummy parameter (``lr=-1`` is refused here, not
    after the data and table are loaded; ``lr=0`` too: ``check_learning_rate``), and
    ``scheduler`` stepped on it (``T_max=0``).

    Raises:
        DnasError: naming the key and what is allowed.
    """
    import difflib
    import inspect

    import torch
    from hydra.utils import instantiate
    from omegaconf import DictConfig

    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DnasError(f"seed must be an integer, got {seed!r}")
    trainer = cfg.get("trainer")
    if isinstance(trainer, DictConfig):
        import pytorch_lightning as pl

        allowed = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}
        for key in trainer:
            if key.startswith("_") or key in allowed:
                continue
            near = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"; did you mean trainer.{near[0]}?" if near else ""
            raise DnasError(f"trainer.{key} is not an argument of pytorch_lightning.Trainer{hint}")
    opt = cfg.get("optimizer")
    groups = {"optimizer": opt} if isinstance(opt, DictConfig) and "_target_" in opt else {}
    if isinstance(opt, DictConfig) and not groups:
        groups = {
            f"optimizer.{k}": v
            for k, v in opt.items()
            if isinstance(v, DictConfig) and "_target_" in v
        }
    optimizer = None
    for key, spec in groups.items():
        try:
            make = instantiate(spec)
            built = make([torch.nn.Parameter(torch.zeros(1))])
        except Exception as e:
            cause = e.__cause__ if e.__cause__ is not None else e
            raise DnasError(f"{key}: {_one_line(cause)}") from None
        check_learning_rate(f"{key}.lr", built)
        optimizer = built if optimizer is None else optimizer
    sched = cfg.get("scheduler")
    t_max = sched.get("T_max") if isinstance(sched, DictConfig) else None
    if t_max is not None and (isinstance(t_max, bool) or not isinstance(t_max, int) or t_max < 1):
        # 0 divides by zero; -1 runs the cosine backwards, every other epoch at learning rate 0
        raise DnasError(
            f"scheduler.T_max must be a whole number of epochs >= 1 (trainer.max_epochs by "
            f"default), got {t_max!r}"
        )
    if optimizer is not None and isinstance(sched, DictConfig) and "_target_" in sched:
        # a few steps on the dummy optimizer: CosineAnnealingLR(T_max=0) divides by zero there,
        # one epoch into training otherwise
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scheduler = instantiate(sched)(optimizer)
                for _ in range(3):
                    optimizer.step()
                    scheduler.step()
        except Exception as e:
            cause = e.__cause__ if e.__cause__ is not None else e
            raise DnasError(f"scheduler: {_one_line(cause)}") from None


_FAILED: list[str] = []  # jobs of this process's multirun that failed on bad input


def run_command(prog: str, run: Callable[[Any], Any], cfg: Any) -> Any:
    """Run a Hydra command's ``run(cfg)`` the way every command does.

    Bad input (``DnasError``, a missing file) is one line on stderr and exit status 2; a run
    stopped by SIGTERM or Ctrl-C exits 143 / 130 saying where its last checkpoint is; anything else
    is a bug and keeps its traceback. A run directory that a failure left with nothing but Hydra's
    own files is removed. In a multirun, a job with bad input is reported and the sweep goes on
    (``main_exit`` then exits 2 naming the failed jobs); the job returns NaN, which sweepers such
    as Optuna record as a failed trial.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get() if HydraConfig.initialized() else None
    out = Path(hc.runtime.output_dir) if hc is not None else None
    multirun = hc is not None and hc.mode == RunMode.MULTIRUN
    try:
        result = run(cfg)
    except KeyboardInterrupt as e:  # a signal before Lightning's own handling (table, data)
        name, code = ("SIGTERM", 143) if isinstance(e, Terminated) else ("an interrupt", 130)
        stopped = f"stopped by {name} before its first checkpoint; no result was written"
        if out is not None:
            discard_if_empty(out)
            mark_incomplete(out, f"{prog}: {stopped}")
        print(f"{prog}: {stopped}", file=sys.stderr)
        sys.exit(code)
    except Interrupted as e:
        if out is not None:
            mark_incomplete(out, f"{prog}: {e}")
        print(f"{prog}: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except Exception as e:
        cause = user_error(e)
        if cause is None:
            raise
        if out is not None:
            discard_if_empty(out)
        print(f"{prog}: error: {error_message(cause)}", file=sys.stderr)
        if not multirun:
            sys.exit(2)
        job = f"job {hc.job.num} ({','.join(hc.overrides.task) or 'no overrides'})"
        _FAILED.append(f"{job}: {error_message(cause)}")
        return float("nan")
    if out is not None:  # a run resumed into its own directory is complete now
        (Path(out) / INCOMPLETE).unlink(missing_ok=True)
    return result


INCOMPLETE = "INCOMPLETE.txt"
"""Written into the directory of a run that stopped before its result (a signal, a NaN loss):
what stopped it and how to resume. A run that finishes there removes it."""


def mark_incomplete(out: Path, message: str) -> None:
    out = Path(out)
    if out.is_dir():
        (out / INCOMPLETE).write_text(
            "This run stopped before writing its result; it is not a finished run.\n"
            + message
            + "\n"
        )


def main_exit(prog: str) -> None:
    """After a multirun: exit 2 listing the jobs that failed on bad input, if any."""
    if _FAILED:
        print(f"{prog}: {len(_FAILED)} job(s) failed:", file=sys.stderr)
        for line in _FAILED:
            print(f"  {line}", file=sys.stderr)
        sys.exit(2)


def discard_if_empty(out: Path) -> None:
    """Remove a run directory that holds only Hydra's own files (a run that failed early), and
    the date and command directories above it that it leaves empty, up to ``outputs/`` or
    ``multirun/`` (Hydra's default layout: ``outputs/search/DATE/TIME``)."""
    out = Path(out)
    if not out.is_dir():
        return
    hydra_only = all(
        p.name == ".hydra" or (p.suffix == ".log" and p.is_file()) for p in out.iterdir()
    )
    if not hydra_only:
        return
    shutil.rmtree(out, ignore_errors=True)
    parent = out.resolve().parent
    roots = [p for p in parent.parents if p.name in ("outputs", "multirun")]
    if not roots:
        return
    while parent != roots[0].parent:
        try:
            parent.rmdir()  # only if empty
        except OSError:
            return
        parent = parent.parent


def interrupted(
    exc: BaseException, out: Path, what: str, resume: str = "ckpt_path={ckpt}"
) -> Interrupted:
    """The ``Interrupted`` for a run Lightning stopped: on a signal (``SystemExit`` from fit or
    test: 143 for SIGTERM, 130 for Ctrl-C) or on a non-finite loss (3). ``resume`` is how the
    command resumes, with ``{ckpt}`` (the last checkpoint) and ``{config}`` (``out/config.yaml``)."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from dnas.checkpoint import epoch_of, last_checkpoint
    from dnas.errors import NonFiniteLossError

    if isinstance(exc, NonFiniteLossError):
        sig, code = f"a non-finite loss ({exc})", 3
    elif isinstance(exc, SIGTERMException):
        sig, code = "SIGTERM", 143
    else:
        sig, code = "an interrupt", 130
    ckpt = last_checkpoint(out)
    if ckpt is None:
        where = "no checkpoint was written yet (none is kept before the first epoch ends)"
    else:
        where = (
            f"its last checkpoint is {ckpt} ({epoch_of(ckpt)} epoch(s) done); resume with "
            + resume.format(ckpt=ckpt, config=Path(out) / "config.yaml")
        )
    return Interrupted(f"{what} was stopped by {sig}; no result was written; {where}", code)
