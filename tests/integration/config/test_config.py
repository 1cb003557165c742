"""The config tree: every option composes and passes the value checks; bad input fails
before any work with a message that names the key, the value and what is allowed."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from conftest import BARE_ENDPOINT_ID, CONF_DIR, SENTINEL_API_KEY, TINY_RUN, as_the_command_checks, compose, run_cli
from omegaconf import OmegaConf

from cvsweep.config.schema import ConfigError, run_config_of
from cvsweep.data.source_identity import pin_dataset
from cvsweep.config.validate import load_run_config
from cvsweep.sweep.preflight import check_run, check_sweep

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra")  # hydra/: its help page
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF_DIR / group).glob("*.yaml"))]
# Options that need more than their own file to be usable ({data}: small generated files).
EXTRA = {
    ("dataset", "npz"): ["dataset.path={data}/small.npz"],
    ("dataset", "image_folder"): ["dataset.path={data}/photos", "dataset.num_classes=5"],
    ("dataset", "gtsrb"): ["dataset.path={data}/GTSRB/Train"],
    # The text model and its search space need a text dataset.
    ("model", "lstm"): ["dataset=imdb"],
    ("search", "lstm"): ["dataset=imdb"],
    # The Keras example's valid-padded convs need MNIST-sized images, not 8x8 digits.
    ("model", "keras_mnist_convnet"): ["dataset=mnist", "dataset.path={data}/mnist_sized.npz"],
    ("experiment", "keras_mnist_convnet"): ["dataset.path={data}/mnist_sized.npz"],
    ("experiment", "mnist_sweep"): ["dataset.path={data}/mnist_sized.npz"],
    ("experiment", "mnist_fast"): ["dataset.path={data}/mnist_sized.npz"],
}


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """Generated stand-ins for the local data options: Keras-layout .npz files and folders of
    class folders (noise images; only their layout and size are checked here)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for name, side in (("small.npz", 12), ("mnist_sized.npz", 28)):
        np.savez(root / name, x_train=rng.integers(0, 256, (40, side, side), dtype=np.uint8),
                 y_train=np.arange(40) % 10, x_test=rng.integers(0, 256, (10, side, side), dtype=np.uint8),
                 y_test=np.arange(10))
    for folder, classes in (("photos", 5), ("GTSRB/Train", 43)):
        for label in range(classes):
            (root / folder / f"{label:05d}").mkdir(parents=True)
            for i in range(10):  # enough for stratified test and validation shares
                Image.fromarray(rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)).save(
                    root / folder / f"{label:05d}" / f"{i}.png")
    return root


def _written_values(option: str) -> dict:
    """What conf/dataset/OPTION.yaml itself sets for the dataset (read here, not composed)."""
    data = yaml.safe_load((CONF_DIR / "dataset" / f"{option}.yaml").read_text())
    data.pop("defaults", None)
    return data.get("dataset", data)  # a global-package option nests its dataset values


def test_every_option_says_what_it_is_in_one_short_line():
    """--help lists each option with its file's first comment line (cvsweep/help_text.py)."""
    from cvsweep.help_text import SUMMARY_WIDTH, summary

    for path in CONF_DIR.glob("*/*.yaml"):
        assert 10 <= len(summary(path)) <= SUMMARY_WIDTH, f"{path}: {summary(path)!r}"


def test_every_group_is_listed():
    assert GROUPS == ["dataset", "executor", "experiment", "model", "sampling", "search"]


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_passes_value_checks(group, option, tmp_path, monkeypatch, request, small_data):
    if (group, option) == ("executor", "runpod"):  # its checks ask a real (emulated) endpoint's health
        endpoint = request.getfixturevalue("bare_endpoint")
        monkeypatch.setenv("RUNPOD_API_KEY", SENTINEL_API_KEY)
        monkeypatch.setenv("RUNPOD_ENDPOINT_ID", BARE_ENDPOINT_ID)
        monkeypatch.setenv("RUNPOD_ENDPOINT_BASE_URL", endpoint.base_url)
    monkeypatch.setenv("CVSWEEP_CACHE_DIR", str(tmp_path / "cache"))  # decoded folders
    extra = [override.format(data=small_data) for override in EXTRA.get((group, option), [])]
    chosen = f"+{group}={option}" if group == "experiment" else f"{group}={option}"  # no default: appended
    cfg = compose(chosen, f"output_root={tmp_path}", *extra)
    assert cfg.hydra.runtime.choices[group] == option
    app_keys = [key for key in cfg if key != "hydra"]
    OmegaConf.to_container(OmegaConf.masked_copy(cfg, app_keys), resolve=True, throw_on_missing=True)
    OmegaConf.to_container(cfg.hydra.sweeper, resolve=True, throw_on_missing=True)
    # What a trial sends: the run config, its dataset pinned (an .npz's num_classes counted).
    load_run_config(pin_dataset(run_config_of(cfg)))
    if group == "dataset":
        composed = OmegaConf.to_container(cfg.dataset, resolve=True, enum_to_str=True)
        overridden = {override.split("=")[0].removeprefix("dataset.") for override in extra}
        written = {key: value for key, value in _written_values(option).items() if key not in overridden}
        assert written and {key: composed[key] for key in written} == written
    # Every option, every dataset: the value checks, the local data with the model (the
    # downloaded sources are checked when a trial loads them) and the whole search space.
    check_run(cfg)
    check_sweep(cfg)


