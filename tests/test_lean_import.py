"""`import dnas` (and the cost model) stays lean: no Triton, Lightning or Hydra, no CUDA."""

from __future__ import annotations

import subprocess
import sys


def test_import_dnas_does_not_import_triton_or_heavy_frameworks():
    code = (
        "import sys, dnas, dnas.cost.backend, dnas.cost.table, dnas.cost.oracle, dnas.space\n"
        "heavy = [m for m in ('triton', 'pytorch_lightning', 'lightning', 'hydra', 'dnas_kernels')"
        " if m in sys.modules]\n"
        "import torch\n"
        "print(','.join(heavy) or 'none', torch.cuda.is_initialized())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["none", "False"], out.stdout + out.stderr


def test_imports_run_one_way():
    """The layers import downwards only: the space knows nothing of the cost model or search."""
    code = (
        "import sys\n"
        "import dnas.space\n"
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('dnas.')}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = eval(out.stdout)
    assert set(loaded) <= {"space", "atomic", "errors"}, loaded
