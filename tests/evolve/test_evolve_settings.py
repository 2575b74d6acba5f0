"""dnas-evolve checks every number of its phases before the supernet trains (issue 21)."""

from __future__ import annotations

import pytest

from dnas.cli.evolve import check_evolve_settings
from dnas.errors import DnasError
from tests.runs import EVOLVE, compose_config


@pytest.mark.parametrize("experiment", [None, "quick", "compare", "compare_direct"])
def test_shipped_configs_pass(experiment):
    extra = [f"experiment={experiment}"] if experiment else []
    check_evolve_settings(compose_config("evolve", *extra))
    check_evolve_settings(compose_config("evolve", *EVOLVE))


@pytest.mark.parametrize(
    "override, message",
    [
        ("evolution.population=0", "evolution.population must be a whole number >= 1, got 0"),
        ("evolution.parents=500", "evolution.parents=500 exceeds evolution.population=100"),
        ("random.samples=0", "random.samples must be a whole number >= 1, got 0"),
        ("evaluation.images=0", "evaluation.images must be a whole number >= 1, got 0"),
        ("evolution.generations=-1", "evolution.generations must be a whole number >= 0"),
        ("evolution.mutate_prob=2", "evolution.mutate_prob must be a probability in [0, 1]"),
        ("evolution.mutate_prob=-0.1", "evolution.mutate_prob must be a probability"),
        ("predictor.holdout=1.0", "predictor.holdout must be in [0, 1)"),
        ("evolution.time_limit_s=0", "evolution.time_limit_s must be > 0 seconds or null"),
    ],
)
def test_bad_settings_are_refused_before_training(override, message):
    with pytest.raises(DnasError) as e:
        check_evolve_settings(compose_config("evolve", override))
    assert message in str(e.value)


def test_the_command_refuses_them_before_the_supernet_trains(tmp_path, cache_dir, monkeypatch):
    """Through run(): refused before any epoch, and no run directory is left behind."""
    from dnas.cli.evolve import run

    monkeypatch.setenv("DNAS_CACHE", str(cache_dir))
    with pytest.raises(DnasError, match=r"evolution\.parents=50 exceeds"):
        run(
            compose_config("evolve", *EVOLVE, "evolution.parents=50"),
            output_dir=tmp_path / "run",
        )
    assert not (tmp_path / "run").exists()
