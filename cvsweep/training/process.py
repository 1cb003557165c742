"""train() in a child process that can be killed: on a cancelled or timed-out RunPod job, at a
local trial's hard time limit, on Ctrl-C. A thread cannot be stopped inside a TensorFlow op or
a blocking read (a FIFO as dataset.path), a process can.

One long-lived child serves runs one at a time, so TensorFlow, the datasets and the traced
functions stay warm between runs as they did in one process. It is started with multiprocessing's
'spawn' (a fresh interpreter: nothing of the parent's threads or TensorFlow state), imports
TensorFlow at once, and talks to the parent over a pipe: the run config goes in; log records,
epoch reports, the stage train() is in, and the result come back. A run with a ``prune`` hook
also asks the parent after each epoch whether the sweep's pruner stops it, and waits for the
answer, so a pruned run stops at that epoch's end. A killed child is replaced at once, so the
next run finds a warm one sooner; ``stop`` (a cancelled remote job) instead asks the run to end
at its next batch end, which keeps the child and its warm TensorFlow, and kills only a run
that does not end within a grace period.

The hard time limit: with ``training.time_budget_s`` set, each stage of train() (loading the
data and building the model; fitting and evaluating) may take the budget plus ``GRACE_S``; the
epoch-end check inside fit stops a run over budget gracefully, the kill is for a run that
never reaches a batch end (one enormous batch, a read that never returns).
"""

from __future__ import annotations

import functools
import logging
import logging.handlers
import multiprocessing
import os
import signal
import threading
import time
from typing import Callable, Optional

from cvsweep.config.schema import ConfigError
from cvsweep.training import failures
from cvsweep.training.failures import Failure
from cvsweep.training.quiet_stderr import handle_relayed
from cvsweep.training.result import Result, failed_result

log = logging.getLogger("cvsweep.training_process")

_CONTEXT = multiprocessing.get_context("spawn")
GRACE_S = 10.0  # beyond training.time_budget_s, per stage, before the child is killed
PARENT_CHECK_S = 1.0