def test_keras_mnist_convnet_experiment_matches_the_keras_example():
    cfg = compose("+experiment=keras_mnist_convnet")
    m, t = cfg.model, cfg.training
    assert (m.conv_layers, m.filters, m.filter_growth, m.kernel_size) == (2, 32, 2.0, 3)
    assert (m.padding.name, m.pooling.name, m.head.name, m.dense_layers, m.dropout) == ("valid", "max", "flatten", 0, 0.5)
    assert (t.batch_size, t.epochs, t.optimizer.name, t.learning_rate, t.validation_split) == (128, 15, "adam", 1e-3, 0.1)
    assert t.early_stopping_patience == 0  # the example trains all 15 epochs
    choices = cfg.hydra.runtime.choices
    assert (choices.dataset, choices.model, choices.search) == ("mnist", "keras_mnist_convnet", "keras_mnist_convnet")
    # The command line wins over the experiment's choices; the model preset alone is only the model.
    assert compose("+experiment=keras_mnist_convnet", "search=cnn").hydra.runtime.choices.search == "cnn"
    alone = compose("model=keras_mnist_convnet")
    assert alone.model == m and alone.training.epochs == 20 and alone.hydra.runtime.choices.search == "cnn"


def test_mnist_sweep_experiment_picks_mnist_and_its_search():
    choices = compose("+experiment=mnist_sweep").hydra.runtime.choices
    assert (choices.dataset, choices.model, choices.search) == ("mnist", "cnn", "mnist")
    assert compose("+experiment=mnist_sweep", "dataset=fashion_mnist").hydra.runtime.choices.dataset == "fashion_mnist"


def test_search_is_seeded_tpe_with_log_learning_rate():
    sweeper = compose().hydra.sweeper
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == 0
    assert sweeper.direction is None  # follows from the objectives (tests/integration/study/test_study_identity.py)
    assert sweeper.params["training.learning_rate"].startswith("tag(log")
    assert sweeper.storage.startswith("sqlite:///")
    assert sweeper.max_failure_rate == 1.0


SEARCH_PRESETS = sorted(path.stem for path in (CONF_DIR / "search").glob("*.yaml"))


@pytest.mark.parametrize("preset", SEARCH_PRESETS)
def test_every_search_preset_leaves_trials_to_tpe(preset):
    # TPE samples at random until n_startup_trials trials completed: at n_trials or more,
    # the whole sweep would be a random search.
    sweeper = compose(f"search={preset}").hydra.sweeper
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert 0 < sweeper.sampler.n_startup_trials < sweeper.n_trials


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("training.epochs", 0, "training.epochs=0: allowed is [1, 10000]"),
        ("sampling.fraction", 1.5, "sampling.fraction=1.5: allowed is (0, 1]"),
        ("model.dropout", 1.0, "model.dropout=1.0: allowed is [0, 1)"),
        ("training.learning_rate", float("nan"), "training.learning_rate=nan: must be a finite number"),
        ("dataset.num_classes", 1, "dataset.num_classes=1: allowed is >= 2"),
        ("training.clipnorm", 0.0, "training.clipnorm=0.0: allowed is > 0"),
        ("training.clipvalue", -1.0, "training.clipvalue=-1.0: allowed is > 0"),
        ("model.dense_units_decay", 0.0, "model.dense_units_decay=0.0: allowed is (0, 1]"),
        ("model.dense_units_decay", 1.5, "model.dense_units_decay=1.5: allowed is (0, 1]"),
        ("model.dropout_decay", 0.0, "model.dropout_decay=0.0: allowed is (0, 1]"),
    ],
)
def test_out_of_range_values_name_key_value_and_range(key, value, expected):
    data = OmegaConf.create(TINY_RUN)
    OmegaConf.update(data, key, value)
    with pytest.raises(ConfigError) as err:
        load_run_config(OmegaConf.to_container(data))
    assert expected in str(err.value)


