"""File descriptor 2 caught for a moment: what C++ libraries print there (TensorFlow's start-up
lines) goes to the run's log files instead of the console.

TensorFlow 2.21 writes at import through two copies of absl's logging that are not set up yet
("All log messages before absl::InitializeLog() ...", oneDNN, "Could not find cuda drivers"),
which TF_CPP_MIN_LOG_LEVEL does not reach, and "failed call to cuInit" at ERROR level when it
first looks for GPUs on a machine without one. Only level 3 would hide that line, and with it
every later TensorFlow error, so the import and the first device lookup run with fd 2 caught.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def stderr_to_log_files(logger_name: str) -> Iterator[None]:
    """Send fd 2 to a temporary file for the block, then write what arrived to the log files.

    The lines go to the root logger's file handlers (the run's or trial's log), one record per
    line, never to the console.

    Args:
        logger_name: The logger the records are made under.

    Yields:
        Nothing; the block runs with fd 2 redirected.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all: nothing to keep off it
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            _to_log_files(logger_name, caught.read().decode("utf-8", "replace"))


def _to_log_files(logger_name: str, text: str) -> None:
    logger = logging.getLogger(logger_name)
    for line in text.splitlines():
        if line.strip():
            record = logger.makeRecord(logger_name, logging.INFO, __file__, 0, "%s", (line,), None)
            record.files_only = True  # see handle_relayed: a training process relays it onwards
            if not write_to_log_files(record):
                logger.handle(record)


def write_to_log_files(record: logging.LogRecord) -> bool:
    """Hand the record to the root logger's file handlers only.

    Args:
        record: The log record.

    Returns:
        False if there are none (a training process, whose records go to its parent:
        cvsweep/training/process.py).
    """
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    for handler in files:
        if record.levelno >= handler.level:
            handler.handle(record)
    return bool(files)


def handle_relayed(record: logging.LogRecord) -> None:
    """Handle a record that came from a training process.

    It goes to the log files only when it was caught off fd 2 there, else it is handled as any
    record of its logger.

    Args:
        record: The relayed record.
    """
    if getattr(record, "files_only", False):
        write_to_log_files(record)
    else:
        logging.getLogger(record.name).handle(record)