class TrainingProcess:
    """Runs train() in the child; ``kill`` (from any thread) stops the run in progress."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # one run at a time
        self._start_lock = threading.Lock()  # a kill and a run may both replace a dead child
        self._process = None
        self._conn = None
        self._ended = threading.Condition()  # notified as each run ends
        self._runs_ended = 0
        self._running = False  # a run is in progress (changed under _ended, as the count)

    def start(self, wait: bool = False) -> None:
        """Start the child unless one is alive.

        Args:
            wait: Also wait until the child has imported TensorFlow.

        Raises:
            RuntimeError: With ``wait``, the child exited while starting.
        """
        with self._start_lock:
            if self._process is None or not self._process.is_alive():
                parent, child = _CONTEXT.Pipe()
                process = _CONTEXT.Process(target=_serve, args=(child, os.getpid()), name="cvsweep-training",
                                           daemon=True)
                process.start()
                child.close()
                self._process, self._conn = process, parent
        if wait:
            with self._lock:
                _relay_until(self._conn, "ready")

    def kill(self) -> None:
        """Kill the child (a run in progress then returns a failed result, which nobody may
        wait for any more) and start its replacement."""
        process = self._process
        if process is not None and process.is_alive():
            process.kill()
            process.join()
            log.info("killed the training process %s", process.pid)
        self.start()

    def stop(self, grace_s: float = GRACE_S) -> None:
        """Ask the run in progress to end at its next batch end (it comes back failed,
        ``interrupted``, unevaluated); kill the child if it has not ended within ``grace_s``
        (a read that never returns, a stage without batches). From any thread.

        Args:
            grace_s: Seconds the run has to end before the child is killed.
        """
        with self._ended:  # the run cannot end between this check and the signal
            process, run = self._process, self._runs_ended
            if not self._running or process is None or not process.is_alive():
                return
            os.kill(process.pid, signal.SIGUSR1)
        threading.Thread(target=self._kill_unless_ended, args=(run, process, grace_s), daemon=True,
                         name="cvsweep-stop-grace").start()

    def _kill_unless_ended(self, run: int, process, grace_s: float) -> None:
        with self._ended:  # held while killing: no next run can start on this process meanwhile
            if self._ended.wait_for(lambda: self._runs_ended > run, timeout=grace_s) or self._process is not process:
                return
            log.warning("the run did not stop within %.0fs of being asked: killing its training process", grace_s)
            self.kill()

    def close(self) -> None:
        """Kill the child, if alive, and start no replacement."""
        process, self._process = self._process, None
        if process is not None and process.is_alive():
            process.kill()
            process.join()

    @property
    def pid(self) -> Optional[int]:
        """The child's process id, or None before it started or after ``close``."""
        return self._process.pid if self._process is not None else None

    def run(self, run_config: dict, progress: Optional[Callable[[dict], None]] = None,
            tensorboard_dir: Optional[str] = None, model_dir: Optional[str] = None,
            prune: Optional[Callable[[dict], bool]] = None) -> Result:
        """Run train(run_config) in the child, one run at a time.

        On any other exception here (Ctrl-C in the parent) the child is killed first.

        Args:
            run_config: The run config.
            progress: Called with each epoch's report, as train()'s ``progress``.
            tensorboard_dir: Where TensorBoard logs go, as train()'s.
            model_dir: Where the model is saved, as train()'s.
            prune: Answers the child's question after each epoch (train()'s ``prune``; an
                error in it counts as "go on").

        Returns:
            train()'s result, or a failed result when the child was killed (by ``kill``, or
            at the hard time limit) or died.

        Raises:
            ConfigError: As train() raises it; the child is kept.
        """
        budget = (run_config.get("training") or {}).get("time_budget_s")
        with self._lock:
            self.start()
            process, conn = self._process, self._conn
            with self._ended:
                self._running = True
            try:
                conn.send((run_config, tensorboard_dir, model_dir, prune is not None))
                return self._answer(process, conn, run_config, progress, budget, prune)
            except ConfigError:  # train() refused the config: the child is fine
                raise
            except BaseException:
                self.kill()
                raise
            finally:
                with self._ended:
                    self._running = False
                    self._runs_ended += 1
                    self._ended.notify_all()

    def _answer(self, process, conn, run_config: dict, progress, budget: Optional[float], prune=None) -> Result:
        deadline, stage = None, None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                if not conn.poll(timeout):  # the stage ran past the hard limit
                    self.kill()
                    return _over_time(run_config, budget, stage)
                kind, payload = conn.recv()
            except (EOFError, OSError):  # killed (a cancelled job), or it died
                process.join()
                self.start()
                return _died(run_config, process.exitcode)
            if kind == "log":
                handle_relayed(payload)
            elif kind == "progress" and progress is not None:
                progress(payload)
            elif kind == "prune?":
                conn.send(ask_pruner(prune, payload))
            elif kind == "stage":
                stage = payload
                if budget and stage != failures.MODEL:  # data and model share one limit
                    deadline = time.monotonic() + budget + GRACE_S
            elif kind == "raise":
                raise payload
            elif kind == "result":
                return payload


def ask_pruner(prune: Callable[[dict], bool], update: dict) -> bool:
    """Ask the pruner about an epoch; a fault there never stops a run (here, or a remote job:
    cvsweep/execution/runpod.py).

    Args:
        prune: The pruner's hook.
        update: The epoch's report.

    Returns:
        Whether the pruner stops the run (False when asking it failed).
    """
    try:
        return bool(prune(update))
    except Exception as err:
        log.warning("the pruner could not be asked after epoch %s, so the run goes on: %s", update.get("epoch"), err)
        return False


