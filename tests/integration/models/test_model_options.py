"""The wider model and training options: a dense head whose widths and dropout
decay layer by layer with an activation of its own, the LSTM's recurrent dropout, gradient
clipping, and the full CNN search preset. Their defaults build today's models; the size
estimate agrees with the built model; a real run carries every option into Keras."""

from __future__ import annotations

import copy

import pytest
from conftest import TINY_RUN, compose, compose_sweep

from cvsweep.config.schema import ConfigError
from cvsweep.config.validate import load_run_config
from cvsweep.models import architectures
from cvsweep.models import size as model_size
from cvsweep.sweep.preflight import check_sweep

HEAD = {"activation": "elu", "dense_layers": 3, "dense_units": 50, "dense_units_decay": 0.5, "dropout": 0.4,
        "dropout_decay": 0.5, "dense_activation": "tanh"}


TEXT = {"name": "imdb", "num_classes": 2, "vocab_size": 300, "sequence_length": 20}


def _cfg(model=None, training=None):
    """TINY_RUN with these changes; an LSTM model replaces the CNN's settings and reads text."""
    data = copy.deepcopy(TINY_RUN)
    if (model or {}).get("architecture") == "lstm":
        data["dataset"], data["model"] = TEXT, model
    else:
        data["model"].update(model or {})
    data["training"].update(training or {})
    return load_run_config(data)


def _layers(model, kind: str) -> list:
    return [layer for layer in model.layers if type(layer).__name__ == kind]


def test_the_defaults_build_todays_dense_head():
    cfg = _cfg({"dense_layers": 3, "dense_units": 48})
    assert architectures.dense_widths(cfg.model) == [48, 48, 48]
    assert architectures.dropout_rates(cfg.model) == [0.1] * 4  # before each dense layer and the output
    # The default CNN on digits has exactly the parameters it had before these options
    # (benchmarks/README.md: 35,914).
    default = compose()
    assert model_size.estimate(default, (8, 8, 1)).params == 35_914
    assert architectures.build(default, (8, 8, 1)).count_params() == 35_914


def test_widths_and_dropout_decay_layer_by_layer():
    cfg = _cfg(HEAD)
    assert architectures.dense_widths(cfg.model) == [50, 25, 12]  # round(12.5) = 12
    assert architectures.dropout_rates(cfg.model) == pytest.approx([0.4, 0.2, 0.1, 0.05])
    assert architectures.dense_widths(_cfg({"dense_layers": 4, "dense_units": 2, "dense_units_decay": 0.1}).model) \
        == [2, 1, 1, 1]  # never below one unit
    model = architectures.build(cfg, (8, 8, 1))
    assert [layer.units for layer in _layers(model, "Dense")] == [50, 25, 12, 10]
    assert [layer.rate for layer in _layers(model, "Dropout")] == pytest.approx([0.4, 0.2, 0.1, 0.05])
    # The conv layers keep model.activation, the dense layers take model.dense_activation.
    assert [layer.get_config()["activation"] for layer in _layers(model, "Activation")] == \
        ["elu"] + ["tanh"] * 3


@pytest.mark.parametrize("model", [
    {},
    HEAD,
    {**HEAD, "head": "global_avg", "conv_layers": 2, "batch_norm": True, "dense_units_decay": 0.3},
    {"dense_layers": 8, "dense_units": 7, "dense_units_decay": 0.9, "padding": "valid", "kernel_size": 2},
    {"architecture": "lstm", "embedding_dim": 8, "lstm_units": 6, "bidirectional": True, "recurrent_dropout": 0.2,
     "dense_layers": 2, "dense_units": 20, "dense_units_decay": 0.5},
], ids=["defaults", "decaying-head", "global-pool-batch-norm", "eight-narrowing-layers", "lstm"])
def test_the_size_estimate_counts_the_built_model(model):
    cfg = _cfg(model)
    shape = (TEXT["sequence_length"],) if model.get("architecture") == "lstm" else (8, 8, 1)
    assert model_size.estimate(cfg, shape).params == architectures.build(cfg, shape).count_params()


def test_the_lstm_takes_its_recurrent_dropout_apart_from_the_heads():
    cfg = _cfg({"architecture": "lstm", "lstm_units": 6, "recurrent_dropout": 0.3, "dropout": 0.1})
    model = architectures.build(cfg, (TEXT["sequence_length"],))
    (lstm,) = _layers(model, "LSTM")
    assert (lstm.recurrent_dropout, lstm.dropout) == (0.3, 0.0)
    assert [layer.rate for layer in _layers(model, "Dropout")] == pytest.approx([0.1, 0.1])


def test_recurrent_dropout_range_and_wrong_activation_are_refused():
    with pytest.raises(ConfigError, match=r"model.recurrent_dropout=1.0: allowed is \[0, 1\)"):
        _cfg({"architecture": "lstm", "recurrent_dropout": 1.0})
    with pytest.raises(ConfigError, match=r"model.dense_activation: Invalid value 'softmax', expected one of \[relu"):
        _cfg({"dense_activation": "softmax"})