def test_rules_between_fields():
    data = OmegaConf.create(TINY_RUN)
    data.sampling.fraction = 0.5
    with pytest.raises(ConfigError, match="strategy 'full' uses the whole training set"):
        load_run_config(OmegaConf.to_container(data))
    data.sampling.strategy = "proxy"
    load_run_config(OmegaConf.to_container(data))
    data.dataset.name = "npz"
    with pytest.raises(ConfigError, match="dataset 'npz' needs the path"):
        load_run_config(OmegaConf.to_container(data))


def test_unknown_keys_and_wrong_types_are_refused():
    with pytest.raises(ConfigError, match="model.dropuot"):
        load_run_config({**TINY_RUN, "model": {"dropuot": 0.3}})
    with pytest.raises(ConfigError, match=r"model.activation: Invalid value 'sigmoidx', expected one of \[relu"):
        load_run_config({**TINY_RUN, "model": {"activation": "sigmoidx"}})
    with pytest.raises(ConfigError, match="training.epochs"):
        load_run_config({**TINY_RUN, "training": {"epochs": "many"}})
    with pytest.raises(ConfigError, match="missing"):
        load_run_config({"model": {}})


def _no_output(tmp_path):
    return not (tmp_path / "runs").exists() and not (tmp_path / "sweeps").exists()


def test_cli_bad_value_fails_before_any_folder(tmp_path):
    proc = run_cli("training.epochs=0", f"output_root={tmp_path}")
    assert proc.returncode == 2
    assert "training.epochs=0: allowed is [1, 10000]" in proc.stderr
    assert _no_output(tmp_path)


# The command's composition and checks in this process (the real command's exit status and
# folders: the test above, and tests/e2e/test_hostile_cli.py for sweeps).
def test_cli_unknown_key_and_bad_choice_fail_at_composition(tmp_path, capsys):
    status, said = as_the_command_checks(["model.dropuot=0.3", f"output_root={tmp_path}"], capsys, multirun=False)
    assert status != 0 and "Key 'dropuot' not in 'CnnModelConfig'" in said
    status, said = as_the_command_checks(["model.activation=sigmoidx", f"output_root={tmp_path}"], capsys,
                                         multirun=False)
    assert status != 0 and "Invalid value 'sigmoidx', expected one of [relu, leaky_relu" in said
    assert _no_output(tmp_path)


def test_cli_search_space_reaching_bad_values_fails_before_the_sweep(tmp_path, capsys):
    status, said = as_the_command_checks([
        "model.dropout=interval(0, 1.2)", "model.activation=choice(relu, foo)",
        "model.padding=valid", "model.kernel_size=5", "model.conv_layers=range(1, 3)", f"output_root={tmp_path}",
    ], capsys)
    assert status == 2, said
    assert "model.dropout=interval(0, 1.2) reaches model.dropout=1.2: model.dropout=1.2: allowed is [0, 1)" in said
    assert "model.activation=choice(relu, foo): model.activation: Invalid value 'foo'" in said
    assert "reaches model.conv_layers=3: model.conv_layers=3: a 8x8 image is used up" in said
    assert _no_output(tmp_path) and not (tmp_path / "optuna.db").exists()


def test_cli_direction_must_match_objective(tmp_path, capsys):
    status, said = as_the_command_checks(["objective=val_loss", "hydra.sweeper.direction=maximize",
                                          f"output_root={tmp_path}"], capsys)
    assert status == 2
    assert "the objectives (val_loss) are to minimize; set hydra.sweeper.direction=minimize" in said


@pytest.mark.parametrize("flag", [["--help"], ["--cfg", "job"], ["--info"]])
def test_cli_help_and_info_do_not_import_tensorflow(flag):
    import subprocess
    import sys

    from conftest import REPO

    code = (
        "import runpy, sys\n"
        f"sys.argv = ['cvsweep', *{flag!r}]\n"
        "exit_code = 0\n"
        "try:\n    runpy.run_module('cvsweep', run_name='__main__')\n"
        "except SystemExit as exit:\n    exit_code = exit.code\n"
        "print('EXIT', exit_code, 'TF_LOADED' if 'tensorflow' in sys.modules else 'TF_NOT_LOADED')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # Hydra's --help exits 0, --cfg and --info return: anything else is a failure it printed.
    assert proc.stdout.strip().splitlines()[-1] in ("EXIT 0 TF_NOT_LOADED", "EXIT None TF_NOT_LOADED"), proc.stderr
