"""TensorFlow's process-wide setup, in one place: what every entry point sets before anything
imports TensorFlow, the quiet import itself, and the switches each run sets for itself (seeds,
op determinism, TF32, the precision policy).

Importing this module imports no TensorFlow: the commands that never train (``--help``,
``--info``, the service) stay fast.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import warnings

from cvsweep.compat import gradient_registry
from cvsweep.training import provenance
from cvsweep.training.quiet_stderr import stderr_to_log_files

# TensorFlow's C++ INFO and WARNING lines.
TF_LOG_LEVEL = "2"


def configure_entry_point() -> None:
    """What each entry point sets first, before anything imports TensorFlow: the command once
    for all its subcommands (cvsweep/cli/main.py) and the RunPod worker (remote/handler.py).
    TensorFlow's C++ log level (unless the environment sets one) and the warning filters for
    warnings a cvsweep user cannot act on. Idempotent."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL)
    # hydra-optuna-sweeper 1.3 calls Optuna APIs deprecated since Optuna 3 (still working in 5).
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(optuna|hydra_plugins)\.")


@functools.cache
def import_tensorflow():
    """Import TensorFlow and Keras quietly, once per process.

    Their start-up lines go to the log files (cvsweep/training/quiet_stderr.py), then every
    object that exists so far is moved out of the garbage collector's sight with
    ``gc.freeze``: they live as long as the process, and every full collection would
    otherwise scan them again.

    Returns:
        ``(tensorflow, keras)``.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL)
    with stderr_to_log_files("tensorflow.startup"):  # what that variable cannot reach (see there)
        import keras
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # the CUDA probe, and its cuInit line, now
    tf.get_logger().setLevel("ERROR")  # per-trial models retrace predict functions: expected
    gc.freeze()
    return tf, keras


def import_tensorflow_off_console() -> None:
    """Import TensorFlow with its start-up lines kept off the console even where no log file
    catches them yet (preflight, before a sweep's folders exist)."""
    startup = logging.getLogger("tensorflow.startup")
    startup.propagate, propagated = False, startup.propagate
    try:
        import_tensorflow()
    finally:
        startup.propagate = propagated


def prepare_run(training):
    """Set this run's process-wide switches: every seed, op determinism, TF32 and the precision
    policy. Each is set for every run, so that no run inherits an earlier one's.

    Args:
        training: The run's ``training`` config node (seed, deterministic, precision).

    Returns:
        The ``tensorflow`` module.
    """
    tf, keras = import_tensorflow()  # first: it keeps TensorFlow's start-up lines off the console
    from tensorflow.python.framework import config as tf_config

    keras.backend.clear_session(free_memory=False)  # names restart; skip the costly gc pass
    _forget_earlier_custom_gradients()
    keras.utils.set_random_seed(training.seed)  # Python, NumPy and TensorFlow
    if training.deterministic:
        tf_config.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()
    # TF32 (float32 matrix products with a 10-bit mantissa on Ampere and newer GPUs) changes
    # results: off for a deterministic run on a GPU, else TensorFlow's default (on). A CPU has
    # no TF32: it keeps the default.
    tf.config.experimental.enable_tensor_float_32_execution(not (training.deterministic and provenance.gpus()))
    # Layers take the policy when they are built; the output layer computes in float32 anyway
    # (cvsweep/models/architectures.py), and Keras wraps the optimizer in a LossScaleOptimizer
    # for mixed_float16 when the model is compiled.
    keras.mixed_precision.set_global_policy(training.precision.value)
    return tf


def _forget_earlier_custom_gradients() -> None:
    """Drop the custom gradients earlier trials' train steps registered. TensorFlow registers
    one for every traced train step (the default distribution strategy's all_reduce), under a
    new name, and never removes it; each keeps that step's whole graph alive, so memory grows
    and every full garbage collection gets slower. Only the graph being traced looks its
    entries up, so a finished trial's are dead weight."""
    registry = gradient_registry()
    if registry is not None:  # a private structure: left alone if it changes shape
        for name in [name for name in registry if name.startswith("CustomGradient-")]:
            del registry[name]