def test_clipnorm_and_clipvalue_together_are_refused_before_any_work():
    """Keras's optimizers take one clipping rule (ValueError in their constructor): say so first."""
    with pytest.raises(ConfigError, match="training.clipvalue=0.5: Keras clips by one rule, and "
                                          "training.clipnorm=1.0 is set; set the other to null"):
        _cfg(training={"clipnorm": 1.0, "clipvalue": 0.5})


def test_a_sweep_over_a_new_setting_passes_its_checks(tmp_path):
    check_sweep(compose_sweep("model.dense_units_decay=choice(0.5,1.0)", f"output_root={tmp_path}"))
    with pytest.raises(ConfigError, match=r"model.dropout_decay=choice\(1.0,0.0\) reaches model.dropout_decay=0.0: "
                                          r"model.dropout_decay=0.0: allowed is \(0, 1\]"):
        check_sweep(compose_sweep("model.dropout_decay=choice(1.0,0.0)", f"output_root={tmp_path}"))


@pytest.mark.parametrize("dataset", ["digits", "mnist"])
def test_the_full_cnn_preset_passes_its_checks(dataset, tmp_path):
    """Every value of every parameter, checked alone (cvsweep/study/search_space.py): on 8x8
    digits (read) and 28x28 MNIST (its shape from the registry: nothing is downloaded)."""
    cfg = compose_sweep("search=cnn_full", f"dataset={dataset}", f"output_root={tmp_path}")
    check_sweep(cfg)
    params = cfg.hydra.sweeper.params
    assert params["model.conv_layers"] == "int(interval(1, 4))" and params["model.filters"].startswith("tag(log")
    assert cfg.hydra.sweeper.n_trials > cfg.hydra.sweeper.sampler.n_startup_trials


def test_the_full_cnn_presets_largest_corner_is_refused_before_it_is_built():
    """As its comment says: one 256-filter layer, flattened at 14x14, into 1024 units on MNIST."""
    cfg = compose("search=cnn_full", "dataset=mnist", "model.filter_growth=1.0", "model.conv_layers=1",
                  "model.filters=256", "model.dense_units=1024")
    with pytest.raises(ConfigError, match="training.max_params=50000000: this model would have 51,"):
        model_size.check(cfg, (28, 28, 1))


@pytest.mark.slow
def test_a_real_run_carries_every_new_option_into_keras(tmp_path):
    """Train on digits with all of them set, then read the saved model back: its layers and its
    optimizer are what the config asked for."""
    import keras

    from cvsweep.training.train import train

    data = copy.deepcopy(TINY_RUN)
    data["model"].update(HEAD)
    data["training"].update(clipnorm=0.75, epochs=1)
    result = train(data, model_dir=str(tmp_path))
    assert result["status"] == "completed", result["reason"]
    model = keras.models.load_model(tmp_path / "model.keras")
    assert [layer.units for layer in _layers(model, "Dense")] == [50, 25, 12, 10]
    assert [layer.rate for layer in _layers(model, "Dropout")] == pytest.approx([0.4, 0.2, 0.1, 0.05])
    assert [layer.get_config()["activation"] for layer in _layers(model, "Activation")] == ["elu"] + ["tanh"] * 3
    assert (model.optimizer.clipnorm, model.optimizer.clipvalue) == (0.75, None)
    assert result["metrics"]["params"] == model.count_params()
    # Clipping changes training: the same run with clipvalue instead is another history.
    data["training"].update(clipnorm=None, clipvalue=0.01)
    other = train(data, model_dir=str(tmp_path / "other"))
    assert keras.models.load_model(tmp_path / "other" / "model.keras").optimizer.clipvalue == 0.01
    assert other["metrics"]["history"]["loss"] != result["metrics"]["history"]["loss"]


@pytest.mark.slow
def test_a_real_lstm_run_keeps_its_recurrent_dropout(tmp_path):
    import keras
    from test_more_datasets import imdb_layout

    from cvsweep.training.train import train

    data = {**copy.deepcopy(TINY_RUN),
            "dataset": {"name": "imdb", "path": str(imdb_layout(tmp_path / "imdb.npz", n_train=120, n_test=40)),
                        "num_classes": 2, "vocab_size": 600, "sequence_length": 32},
            "model": {"architecture": "lstm", "embedding_dim": 8, "lstm_units": 8, "recurrent_dropout": 0.25,
                      "dense_layers": 1, "dense_units": 8}}
    data["training"] = {**data["training"], "epochs": 1}
    result = train(data, model_dir=str(tmp_path))
    assert result["status"] == "completed", result["reason"]
    (lstm,) = _layers(keras.models.load_model(tmp_path / "model.keras"), "LSTM")
    assert lstm.recurrent_dropout == 0.25
