"""Forked workers' console output, passed on by the sweep process: a line a worker prints (its
trial's log lines) then goes through the sweep's own sys.stdout or sys.stderr, which the live
progress display redirects to print above itself; written straight to the terminal, it would
be drawn over."""

from __future__ import annotations

import os
import sys
import threading


class OutputRelay:
    """Pipes that carry the forked workers' stdout and stderr to the sweep process's streams."""

    def __init__(self) -> None:
        """Pipes for the workers' stdout and stderr; create before forking them."""
        self.pipes = {name: os.pipe() for name in ("stdout", "stderr")}

    def attach_worker(self) -> None:
        """In a worker, after the fork: fds 1 and 2 write into the pipes."""
        for fd, (_, write_end) in zip((1, 2), self.pipes.values()):
            os.dup2(write_end, fd)

    def start(self) -> None:
        """In the sweep process, once its workers are forked (a thread running during a fork
        could leave a lock taken in the child): copy every line to the sweep's own stream."""
        for name, (read_end, _) in self.pipes.items():
            threading.Thread(target=_copy_lines, args=(read_end, name), name=f"cvsweep-relay-{name}",
                             daemon=True).start()


def _copy_lines(read_end: int, stream_name: str) -> None:
    with open(read_end, encoding="utf-8", errors="replace", closefd=False) as lines:
        for line in lines:
            stream = getattr(sys, stream_name)  # looked up each time: the display swaps it
            stream.write(line)
            stream.flush()
