"""Peak memory of a run's fit (the ``peak_memory_mb`` objective), measured where it can be
measured honestly, and null with the reason where it cannot:

- on a GPU: TensorFlow's allocator peak on GPU:0 (``get_memory_info(...)["peak"]``), reset
  before the fit (``reset_memory_stats``): the tensors the fit held at once. Source
  ``gpu_allocator``; the host's peak is recorded beside it as ``peak_rss_mb``.
- on a CPU (Linux): the training process's peak resident set size (VmHWM in
  /proc/self/status) during the fit. The process serves many runs one after another
  (cvsweep/training/process.py), so the peak is reset before each fit by writing 5 to
  /proc/self/clear_refs (Linux's documented reset of VmHWM); without the reset, one run's
  peak would carry into every later run's. Source ``rss_hwm``. It counts all the process
  holds (TensorFlow itself, the data, the model; about 0.5-1 GB before any model), so it
  compares runs in like processes, and a bigger model or batch shows as a bigger peak.
- elsewhere (no /proc, or a reset the system refuses): ``peak_memory_mb`` is null and
  ``peak_memory_source`` says why; such a result has no value for the objective.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")
RESET_HIGH_WATER_MARK = "5"  # man 5 proc: "5" resets the peak resident set size


class PeakMemory:
    """Created just before the fit (it resets the peaks), read just after it."""

    def __init__(self, tf):
        self.tf = tf
        self.gpu = bool(tf.config.list_logical_devices("GPU"))
        if self.gpu:
            tf.config.experimental.reset_memory_stats("GPU:0")
        self.rss_unavailable = _reset_rss_peak()

    def read(self) -> dict:
        rss = None if self.rss_unavailable else _rss_peak_mb()
        if self.gpu:
            peak = self.tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
            return {"peak_memory_mb": round(peak, 1), "peak_memory_source": "gpu_allocator", "peak_rss_mb": rss}
        if rss is None:
            return {"peak_memory_mb": None,
                    "peak_memory_source": f"unavailable: {self.rss_unavailable or 'no VmHWM in ' + str(STATUS)}"}
        return {"peak_memory_mb": rss, "peak_memory_source": "rss_hwm"}


def _reset_rss_peak() -> Optional[str]:
    """None when the peak was reset, else why it could not be."""
    try:
        CLEAR_REFS.write_text(RESET_HIGH_WATER_MARK)
    except OSError as err:
        return f"cannot reset the peak resident set size through {CLEAR_REFS} ({err.strerror or err})"
    return None


def _rss_peak_mb() -> Optional[float]:
    try:
        found = re.search(r"^VmHWM:\s+(\d+) kB", STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return round(int(found.group(1)) / 1024, 1) if found else None