def _over_time(run_config: dict, budget: float, stage: Optional[str]) -> Result:
    if stage == failures.FIT:
        reason = (f"time budget exceeded: training.time_budget_s={budget} and {GRACE_S:g}s more passed without "
                  "training stopping at a batch end; the training process was killed")
        return failed_result(run_config, Failure(failures.TIME_BUDGET, reason, infeasible=True))
    reason = (f"time budget exceeded: loading the data and building the model took longer than "
              f"training.time_budget_s={budget} + {GRACE_S:g}s (a read that never returns?); "
              "the training process was killed")
    return failed_result(run_config, Failure(failures.DATA_ERROR, reason, infeasible=False))


def _died(run_config: dict, exitcode: Optional[int]) -> Result:
    how = f"killed by signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit status {exitcode}"
    reason = f"the training process ended without a result ({how}; stopped, or out of memory)"
    return failed_result(run_config, Failure(failures.INTERNAL_ERROR, reason, infeasible=False))


def _relay_until(conn, wanted: str) -> None:
    while True:
        try:
            kind, payload = conn.recv()
        except EOFError:
            raise RuntimeError("the training process exited while starting (see its output above)") from None
        if kind == "log":
            handle_relayed(payload)
        elif kind == wanted:
            return


# -- the child ---------------------------------------------------------------------------------
def _serve(conn, parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C: the parent decides
    # The parent's stop() before TensorFlow is imported: no run can be stopped yet, so a run
    # sent meanwhile ends at stop()'s grace kill (SIGUSR1's default would kill at once).
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    _exit_with_parent(parent_pid)
    send = _sender(conn)
    root = logging.getLogger()
    root.handlers[:] = [_PipeHandler(send)]
    root.setLevel(logging.INFO)

    from cvsweep.training.train import import_tensorflow, train

    import_tensorflow()  # warm before the first run; first: it keeps TensorFlow's start-up lines off the console
    from cvsweep.training.callbacks import StopRequest  # imports Keras

    # The parent's stop(): the run ends at its next batch end. A signal that arrives between
    # runs is cleared when the next run begins (it was sent before that run's config).
    stop = StopRequest()
    signal.signal(signal.SIGUSR1, stop.handle)
    send(("ready", None))
    while True:
        try:
            run_config, tensorboard_dir, model_dir, asks = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        stop.clear()
        try:
            result = train(run_config, progress=lambda update: send(("progress", update)),
                           tensorboard_dir=tensorboard_dir, stage=lambda name: send(("stage", name)),
                           model_dir=model_dir, prune=_asker(conn, send) if asks else None)
        except ConfigError as err:
            send(("raise", ConfigError(*err.problems)))
            continue
        send(("result", result))


def _asker(conn, send) -> Callable[[dict], bool]:
    """train()'s ``prune`` in the child: the question goes to the parent, and the run waits for
    its answer (only this thread reads the pipe while a run is in progress)."""

    def ask(update: dict) -> bool:
        send(("prune?", update))
        return bool(conn.recv())

    return ask


def _sender(conn) -> Callable:
    lock = threading.Lock()  # log records may come from TensorFlow's threads too

    def send(message) -> None:
        with lock:
            conn.send(message)

    return send


class _PipeHandler(logging.handlers.QueueHandler):
    """Log records go to the parent, which hands them to its own loggers (a trial's app.log)."""

    def __init__(self, send) -> None:
        super().__init__(None)
        self._send = send

    def enqueue(self, record) -> None:
        self._send(("log", record))


def _exit_with_parent(parent_pid: int) -> None:
    """A child whose parent died (kill -9) stops training at once instead of running on."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="cvsweep-parent-watch", daemon=True).start()


@functools.cache
def shared() -> TrainingProcess:
    """The process's one training child, made on first use (local trials of a sweep share it,
    and its warm TensorFlow): a resource, not state handed between callers.

    Returns:
        The same ``TrainingProcess`` on every call in this process.
    """
    return TrainingProcess()
