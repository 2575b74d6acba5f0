"""Hydra configs shipped with dnas (a package so that Hydra and importlib.resources find them)."""
