"""The one training function. Every executor, local or remote, calls exactly ``train``.

``train(config)`` takes a run config as plain data (the JSON a worker receives or
``schema.run_config_of`` of a composed config), validates it against the schema, loads and
splits the data, builds the model, trains with every seed fixed, and returns a JSON-safe
result. The objective metrics come from the validation split; the test set is only
evaluated and reported.
"""

from __future__ import annotations

import functools
import gc
import logging
import math
import os
import time
from typing import Any, Callable, Mapping, Optional

from cvsweep import failures, model_size, provenance
from cvsweep.data import load_source, split
from cvsweep.fingerprint import fingerprint
from cvsweep.model import build_model
from cvsweep.schema import SCHEMA_VERSION, Architecture, LearningRateSchedule, load_run_config, run_config_of

log = logging.getLogger("cvsweep.train")

COMPLETED, FAILED = "completed", "failed"


def train(
    config: Mapping[str, Any],
    progress: Optional[Callable[[dict], None]] = None,
    tensorboard_dir: Optional[str] = None,
    stage: Optional[Callable[[str], None]] = None,
) -> dict:
    """Train and evaluate one run. Raises ConfigError for an invalid config; a run that
    cannot finish comes back with status ``failed``, the reason, and ``failure``
    (``{"code", "problems"}``, cvsweep/failures.py): whatever it raised, from bad data and
    impossible or oversized models to out of memory, divergence, the time budget or a bug.
    A completed run also carries its diagnostics and health scores. ``stage`` hears each
    stage as it begins (``data``, ``model``, ``fit``): the training process's hard time
    limit starts with the fit (cvsweep/training_process.py)."""
    cfg = load_run_config(config)
    result = new_result(run_config_of(cfg))
    current, model, estimated = failures.DATA, None, None
    try:
        _enter(stage, current)
        source = load_source(cfg.dataset)
        splits = split(source, cfg.dataset, cfg.sampling, cfg.training.seed, cfg.training.validation_split)
        result["data"] = splits.describe()
        current = failures.MODEL
        _enter(stage, current)
        estimated = model_size.check(cfg, splits.x_train.shape[1:]).params  # refused before it is built
        tf = _tensorflow(cfg.training.seed, cfg.training.deterministic)
        result["executed_on"]["device"] = provenance.device()
        model = _build(cfg, splits)
        current = failures.FIT
        _enter(stage, current)
        _fit_and_evaluate(tf, model, cfg, splits, result, progress, tensorboard_dir)
    except Exception as err:  # MemoryError included; KeyboardInterrupt and the like are not
        failure = failures.classify(err, current, _params(model) or estimated)
        return _failed(result, failure.reason, failure.infeasible, failure.code)
    return result


def _enter(stage: Optional[Callable[[str], None]], name: str) -> None:
    if stage is not None:
        stage(name)


def _params(model) -> Optional[int]:
    try:
        return int(model.count_params()) if model is not None else None
    except Exception:  # a model that failed half-built
        return None


def _build(cfg, splits):
    """The model the config names: the CNN for images, the LSTM for token sequences (the
    schema has already refused any other pairing)."""
    if cfg.model.architecture == Architecture.lstm:
        from cvsweep.lstm import build_lstm

        return build_lstm(cfg.model, cfg.dataset.sequence_length, cfg.dataset.vocab_size, cfg.dataset.num_classes,
                          cfg.training.seed)
    return build_model(cfg.model, splits.x_train.shape[1:], cfg.dataset.num_classes, cfg.training.seed)


def new_result(run_config: dict) -> dict:
    """A result before training: what will run, where, on which versions."""
    return {
        "schema_version": SCHEMA_VERSION,
        "fingerprint": fingerprint(run_config),
        "config": run_config,
        "status": COMPLETED,
        "reason": None,
        "metrics": {},
        "data": {},
        "executed_on": provenance.host(),
        "versions": provenance.versions(),
    }


def failed_result(run_config: dict, reason: str, code: str = failures.INTERNAL_ERROR,
                  infeasible: bool = False) -> dict:
    """A result for a run that never trained (refused config, remote job lost)."""
    return _failed(new_result(run_config), reason, infeasible, code)


@functools.cache
def import_tensorflow():
    """Import TensorFlow and Keras quietly, once per process. Then move every object that
    exists so far (about 400,000, most from these imports) out of the garbage collector's
    sight with gc.freeze: they live as long as the process, and every full collection
    would otherwise scan them again (0.1-0.5 s each, several per sweep of short trials)."""
    from cvsweep.quiet_stderr import stderr_to_log_files

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's INFO and WARNING lines
    with stderr_to_log_files("tensorflow.startup"):  # what that variable cannot reach (see there)
        import keras
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # the CUDA probe, and its cuInit line, now
    tf.get_logger().setLevel("ERROR")  # per-trial models retrace predict functions: expected
    gc.freeze()
    return tf, keras


def _tensorflow(seed: int, deterministic: bool):
    """TensorFlow, with every seed fixed and the op determinism switch set for this run."""
    tf, keras = import_tensorflow()  # first: it keeps TensorFlow's start-up lines off the console
    from tensorflow.python.framework import config as tf_config

    keras.backend.clear_session(free_memory=False)  # names restart; skip the costly gc pass
    _forget_earlier_custom_gradients()
    keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow
    if deterministic:
        tf_config.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()  # the switch is process-wide: undo an earlier trial's
    return tf


