"""``dnas-fit``: the differentiable search as a LightningCLI (``fit``, ``validate``, ``test``).

The same ``SearchModule``, data modules and ``SearchOutputs`` callback as ``dnas-search``, configured
with YAML and ``--key=value`` instead of Hydra. ``conf/fit/default.yaml`` is read first, and on its
own it is the search ``dnas-search`` runs with no arguments (same space, target, budget term,
optimizers, schedule, data and trainer)::

    dnas-fit fit                                              # the default search
    dnas-fit fit --model.target.latency_frac=0.15 --trainer.max_epochs=3
    dnas-fit fit --data=dnas.data.SyntheticDataModule --trainer.fast_dev_run=true
    dnas-fit fit --print_config > search.yaml                 # edit, then --config search.yaml
    dnas-fit test --config RUN/config.yaml --ckpt_path RUN/checkpoints/last.ckpt

Results go to the logger's directory (``outputs/fit/version_N/``, or ``--outputs.dirpath``):
``arch.yaml`` and the rest at the end of fit, written again with the test accuracy by ``test``.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = "conf/fit/default.yaml"
SUBCOMMANDS = ("fit", "validate", "test")
# One line each for ``dnas-fit --help`` (Lightning's own are cut at its docstrings' first line).
SUBCOMMAND_HELP = {
    "fit": "Search: train the supernet and the architecture, derive the network(s), write them.",
    "validate": "Validate the derived network(s) on the validation split (e.g. --ckpt_path).",
    "test": "Test the derived network(s) on the test set and write arch.yaml with the accuracy.",
}


def default_config_path() -> str:
    """The shipped default config (a file inside the installed package)."""
    return str(resources.files("dnas").joinpath(DEFAULT_CONFIG))


def data_classes(data) -> int | None:
    """The data module's class count (None if it does not say): ``model.num_classes``."""
    classes = getattr(data, "num_classes", None)
    return None if classes is None else int(classes)


