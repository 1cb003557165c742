"""hydra.sweeper.constraints.max_params with data that lives on the worker: the trial's input
shape comes from the config and the registry, never from reading the worker's path here; where
neither knows it (an .npz), the sweep is refused before it starts, naming the constraint."""

from __future__ import annotations

import pytest
from conftest import compose, compose_sweep

from cvsweep.config.schema import ConfigError
from cvsweep.study.constraints import check_shape_known
from cvsweep.sweep.trial import over_max_params, prepare

ON_THE_WORKER = ["executor=runpod", "executor.fallback=none", "dataset.location=worker"]


@pytest.mark.parametrize("dataset, shape", [
    (["dataset=image_folder", "dataset.num_classes=4", "dataset.image_size=[24,20]", "dataset.color_mode=grayscale"],
     (24, 20, 1)),
    (["dataset=mnist"], (28, 28, 1)),
], ids=["image_folder", "mnist"])
def test_a_trial_on_worker_data_takes_its_shape_without_reading_the_path(dataset, shape, tmp_path):
    absent = tmp_path / "only-on-the-worker"  # reading it here would fail the trial
    cfg = compose(*ON_THE_WORKER, *dataset, f"dataset.path={absent}")
    check_shape_known(compose_sweep(*ON_THE_WORKER, *dataset, f"dataset.path={absent}",
                                    "hydra.sweeper.constraints.max_params=1000"))
    prepared = prepare(cfg, {"max_params": 1000})
    assert prepared.data.shape == shape and prepared.run_config["dataset"]["sha256"] is None
    refused = over_max_params(prepared, {"max_params": 1000})  # the default CNN is bigger
    assert refused["infeasible"] and refused["metrics"]["params"] > 1000


def test_worker_data_of_unknown_shape_with_max_params_is_refused_naming_the_constraint():
    cfg = compose_sweep(*ON_THE_WORKER, "dataset=npz", "dataset.path=/runpod-volume/data.npz",
                        "hydra.sweeper.constraints.max_params=1000")
    with pytest.raises(ConfigError) as err:
        check_shape_known(cfg)
    assert str(err.value) == (
        "hydra.sweeper.constraints.max_params=1000: a trial's model size needs its input shape before it runs, and "
        "dataset.path=/runpod-volume/data.npz is read only on the worker (dataset.location=worker); set "
        "dataset.location=client, or drop the constraint (training.max_params limits the model on the worker)")
