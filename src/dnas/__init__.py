"""dnas: differentiable search of kernel size, width and bit-width under a BitFusion budget.

Importing the package is cheap: it never imports Triton, Lightning or Hydra and never touches CUDA.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``dnas.load_child`` without making ``import dnas`` pay for torch and the supernet.
    if name == "load_child":
        from dnas.train.load import load_child

        return load_child
    if name == "convert":  # a user's nn.Module -> its layer graph (dnas.graph.convert)
        from dnas.graph.convert import convert

        return convert
    raise AttributeError(f"module 'dnas' has no attribute {name!r}")