def _cli_class():
    from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
    from pytorch_lightning.utilities import rank_zero_warn
    from rich.console import Console

    from dnas.cli.common import (
        check_epochs,
        classes_note,
        describe_budget,
        describe_table,
        interrupted,
        mark_incomplete,
    )
    from dnas.cli.outputs import SearchOutputs
    from dnas.errors import DnasError, NonFiniteLossError
    from dnas.space import load_space

    class OneLineParser(LightningArgumentParser):
        """Bad arguments are one line naming the problem, as in the other commands (jsonargparse
        prints the whole usage, some 70 lines, above it)."""

        def error(self, message: str, ex: Exception | None = None):  # type: ignore[override]
            if not self.exit_on_error:
                return super().error(message, ex)
            text = " ".join(str(message).split())
            if len(text) > 400:
                text = text[:397] + "..."
            prog = self.prog.replace(" [options]", "")
            sys.stderr.write(f"dnas-fit: error: {text} ({prog} --help lists the options)\n")
            self.exit(2)

    class SearchCLI(LightningCLI):
        """LightningCLI with the search's outputs callback and its pre-training summary."""

        @staticmethod
        def subcommands() -> dict[str, set[str]]:
            """``fit``, ``validate`` and ``test`` (a search has nothing to predict)."""
            return {k: v for k, v in LightningCLI.subcommands().items() if k in SUBCOMMANDS}

        def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
            super()._add_subcommands(parser, **kwargs)
            action = getattr(parser, "_subcommands_action", None)
            for choice in getattr(action, "_choices_actions", []):
                choice.help = SUBCOMMAND_HELP.get(choice.dest, choice.help)

        def _run_subcommand(self, subcommand: str) -> None:
            """Run it; a signal or a non-finite loss becomes ``Interrupted`` (143 on SIGTERM,
            130 on Ctrl-C, 3), naming the last checkpoint, as in ``dnas-search``."""
            try:
                super()._run_subcommand(subcommand)
            except (SystemExit, NonFiniteLossError) as e:
                out = Path(self.trainer.log_dir or self.trainer.default_root_dir)
                stopped = interrupted(e, out, f"dnas-fit {subcommand}", _FIT_RESUME)
                mark_incomplete(out, f"dnas-fit: {stopped}")
                raise stopped from None

        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            parser.add_lightning_class_args(SearchOutputs, "outputs")
            # the classifier gets the data's class count (dnas-search: fit_classes_to_data)
            parser.link_arguments(
                "data", "model.num_classes", compute_fn=data_classes, apply_on="instantiate"
            )

        def before_instantiate_classes(self) -> None:
            self._console = Console(stderr=True)

        def _announce(self) -> None:
            """Print the table and budget, and give the outputs callback the config (rank 0)."""
            outputs = self.config_init[self.subcommand]["outputs"]
            config = self.config[self.subcommand].as_dict()
            # without the names of the config files read: the configuration is what counts
            outputs.config = {
                k: v for k, v in config.items() if k not in ("config", "__default_config__")
            }
            if self.trainer.is_global_zero:
                model = self.model
                named = self.config[self.subcommand].model.space
                if isinstance(named, str):
                    said = load_space(named).num_classes
                    if said != model.space.num_classes:
                        self._console.print(
                            classes_note(
                                self.datamodule, model.space.name, model.space.num_classes, said
                            )
                        )
                self._console.print(
                    describe_table(model.table, model.table_path, model.table_built)
                )
                self._console.print(describe_budget(model))

        def before_fit(self) -> None:
            # the same epoch checks as dnas-search: 0, -1 or no search epoch is refused
            max_epochs = self.config.fit.trainer.get("max_epochs")
            fast = self.config.fit.trainer.get("fast_dev_run")
            if not fast:
                check_epochs(max_epochs, self.model.warmup_epochs)
            self._check_outputs_dir()
            self._check_writable()
            self._check_learning_rates()
            self._announce()
            self._check_schedule()

        def _check_outputs_dir(self) -> None:
            """``--outputs.dirpath`` as ``hydra.run.dir=`` is for dnas-search: not a file, and
            not a directory holding a run (a finished search, a dnas-train run) unless this fit
            resumes (``--ckpt_path``); refused before training, not after it."""
            from dnas.cli.common import RUN_MARKERS

            given = self.config.fit.outputs.get("dirpath")
            if not given:
                return
            out = Path(given).expanduser()
            if out.exists() and not out.is_dir():
                raise DnasError(f"--outputs.dirpath {given} is a file; give a directory")
            found = [m for m in RUN_MARKERS if (out / m).exists()]
            if found and not self.config.fit.get("ckpt_path"):
                raise DnasError(
                    f"--outputs.dirpath {given} already holds a run ({', '.join(found)}); it is"
                    " not overwritten: give another --outputs.dirpath, or resume that run with"
                    " --ckpt_path"
                )

        def _check_writable(self) -> None:
            """Every folder and file the run writes, before training (a checkpoint callback's
            ``dirpath``, ``LastCheckpoint``'s ``path``, a logger's ``save_dir``): under a file or
            in a read-only folder, the run failed when it first wrote there, after an epoch or
            after the whole search (``dnas.atomic.write_problem``, as for ``hydra.run.dir=``)."""
            from dnas.atomic import write_problem
            from dnas.checkpoint import LastCheckpoint

            paths = []  # (how the user names it, the path, a directory?)
            for cb in self.trainer.callbacks:
                kind = type(cb).__name__
                if isinstance(cb, SearchOutputs):
                    key = "--outputs.dirpath"
                else:
                    key = f"--trainer.callbacks {kind} dirpath"
                if getattr(cb, "dirpath", None):
                    paths.append((key, cb.dirpath, True))
                if isinstance(cb, LastCheckpoint) and cb.path is not None:
                    paths.append((f"--trainer.callbacks {kind} path", cb.path, False))
            for logger in self.trainer.loggers:
                save_dir = getattr(logger, "save_dir", None)
                if save_dir:
                    paths.append(
                        (f"--trainer.logger {type(logger).__name__} save_dir", save_dir, True)
                    )
            for key, path, directory in paths:
                problem = write_problem(path, directory=directory)
                if problem:
                    raise DnasError(f"{key}={path}: {problem}")

        def _check_learning_rates(self) -> None:
            """``--model.weight_optimizer`` / ``arch_optimizer`` built on a dummy parameter: a
            learning rate of 0 is refused (``check_learning_rate``, as in dnas-search)."""
            import torch
            from jsonargparse import Namespace
            from jsonargparse.typing import import_object

            from dnas.cli.common import check_learning_rate

            for name in ("weight_optimizer", "arch_optimizer"):
                spec = self.config.fit.model.get(name)
                if not isinstance(spec, Namespace) or not spec.get("class_path"):
                    continue
                args = spec.get("init_args")
                kwargs = args.as_dict() if isinstance(args, Namespace) else {}
                try:
                    built = import_object(spec.class_path)(
                        [torch.nn.Parameter(torch.zeros(1))], **kwargs
                    )
                except Exception as e:  # torch's own refusal (lr=-1)
                    raise DnasError(f"--model.{name}: {' '.join(str(e).split())}") from None
                check_learning_rate(f"--model.{name}.init_args.lr", built)

        def _check_schedule(self) -> None:
            """A cosine schedule shorter or longer than the run is most likely an oversight
            (Hydra's config interpolates ``T_max: ${trainer.max_epochs}``; YAML cannot)."""
            sched = self.config.fit.model.weight_scheduler
            t_max = sched.init_args.get("T_max") if sched is not None else None
            epochs = self.trainer.max_epochs
            if t_max is not None and epochs not in (None, -1) and t_max != epochs:
                rank_zero_warn(
                    f"model.weight_scheduler T_max={t_max} but trainer.max_epochs={epochs}: "
                    "the cosine schedule will not end with the run "
                    f"(set --model.weight_scheduler.init_args.T_max={epochs})"
                )

        def _check_trained(self) -> None:
            """validate/test derive and write a result from the supernet's weights: without
            ``--ckpt_path`` they are the untrained initial ones (a result no training made)."""
            if self.config[self.subcommand].get("ckpt_path") in (None, "", "null", "None"):
                raise DnasError(
                    f"dnas-fit {self.subcommand} needs --ckpt_path (a checkpoint of a dnas-fit "
                    "fit run, e.g. its checkpoints/last.ckpt): without one it would derive and "
                    "write a network from an untrained supernet"
                )

        def before_validate(self) -> None:
            self._check_trained()
            self._announce()

        def before_test(self) -> None:
            self._check_trained()
            self._announce()

    SearchCLI.parser_class = OneLineParser
    return SearchCLI


