"""Keras callbacks that train() adds to every fit: a wall-clock budget and epoch reporting."""

from __future__ import annotations

import logging
import signal
import time
from typing import Callable, Optional

import keras

from cvsweep.training.result import finite_or_none

log = logging.getLogger("cvsweep.train")

class StopRequest:
    """A stop asked from outside the run (a cancelled or pruned remote job: the training
    process's SIGUSR1, cvsweep/training/process.py), and the model being fitted, which it
    stops. The training process installs ``handle`` as its SIGUSR1 handler, so the process's
    signal table is where the run finds it (``installed``)."""

    def __init__(self) -> None:
        self.requested = False
        self.fitting: Optional[keras.Model] = None

    def handle(self, signum: int = 0, frame=None) -> None:
        """Stop the run in progress at its next batch end (the signal handler).

        Args:
            signum: The signal's number, unused.
            frame: The interrupted frame, unused.
        """
        self.requested = True
        if self.fitting is not None:
            self.fitting.stop_training = True

    def clear(self) -> None:
        """A new run begins: a stop asked before it was sent is not for it."""
        self.requested = False

    @staticmethod
    def installed() -> Optional["StopRequest"]:
        """The stop request whose ``handle`` takes SIGUSR1 in this process, if any.

        Returns:
            The ``StopRequest``, or None outside the training process.
        """
        owner = getattr(signal.getsignal(signal.SIGUSR1), "__self__", None)
        return owner if isinstance(owner, StopRequest) else None


def stop_requested() -> bool:
    """Whether the run in progress was asked to stop from outside (see ``StopRequest``).

    Returns:
        True once a stop was asked in this process's training process.
    """
    stop = StopRequest.installed()
    return stop is not None and stop.requested


class TimeBudget(keras.callbacks.Callback):
    """Stops training once ``seconds`` of wall-clock time have passed since fit began. Only
    added when a budget is set: a per-batch hook costs Keras its asynchronous dispatch."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.exceeded = False

    def on_train_begin(self, logs=None):
        """Start the clock.

        Args:
            logs: Keras's, unused.
        """
        self.deadline = time.monotonic() + self.seconds

    def on_train_batch_end(self, batch, logs=None):
        """Stop training once the budget has passed.

        Args:
            batch: The batch's index, unused.
            logs: Keras's, unused.
        """
        # One clock read per batch: negligible next to a training step.
        if time.monotonic() > self.deadline:
            self.exceeded = True
            self.model.stop_training = True


class EpochReport(keras.callbacks.Callback):
    """Logs each epoch's metrics, hands them to an optional progress hook, and stops training
    after an epoch whose loss is NaN or infinite, or when the optional ``prune`` hook, asked
    with the same report, says the sweep's pruner stops this run (``pruned_after`` is then
    that epoch). Nothing runs per batch, so Keras keeps dispatching batches asynchronously
    (TerminateOnNaN would read the loss after every batch)."""

    def __init__(self, epochs: int, progress: Optional[Callable[[dict], None]] = None,
                 prune: Optional[Callable[[dict], bool]] = None):
        super().__init__()
        self.epochs = epochs
        self.progress = progress
        self.prune = prune
        self.pruned_after: Optional[int] = None
        self.stop: Optional[StopRequest] = None

    def on_train_begin(self, logs=None):
        """Make the model stoppable from outside; a stop asked already ends it after a batch.

        Args:
            logs: Keras's, unused.
        """
        self.stop = StopRequest.installed()
        if self.stop is not None:
            self.stop.fitting = self.model
            if self.stop.requested:  # asked while the data loaded: stop after the first batch
                self.model.stop_training = True

    def on_train_end(self, logs=None):
        """The model is no longer fitted: a later stop request does not reach it.

        Args:
            logs: Keras's, unused.
        """
        if self.stop is not None:
            self.stop.fitting = None

    def on_epoch_begin(self, epoch, logs=None):
        """Start the epoch's clock.

        Args:
            epoch: The epoch's index, unused.
            logs: Keras's, unused.
        """
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        """Log the epoch, report it, and stop on a non-finite loss or the pruner's word.

        Args:
            epoch: The epoch's index, from 0.
            logs: The epoch's metrics; ``learning_rate`` is added to them.
        """
        if logs is not None:  # as keras.callbacks.LearningRateScheduler does: a schedule shows in the history
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)
        metrics = {key: finite_or_none(value) for key, value in (logs or {}).items()}
        if metrics.get("loss") is None:
            self.model.stop_training = True
        seconds = time.monotonic() - self.started
        shown = " ".join(f"{k}={v:.4f}" if v is not None else f"{k}=nan" for k, v in metrics.items())
        log.info("epoch %d/%d %s (%.1fs)", epoch + 1, self.epochs, shown, seconds)
        update = {"epoch": epoch + 1, "epochs": self.epochs, "seconds": seconds, **metrics}
        if self.progress is not None:
            self.progress(update)
        if self.prune is not None and not self.model.stop_training and self.prune(update):
            self.pruned_after = epoch + 1
            self.model.stop_training = True
