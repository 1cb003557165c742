"""Evaluate a trial's saved model on its test split and check it against its result
(``cvsweep evaluate``, cvsweep/cli/evaluate.py, which finds the result.json a path means).

Before anything is loaded: the result is a completed run that kept its model, its config
still has the fingerprint it recorded, and model.keras has the size and sha256 it recorded.
Then the data is loaded as the trial loaded it (its sha256 must be the recorded one), the test
split is rebuilt from the recorded config, the model is loaded with Keras and evaluated
exactly as train() evaluated it (the same batching and TensorFlow settings,
cvsweep/training/train.py ``evaluate_saved``). On the machine that trained the model, with
training.deterministic=true (the default), the figures equal the recorded ones, bit for bit.
The data must be on this machine: a trial that read it on a remote worker
(dataset.location=worker) is evaluated where that path exists.
"""

from __future__ import annotations

from pathlib import Path

from cvsweep.errors import UserError
from cvsweep.jsonio import read_json
from cvsweep.layout import MODEL, RESULT

COMPARED = ("test_loss", "test_accuracy")


class BadInput(UserError):
    """Input that cannot be evaluated; the message names the file and what is wrong."""


def checked_config(result_path: Path, result: dict):
    """The recorded run config, validated, after checking it still has its fingerprint.

    Args:
        result_path: The result.json, for messages.
        result: Its content.

    Returns:
        The typed run config.

    Raises:
        BadInput: When the config is no valid run config or no longer has its fingerprint.
    """
    from cvsweep.config.fingerprint import fingerprint
    from cvsweep.config.schema import ConfigError, run_config_of
    from cvsweep.config.validate import load_run_config

    try:
        cfg = load_run_config(result.get("config"))
    except ConfigError as err:
        raise BadInput(f"{result_path}: its config is not a valid run config: {err}") from None
    now = fingerprint(run_config_of(cfg))
    if now != result.get("fingerprint"):
        raise BadInput(f"{result_path}: its config no longer matches its fingerprint (recorded "
                       f"{str(result.get('fingerprint'))[:12]}, the config now gives {now[:12]}): the file was edited")
    return cfg


def checked_model(result_path: Path, result: dict) -> Path:
    """model.keras beside the result, with the size and sha256 the result recorded.

    Args:
        result_path: The result.json.
        result: Its content.

    Returns:
        The model file's path.

    Raises:
        BadInput: When no model was kept, the record is malformed, or the file is missing or
            differs from its record.
    """
    from cvsweep.training.artifact import sha256_of

    record = result.get("model")
    if not record:
        raise BadInput(f"{result_path}: no model was kept for this trial (artifacts=none, or it ran before "
                       "models were saved)")
    if not isinstance(record, dict):
        raise BadInput(f"{result_path}: its model record is not a mapping but {type(record).__name__}")
    if "path" not in record:
        raise BadInput(f"{result_path}: the model is missing: {record.get('missing')}")
    if record["path"] != MODEL:  # never a file elsewhere, whatever the result names
        raise BadInput(f"{result_path}: its model path is {str(record['path'])[:100]!r}; a trial's model is "
                       f"always {MODEL} beside its {RESULT}")
    model = result_path.parent / MODEL
    if not model.is_file():
        raise BadInput(f"{model}: not found, although {result_path} records it")
    size, sha256 = model.stat().st_size, sha256_of(model)
    if (size, sha256) != (record.get("bytes"), record.get("sha256")):
        raise BadInput(f"{model}: {size} bytes with sha256 {sha256[:12]}..., but {result_path} records "
                       f"{record.get('bytes')} bytes with sha256 {str(record.get('sha256'))[:12]}...: "
                       "the file was changed, truncated or replaced")
    return model


def test_split(result_path: Path, result: dict, cfg):
    """The splits the trial trained on, rebuilt from its config.

    Args:
        result_path: The result.json, for messages.
        result: Its content (the data's recorded sha256).
        cfg: Its typed run config.

    Returns:
        The splits, as cvsweep/data/sources.py ``split`` gives them.

    Raises:
        BadInput: When the data cannot be loaded here or no longer hashes as recorded.
    """
    from cvsweep.config.schema import DataLocation
    from cvsweep.data.sources import DataError, load_source, split

    data = result.get("data") or {}
    recorded = data.get("source_sha256") if isinstance(data, dict) else None
    try:
        source = load_source(cfg.dataset)  # a pinned dataset.sha256 must match too
    except DataError as err:
        if cfg.dataset.get("location") == DataLocation.worker:
            raise BadInput(f"{result_path}: the trial read its data on the remote worker (dataset.location=worker, "
                           f"dataset.path={cfg.dataset.path}); evaluating needs that data on this machine at the "
                           f"same path: {err}") from None
        raise BadInput(f"{result_path}: the data cannot be loaded as recorded: {err}") from None
    if recorded is not None and source.sha256 != recorded:
        raise BadInput(f"{result_path}: the data now hashes to {source.sha256}, the trial trained on {recorded}: "
                       "it changed since")
    return split(source, cfg.dataset, cfg.sampling, cfg.training.seed, cfg.training.validation_split)


def evaluate(result_path: Path) -> tuple[dict, dict]:
    """Evaluate the model of the trial whose result.json is ``result_path``.

    Args:
        result_path: The trial's result.json.

    Returns:
        Its recorded metrics and the metrics the model gives now.

    Raises:
        BadInput: For a result, model or data that cannot be evaluated.
    """
    result = _read(result_path)
    from cvsweep.training.result import COMPLETED

    if not isinstance(result, dict) or result.get("status") != COMPLETED:
        status = result.get("status") if isinstance(result, dict) else None
        raise BadInput(f"{result_path}: not a completed trial's result (status {status!r}), so it has no model")
    if not isinstance(result.get("metrics"), dict):
        raise BadInput(f"{result_path}: it records no metrics to compare with (\"metrics\" is not a mapping)")
    cfg = checked_config(result_path, result)
    model = checked_model(result_path, result)
    splits = test_split(result_path, result, cfg)
    from cvsweep.training.train import evaluate_saved

    try:
        now = evaluate_saved(model, cfg, splits)
    except Exception as err:  # Keras's message for a file it cannot read or a model that does not fit
        raise BadInput(f"{model}: cannot be loaded or evaluated: {type(err).__name__}: {err}") from None
    return result["metrics"], now


def _read(path: Path):
    try:
        return read_json(path)
    except (OSError, ValueError) as err:  # unreadable, or not JSON
        raise BadInput(f"{path}: cannot be read as JSON: {err}") from None