def build_cli(args: list[str] | None = None, run: bool = True):
    """The ``dnas-fit`` LightningCLI on ``args``; with ``run=False`` no subcommand: it only
    builds the model, data module and trainer from the config (``cli.model``, ...)."""
    from dnas.data import SplitDataModule
    from dnas.search.module import SearchModule

    defaults: dict[str, Any] = {"default_config_files": [default_config_path()]}
    main_parser = {
        "prog": "dnas-fit",
        "description": "dnas-fit: the differentiable search as a LightningCLI (fit, validate, "
        "test); `dnas-fit fit` alone runs the search dnas-search runs with no arguments.",
    }
    cli = _cli_class()
    return cli(
        SearchModule,
        SplitDataModule,
        subclass_mode_data=True,
        seed_everything_default=0,
        parser_kwargs={**main_parser, **{sub: defaults for sub in SUBCOMMANDS}}
        if run
        else {**main_parser, **defaults},
        auto_configure_optimizers=False,
        parser_class=cli.parser_class,
        args=args,
        run=run,
    )


def check_ckpt_path(args: list[str]) -> None:
    """``--ckpt_path`` read as plain data before Lightning loads it: a file that is not a
    Lightning checkpoint (a ``supernet.pt`` state dict, a truncated file) is one line naming it;
    Lightning fails with a KeyError traceback. ``"last"``/``"best"`` are Lightning's to resolve."""
    from dnas.checkpoint import read_checkpoint

    for value in _values_of("--ckpt_path", args):
        if value and value not in ("last", "best", "null", "None", "hpc", "registry"):
            read_checkpoint(value)


def check_space_file(args: list[str]) -> None:
    """``--model.space=FILE`` loaded as a space before jsonargparse reads it: jsonargparse puts
    the *content* of an existing file that is not a YAML mapping into the string (a space
    "named" ``'notes\n'``); loading it here names the file and what is wrong with it."""
    from dnas.errors import DnasError
    from dnas.space import load_space

    for value in _values_of("--model.space", args):
        path = Path(value).expanduser()
        if path.suffix in (".yaml", ".yml") or path.exists():
            try:
                load_space(path)
            except (DnasError, ValueError, FileNotFoundError, IsADirectoryError) as e:
                raise DnasError(f"--model.space={value}: {e}") from None


def check_seed(args: list[str]) -> None:
    """``--seed_everything`` as ``seed=`` of the Hydra commands: an integer in [0, 2**32 - 1]
    (or true/false, Lightning's own); Lightning's message named numpy's bounds, not the key."""
    from dnas.errors import DnasError

    for value in _values_of("--seed_everything", args):
        if value.lower() in ("true", "false", "null", "none"):
            continue
        try:
            seed = int(value)
        except ValueError:
            continue  # jsonargparse names the key and the type
        if not 0 <= seed < 2**32:
            raise DnasError(
                f"--seed_everything must be an integer in [0, 2**32 - 1] (or true/false), got {value}"
            )


def _values_of(flag: str, args: list[str]) -> list[str]:
    """Every value given to ``flag`` (``flag VALUE`` or ``flag=VALUE``) on a command line."""
    out = []
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            out.append(args[i + 1])
        elif arg.startswith(flag + "="):
            out.append(arg.partition("=")[2])
    return out


_FIT_RESUME = "dnas-fit fit --config {config} --ckpt_path {ckpt}"


def main(args: list[str] | None = None) -> None:
    """Run ``dnas-fit`` (``args``: the command line without the program name)."""
    from dnas.cli.common import handle_version, silence_lightning
    from dnas.cost.table import TableError
    from dnas.errors import DnasError, Interrupted

    handle_version("dnas-fit", args)
    silence_lightning()
    try:
        argv = sys.argv[1:] if args is None else args
        check_ckpt_path(argv)
        check_space_file(argv)
        check_seed(argv)
        build_cli(args)
    except Interrupted as e:
        print(f"dnas-fit: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except (DnasError, TableError, ValueError, FileNotFoundError) as e:  # BudgetError, ...
        print(f"dnas-fit: error: {e}", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as e:  # Lightning's SaveConfigCallback refusing a run's directory
        import re

        found = re.search(r"expected (.+?) to NOT exist", str(e))
        if found is None:
            raise
        run_dir = Path(found.group(1)).parent
        print(
            f"dnas-fit: error: {run_dir} already holds a run ({Path(found.group(1)).name}); it is "
            "not overwritten: give another --trainer.logger.init_args.version (or none: a new "
            "version_N)",
            file=sys.stderr,
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
