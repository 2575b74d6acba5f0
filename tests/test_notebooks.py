"""The notebooks (py:percent scripts) run top to bottom with small parameters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    env = {
        **os.environ,
        "DNAS_NOTEBOOK_SMALL": "1",
        "MPLBACKEND": "Agg",
        "DNAS_CACHE": str(tmp_path / "cache"),
    }
    out = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "test accuracy" in out.stdout
