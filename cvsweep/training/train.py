"""The one training function. Every executor, local or remote, calls exactly ``train``.

``train(config)`` takes a run config as plain data (the JSON a worker receives or
``schema.run_config_of`` of a composed config), validates it against the schema, loads and
splits the data, builds the model, trains with every seed fixed, and returns a JSON-safe
result. The objective metrics come from the validation split; the test set is only
evaluated and reported.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, Mapping, Optional

from cvsweep.config.schema import LearningRateSchedule, run_config_of
from cvsweep.config.validate import load_run_config
from cvsweep.data.sources import load_source, split
from cvsweep.models import architectures as models
from cvsweep.models import size as model_size
from cvsweep.training import advice, artifact, failures, health, memory, precision, provenance
from cvsweep.training.failures import Failure
from cvsweep.training.result import Result, fail, finite_or_none, is_completed, mark_pruned, new_result
from cvsweep.training.tf_runtime import import_tensorflow, prepare_run  # noqa: F401 (import_tensorflow: the worker's warm-up)

log = logging.getLogger("cvsweep.train")


def train(
    config: Mapping[str, Any],
    progress: Optional[Callable[[dict], None]] = None,
    tensorboard_dir: Optional[str] = None,
    stage: Optional[Callable[[str], None]] = None,
    model_dir: Optional[str] = None,
    prune: Optional[Callable[[dict], bool]] = None,
) -> Result:
    """Train and evaluate one run.

    A run that cannot finish comes back with status ``failed``, the reason, and ``failure``
    (``{"code", "problems"}``, cvsweep/training/failures.py): whatever it raised, from bad data
    and impossible or oversized models to out of memory, divergence, the time budget or a bug. A
    completed run also carries its diagnostics and health scores.

    Args:
        config: The run config as plain data.
        progress: Hears each epoch's update.
        tensorboard_dir: Where TensorBoard logs go; None for none.
        stage: Hears each stage as it begins (``data``, ``model``, ``fit``): the training
            process's hard time limit starts with the fit (cvsweep/training/process.py).
        model_dir: Where a completed run's model (its best weights, when early stopping restored
            them) is saved as model.keras (cvsweep/training/artifact.py); None keeps none.
        prune: Asked after each epoch, with the epoch's report, whether the sweep's pruner stops
            the run: a stopped run comes back with status ``pruned`` and what it trained
            (cvsweep/study/pruning.py), neither evaluated nor kept.

    Returns:
        The run's result (cvsweep/training/result.py).

    Raises:
        ConfigError: For an invalid config.
    """
    cfg = load_run_config(config)
    result = new_result(run_config_of(cfg))
    current, model, estimated = failures.DATA, None, None
    try:
        precision.check(cfg.training.precision)  # the hardware here can run it: before any work
        _enter(stage, current)
        source = load_source(cfg.dataset)
        splits = split(source, cfg.dataset, cfg.sampling, cfg.training.seed, cfg.training.validation_split)
        result["data"] = splits.describe()
        current = failures.MODEL
        _enter(stage, current)
        input_shape = splits.x_train.shape[1:]
        estimated = model_size.check(cfg, input_shape).params  # refused before it is built
        tf = prepare_run(cfg.training)
        result["executed_on"]["device"] = provenance.device()  # with this run's precision policy and TF32
        model = models.build(cfg, input_shape)
        current = failures.FIT
        _enter(stage, current)
        _fit_and_evaluate(tf, model, cfg, splits, result, progress, tensorboard_dir, prune)
    except Exception as err:  # MemoryError included; KeyboardInterrupt and the like are not
        return fail(result, failures.classify(err, current, _params(model) or estimated))
    if model_dir is not None and is_completed(result):
        result["model"] = artifact.save(model, model_dir)
    return result


def _enter(stage: Optional[Callable[[str], None]], name: str) -> None:
    if stage is not None:
        stage(name)


def _params(model) -> Optional[int]:
    try:
        return int(model.count_params()) if model is not None else None
    except Exception:  # a model that failed half-built
        return None


def _fit_and_evaluate(tf, model, cfg, splits, result: Result, progress, tensorboard_dir, prune=None) -> None:
    """Fit, then evaluate and score the model; a run that diverged or overran its time budget
    is marked failed in ``result`` instead, and one the pruner stopped pruned, with what it
    trained so far."""
    # Keras-heavy modules: imported after import_tensorflow, which keeps its start-up lines quiet.
    from cvsweep.training import diagnostics
    from cvsweep.training.callbacks import TimeBudget

    training, metrics = cfg.training, result["metrics"]
    _compile(model, training, splits)
    budget = TimeBudget(training.time_budget_s) if training.time_budget_s else None
    recorder = diagnostics.TrainingRecorder(
        *diagnostics.gradient_batch(splits, cfg.health, training.batch_size, training.seed)
    )
    callbacks = _callbacks(training, progress, budget, recorder, tensorboard_dir, prune)
    train_data = _batched(tf, splits.x_train, splits.y_train, training.batch_size, shuffle_seed=training.seed)
    val_data = _batched(tf, splits.x_val, splits.y_val, training.batch_size)

    peak_memory = memory.PeakMemory(tf)  # reset here: this process may have trained other runs
    history, train_seconds = _fit(model, train_data, val_data, training.epochs, callbacks)
    metrics.update(epochs_run=len(history.get("loss", [])), train_seconds=round(train_seconds, 3),
                   **peak_memory.read(), params=int(model.count_params()), history=history)
    failure = _training_failure(history, budget, training, train_seconds) or _stopped(history)
    pruned_after = callbacks[0].pruned_after  # the EpochReport
    if failure is None and pruned_after is not None:
        mark_pruned(result, pruned_after)
        return
    if failure is None:
        test_data = _batched(tf, splits.x_test, splits.y_test, training.batch_size)
        metrics.update(_evaluate(model, {"val": val_data, "test": test_data}))
        failure = _evaluation_failure(metrics)
    if failure is not None:
        fail(result, failure)
        return
    _score(model, cfg, splits, recorder, result)


def _compile(model, training, splits) -> None:
    import keras

    # clipnorm and clipvalue None: Keras's default, no clipping.
    optimizer = keras.optimizers.get({"class_name": training.optimizer.name, "config": {
        "learning_rate": _learning_rate(keras, training, splits),
        "clipnorm": training.clipnorm, "clipvalue": training.clipvalue}})
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def _callbacks(training, progress, budget, recorder, tensorboard_dir, prune=None) -> list:
    """Every fit's callbacks, in the order they run: epoch reports (and the pruner's
    question), early stopping, the time budget, the diagnostics recorder, TensorBoard."""
    import keras

    from cvsweep.training.callbacks import EpochReport

    callbacks = [EpochReport(training.epochs, progress, prune)]
    if training.early_stopping_patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=training.early_stopping_patience, restore_best_weights=True
            )
        )
    if budget is not None:
        callbacks.append(budget)
    callbacks.append(recorder)
    if tensorboard_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=tensorboard_dir))
    return callbacks


def _fit(model, train_data, val_data, epochs: int, callbacks: list) -> tuple[dict, float]:
    """The history (a diverged value recorded as None) and the seconds fit took."""
    started = time.perf_counter()
    history = model.fit(
        train_data, validation_data=val_data, epochs=epochs, callbacks=callbacks, shuffle=False, verbose=0
    )  # shuffling is the pipeline's, seeded
    seconds = time.perf_counter() - started
    return {key: [finite_or_none(v) for v in values] for key, values in history.history.items()}, seconds


def _training_failure(history: dict, budget, training, train_seconds: float) -> Optional[Failure]:
    """Why the fit gave no model worth evaluating: it diverged, or ran out of its time budget."""
    if any(value is None for value in history.get("loss", [])):
        epoch = history["loss"].index(None) + 1
        return Failure(failures.DIVERGED, f"diverged: training loss became NaN or infinite in epoch {epoch}",
                       infeasible=True)
    if budget is not None and budget.exceeded:
        return Failure(
            failures.TIME_BUDGET,
            f"time budget exceeded: training.time_budget_s={training.time_budget_s} reached after "
            f"{train_seconds:.1f}s in epoch {len(history['loss'])} of {training.epochs}",
            infeasible=True,
        )
    return None


def _stopped(history: dict) -> Optional[Failure]:
    """A run stopped from outside (its remote job cancelled) ends without evaluation."""
    from cvsweep.training.callbacks import stop_requested

    if stop_requested():
        return Failure(failures.INTERRUPTED, "stopped from outside (its job was cancelled) after "
                       f"{len(history.get('loss', []))} epoch(s)", infeasible=False)
    return None


def _evaluate(model, parts: dict) -> dict:
    """Loss and accuracy on each split of ``parts`` (validation, test), and the seconds it took."""
    started = time.perf_counter()
    metrics = {}
    for part, data in parts.items():
        scores = model.evaluate(data, verbose=0, return_dict=True)
        metrics[f"{part}_loss"] = finite_or_none(scores["loss"])
        metrics[f"{part}_accuracy"] = finite_or_none(scores["accuracy"])
    metrics["evaluate_seconds"] = round(time.perf_counter() - started, 3)
    return metrics


def evaluate_saved(model_path, cfg, splits) -> dict:
    """Load a saved model and evaluate it on ``splits``' test split exactly as a run evaluated it.

    The run's seeds and determinism, its batching, its evaluate call (cvsweep evaluate).

    Args:
        model_path: The model.keras file.
        cfg: The run config it was trained with.
        splits: The run's splits.

    Returns:
        ``test_loss``, ``test_accuracy`` and ``evaluate_seconds``.

    Raises:
        Exception: What Keras raises for a file it cannot load.
    """
    tf = prepare_run(cfg.training)
    import keras

    model = keras.models.load_model(model_path)
    return _evaluate(model, {"test": _batched(tf, splits.x_test, splits.y_test, cfg.training.batch_size)})


def _evaluation_failure(metrics: dict) -> Optional[Failure]:
    if metrics["val_loss"] is None:
        return Failure(failures.DIVERGED, "diverged: validation loss is NaN or infinite", infeasible=True)
    return None


def _score(model, cfg, splits, recorder, result: Result) -> None:
    """Latency, diagnostics, health scores and advice of a completed run."""
    from cvsweep.training import diagnostics

    metrics = result["metrics"]
    metrics["latency_ms"] = diagnostics.latency_ms(model, splits.x_val)
    result["diagnostics"] = diagnostics.collect(
        model, splits, recorder, cfg.health, cfg.dataset.num_classes, cfg.training.seed
    )
    result["health"] = health.scores(result["diagnostics"], metrics, cfg.health)
    result["health"]["advice"] = advice.advise(result)
    log.info(
        "val_accuracy=%.4f val_loss=%.4f test_accuracy=%.4f overall_health=%.3f (%d epochs, %.1fs)",
        metrics["val_accuracy"], metrics["val_loss"], metrics["test_accuracy"],
        result["health"]["overall_health"], metrics["epochs_run"], metrics["train_seconds"],
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
