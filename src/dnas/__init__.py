"""dnas: differentiable search of kernel size, width and bit-width under a BitFusion budget.

Importing the package is cheap: it never imports Triton, Lightning or Hydra and never touches CUDA.
"""

__version__ = "0.1.0"