def _forget_earlier_custom_gradients() -> None:
    """Drop the custom gradients earlier trials' train steps registered. TensorFlow registers
    one for every traced train step (the default distribution strategy's all_reduce), under a
    new name, and never removes it; each keeps that step's whole graph alive: about 9,300
    objects a trial, so memory grew and every full garbage collection got slower (0.5 s each
    after 25 short trials). Only the graph being traced looks its entries up, so a finished
    trial's are dead weight."""
    from cvsweep.compat import gradient_registry

    registry = gradient_registry()
    if registry is not None:  # a private structure: left alone if it changes shape
        for name in [name for name in registry if name.startswith("CustomGradient-")]:
            del registry[name]


def _fit_and_evaluate(tf, model, cfg, splits, result: dict, progress, tensorboard_dir) -> None:
    import keras

    from cvsweep import diagnostics, health
    from cvsweep.keras_callbacks import EpochReport, TimeBudget, finite_or_none

    training = cfg.training
    optimizer = keras.optimizers.get(
        {"class_name": training.optimizer.name, "config": {"learning_rate": _learning_rate(keras, training, splits)}}
    )
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    budget = TimeBudget(training.time_budget_s) if training.time_budget_s else None
    callbacks = [EpochReport(training.epochs, progress)]
    if training.early_stopping_patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=training.early_stopping_patience, restore_best_weights=True
            )
        )
    if budget is not None:
        callbacks.append(budget)
    recorder = diagnostics.TrainingRecorder(
        *diagnostics.gradient_batch(splits, cfg.health, training.batch_size, training.seed)
    )
    callbacks.append(recorder)
    if tensorboard_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=tensorboard_dir))

    train_data = _batched(tf, splits.x_train, splits.y_train, training.batch_size, shuffle_seed=training.seed)
    val_data = _batched(tf, splits.x_val, splits.y_val, training.batch_size)
    started = time.perf_counter()
    history = model.fit(
        train_data, validation_data=val_data, epochs=training.epochs, callbacks=callbacks, shuffle=False, verbose=0
    )  # shuffling is the pipeline's, seeded
    train_seconds = time.perf_counter() - started

    history = {key: [finite_or_none(v) for v in values] for key, values in history.history.items()}
    metrics = result["metrics"]
    metrics.update(
        epochs_run=len(history.get("loss", [])),
        train_seconds=round(train_seconds, 3),
        params=int(model.count_params()),
        history=history,
    )
    if any(value is None for value in history.get("loss", [])):
        epoch = history["loss"].index(None) + 1
        _failed(result, f"diverged: training loss became NaN or infinite in epoch {epoch}", True, failures.DIVERGED)
        return
    if budget is not None and budget.exceeded:
        _failed(
            result,
            f"time budget exceeded: training.time_budget_s={training.time_budget_s} reached after "
            f"{train_seconds:.1f}s in epoch {metrics['epochs_run']} of {training.epochs}",
            infeasible=True, code=failures.TIME_BUDGET,
        )
        return
    started = time.perf_counter()
    for part, data in (("val", val_data), ("test", _batched(tf, splits.x_test, splits.y_test, training.batch_size))):
        scores = model.evaluate(data, verbose=0, return_dict=True)
        metrics[f"{part}_loss"] = finite_or_none(scores["loss"])
        metrics[f"{part}_accuracy"] = finite_or_none(scores["accuracy"])
    metrics["evaluate_seconds"] = round(time.perf_counter() - started, 3)
    if metrics["val_loss"] is None:
        _failed(result, "diverged: validation loss is NaN or infinite", True, failures.DIVERGED)
        return
    metrics["latency_ms"] = diagnostics.latency_ms(model, splits.x_val)
    result["diagnostics"] = diagnostics.collect(
        model, splits, recorder, cfg.health, cfg.dataset.num_classes, training.seed
    )
    result["health"] = health.scores(result["diagnostics"], metrics, cfg.health)
    log.info(
        "val_accuracy=%.4f val_loss=%.4f test_accuracy=%.4f overall_health=%.3f (%d epochs, %.1fs)",
        metrics["val_accuracy"], metrics["val_loss"], metrics["test_accuracy"],
        result["health"]["overall_health"], metrics["epochs_run"], train_seconds,
    )


def _learning_rate(keras, training, splits):
    """A float for a constant rate, else Keras's schedule over every planned step."""
    if training.lr_schedule == LearningRateSchedule.constant:
        return training.learning_rate
    steps = training.epochs * math.ceil(len(splits.y_train) / training.batch_size)
    return keras.optimizers.schedules.CosineDecay(training.learning_rate, decay_steps=steps)


def _batched(tf, x, y, batch_size: int, shuffle_seed: Optional[int] = None):
    """An in-memory tf.data pipeline; reshuffled every epoch from a fixed seed when training."""
    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle_seed is not None:
        data = data.shuffle(len(y), seed=shuffle_seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _failed(result: dict, reason: str, infeasible: bool, code: str) -> dict:
    """``infeasible``: the configuration itself cannot train (it diverges, overruns its time
    budget, cannot be built, is too big for the memory), an answer a sweep counts and its
    sampler learns to avoid; not so for data that could not be loaded, a run that was lost or
    an internal error (see cvsweep/trial.py). ``code``: one of cvsweep/failures.py's."""
    log.warning("run failed: %s", reason)
    result.update(status=FAILED, reason=reason, infeasible=infeasible,
                  failure={"code": code, "problems": [reason]})
    return result
