"""Every hydra/sweeper/sampler option composes with the shipped searches and passes the checks
before a sweep, with one objective and with two: the default's settings (seeded TPE) live with
the default sampler, not in the searches, so no other sampler meets settings it lacks."""

from __future__ import annotations

import pytest
from conftest import compose_sweep

from cvsweep.compose import group_options
from cvsweep.sweep.preflight import check_sweep

SAMPLERS = group_options("hydra/sweeper/sampler")["hydra/sweeper/sampler"]


def test_the_default_sampler_is_seeded_tpe_with_four_random_start_up_trials():
    sampler = compose_sweep().hydra.sweeper.sampler
    assert (sampler._target_, sampler.seed, sampler.n_startup_trials) == ("optuna.samplers.TPESampler", 0, 4)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_sweeps_one_objective_and_two(sampler, tmp_path):
    assert {"nsgaii", "random", "tpe", "seeded_tpe"} <= set(SAMPLERS)
    for objectives in ([], ["secondary_objectives=[params]"]):
        check_sweep(compose_sweep(f"hydra/sweeper/sampler={sampler}", *objectives, "hydra.sweeper.storage=null",
                                  f"output_root={tmp_path}"))
