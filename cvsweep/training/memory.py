"""Peak memory of a run's fit (the ``peak_memory_mb`` objective), measured where it can be
measured honestly, and null with the reason where it cannot.

``peak_memory_mb``: the peak of TensorFlow's allocator on the device that trains (GPU:0 on a
GPU, else CPU:0), reset just before the fit (``reset_memory_stats``) and read just after it
(``get_memory_info(...)["peak"]``): the most memory TensorFlow's tensors held at once
during the fit (weights, optimizer state, the splits as the tf.data pipeline holds them, a
batch's activations and gradients). Source ``gpu_allocator`` or ``cpu_allocator``. After a
full garbage collection before the reset, it depends on the run alone, not on what the
process did before: the training process serves many runs one after another
(cvsweep/training/process.py). It varies by some percent between reruns of one config (TensorFlow
runs independent ops concurrently).

``peak_rss_mb`` (Linux): the process's peak resident set size during the fit, VmHWM of
/proc/self/status after a reset by writing 5 to /proc/self/clear_refs (man 5 proc). It is
what the host had to provide, so it counts everything the process holds, TensorFlow itself
and what earlier runs in it left allocated (a small run after a big one keeps the big one's
level): a host figure, not a
comparison between runs, hence not the objective. Null where /proc is missing or refuses.
"""

from __future__ import annotations

import gc
import re
from pathlib import Path
from typing import Optional

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")
RESET_HIGH_WATER_MARK = "5"  # man 5 proc: writing "5" resets the peak resident set size


class PeakMemory:
    """Created just before the fit (it resets the peaks), read just after it."""

    def __init__(self, tf):
        self.tf = tf
        self.device = "GPU:0" if tf.config.list_logical_devices("GPU") else "CPU:0"
        # Earlier runs' tensors wait in reference cycles for a full collection (train() skips
        # it, see clear_session there), and the allocator would count them into this peak.
        gc.collect()
        try:
            tf.config.experimental.reset_memory_stats(self.device)
            self.allocator_unavailable = None
        except (ValueError, RuntimeError) as err:  # an allocator that keeps no statistics
            self.allocator_unavailable = f"TensorFlow keeps no memory statistics for {self.device} ({err})"
        self.rss_reset = _reset_rss_peak()

    def read(self) -> dict:
        """The peaks since this object was created.

        Returns:
            ``peak_memory_mb`` and ``peak_memory_source`` (None and why, where the allocator keeps no
            statistics), and ``peak_rss_mb`` (None where the reset was refused).
        """
        if self.allocator_unavailable:
            peak, source = None, f"unavailable: {self.allocator_unavailable}"
        else:
            peak = round(self.tf.config.experimental.get_memory_info(self.device)["peak"] / 2**20, 1)
            source = f"{self.device.split(':')[0].lower()}_allocator"
        return {"peak_memory_mb": peak, "peak_memory_source": source,
                "peak_rss_mb": _rss_peak_mb() if self.rss_reset else None}


def _reset_rss_peak() -> bool:
    try:
        CLEAR_REFS.write_text(RESET_HIGH_WATER_MARK)
    except OSError:  # not Linux, or a kernel that refuses: no peak rather than a stale one
        return False
    return True


def _rss_peak_mb() -> Optional[float]:
    try:
        found = re.search(r"^VmHWM:\s+(\d+) kB", STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return round(int(found.group(1)) / 1024, 1) if found else None
