"""The notebooks (py:percent scripts) run top to bottom with small parameters, headless.

Each notebook has one cell tagged ``parameters`` (papermill's convention). A test copies the
notebook with a cell of small values inserted after it and a last cell that saves every open
figure, runs the copy as a script under the Agg backend, and checks what it printed and drew.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
NOTEBOOKS = REPO / "notebooks"
PARAMETERS = '# %% tags=["parameters"]'
TINY_SEARCH = [
    "data=synthetic",
    "data.num_train=512",
    "data.num_test=128",
    "trainer.accelerator=cpu",
    "trainer.enable_model_summary=false",
    "trainer.max_epochs=3",
    "search.warmup_epochs=1",
    "search.bn_batches=2",
    "final.bn_batches=2",
    "target.latency_frac=0.3",
]


def with_parameters(source: str, params: dict) -> str:
    """``source`` with a cell setting ``params`` after its parameters cell (as papermill does)."""
    lines = source.splitlines()
    if PARAMETERS not in lines:
        raise ValueError(f"no {PARAMETERS!r} cell")
    start = lines.index(PARAMETERS)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("# %%")), len(lines))
    cell = ['# %% tags=["injected-parameters"]', *(f"{k} = {v!r}" for k, v in params.items()), ""]
    return "\n".join([*lines[:end], *cell, *lines[end:]]) + "\n"


SAVE_FIGURES = """
# %%
import matplotlib.pyplot as plt

for n in plt.get_fignums():
    plt.figure(n).savefig(f"figures/{n}.png", dpi=60)
"""


def run_notebook(
    name: str, params: dict, tmp_path: Path, cache_dir: Path, timeout: int = 900
) -> str:
    """Run ``notebooks/<name>.py`` with ``params`` in ``tmp_path`` (cost tables cached in
    ``cache_dir``); returns its stdout. Figures go to ``tmp_path/figures``."""
    source = (NOTEBOOKS / f"{name}.py").read_text()
    script = tmp_path / f"{name}.py"
    script.write_text(with_parameters(source, params) + SAVE_FIGURES)
    (tmp_path / "figures").mkdir()
    env = {**os.environ, "MPLBACKEND": "Agg", "DNAS_CACHE": str(cache_dir)}
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def figures(tmp_path: Path) -> list[Path]:
    pngs = sorted((tmp_path / "figures").glob("*.png"))
    for p in pngs:
        assert p.stat().st_size > 5_000, f"{p.name} looks empty"
    return pngs


# ------------------------------------------------------------------------------------ static
@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.py")), ids=lambda p: p.stem)
def test_notebook_opens_with_a_description_and_a_parameters_cell(path):
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "a title first"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"


def test_injected_parameters_follow_the_parameters_cell():
    source = '# %% [markdown]\n# x\n\n# %% tags=["parameters"]\na = 1\n\n# %%\nprint(a)\n'
    out = with_parameters(source, {"a": [2, "x"]})
    assert out.index("a = 1") < out.index("a = [2, 'x']") < out.index("print(a)")
    with pytest.raises(ValueError, match="parameters"):
        with_parameters("# %%\nprint(1)\n", {})


def test_plots_leave_the_matplotlib_backend_alone(tmp_path):
    """The package's plots draw on bare Figures: a notebook's inline backend survives a search."""
    code = f"""
import matplotlib
matplotlib.use("svg")
from pathlib import Path
from dnas.cli.pareto import Row, mark_fronts, plot_pareto
from dnas.cost.targets import Targets
from dnas.search.plot import plot_search
from dnas.train.plot import plot_training
out = Path({str(tmp_path)!r})
history = [{{"epoch": 0, "expected_latency_ms": 0.5, "derived_latency_ms": 0.4, "val_acc": 0.5}}]
plot_search(history, Targets(latency_ms=0.45), out / "search.png")
plot_training([{{"epoch": 0, "train_loss": 1.0, "val_acc": 0.5}}], out / "train.png")
rows = [Row("dnas", "latency_ms", 0.5, 0.4, 0.3, 0.8, None, out)]
mark_fronts(rows)
plot_pareto(rows, out / "pareto.png")
print(matplotlib.get_backend())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "svg"
    for name in ("search", "train", "pareto"):
        assert (tmp_path / f"{name}.png").read_bytes().startswith(b"\x89PNG")


# --------------------------------------------------------------------------------- executed
@pytest.mark.slow  # the notebook run as a script
def test_cost_model_notebook(tmp_path, cache_dir):
    out = run_notebook("cost_model", {}, tmp_path, cache_dir)
    assert "memory-bound" in out and "Fusion Units" in out
    assert len(figures(tmp_path)) >= 5


@pytest.mark.slow
def test_search_notebook(tmp_path, cache_dir):
    params = {"overrides": TINY_SEARCH, "finetune_epochs": 1, "out_dir": str(tmp_path / "run")}
    out = run_notebook("search", params, tmp_path, cache_dir)
    assert "derived:" in out and "test accuracy" in out
    assert (tmp_path / "run" / "arch.yaml").is_file()
    assert len(figures(tmp_path)) >= 4


def sweep_analysis(tmp_path: Path, cache_dir: Path, multirun_dir: Path) -> str:
    params = {
        "multirun_dir": str(multirun_dir),
        "results_json": str(REPO / "bench" / "results" / "search.json"),
    }
    out = run_notebook("sweep_analysis", params, tmp_path, cache_dir)
    assert "records from" in out and "0 records" not in out
    return out


def test_sweep_analysis_notebook(tmp_path, cache_dir, space):
    """On hand-made run directories of every kind (dnas-pareto's test multirun): seconds."""
    from tests.cli.test_pareto import RUNS, make_run

    root = tmp_path / "multirun"
    for seed, (sub, run_json, model, metrics) in enumerate(RUNS):
        make_run(root / sub, space, seed, run_json, model, **metrics)
    out = sweep_analysis(tmp_path, cache_dir, root)
    assert f"{len(RUNS)} architectures" in out
    assert len(figures(tmp_path)) >= 4


@pytest.mark.slow
def test_sweep_analysis_notebook_on_a_real_multirun(tmp_path, cache_dir):
    """On what ``dnas-search -m target.latency_frac=0.2,0.5`` writes (two tiny searches)."""
    from dnas.cli.search import run
    from tests.runs import SEARCH_BASE, compose_config

    root = tmp_path / "multirun"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DNAS_CACHE", str(cache_dir))
        for job, frac in enumerate((0.2, 0.5)):
            overrides = [*SEARCH_BASE, f"target.latency_frac={frac}"]
            run(compose_config("search", *overrides), output_dir=root / str(job))
    out = sweep_analysis(tmp_path, cache_dir, root)
    assert "2 architectures" in out
    assert len(figures(tmp_path)) >= 5  # with the search trajectories from metrics.csv
