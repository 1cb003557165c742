"""``training.precision`` on the hardware a run trains on: whether it can run the Keras mixed
precision policy, asked where training happens (train(), a worker) and, for local runs, by
preflight before the sweep.

Mixed precision exists for speed, so a policy is refused where it would be slower than float32.
TensorFlow trains on the first GPU it sees, else on the CPU:
- a GPU needs tensor cores for the 16-bit type: compute capability 7.0 (Volta) for float16,
  8.0 (Ampere) for bfloat16;
- a CPU has no fast float16 kernels: mixed_float16 is refused there (it trains several times
  slower than float32, where mixed_bfloat16 with the CPU's instructions is faster);
- bfloat16 on a CPU is fast with its instructions (AVX512-BF16 or AMX) and emulated without:
  refused on a CPU whose flags show neither.
"""

from __future__ import annotations

from typing import Optional

from cvsweep.config.schema import ConfigError, Precision
from cvsweep.training import provenance
from cvsweep.training.tf_runtime import import_tensorflow_off_console

# The lowest GPU compute capability whose tensor cores run the policy's 16-bit type.
MIN_COMPUTE_CAPABILITY = {Precision.mixed_float16: (7, 0), Precision.mixed_bfloat16: (8, 0)}
CPU_BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def check(precision: Precision) -> None:
    """Refuse a precision this machine cannot run; float32 runs everywhere and needs no TensorFlow.

    Args:
        precision: The run's ``training.precision``.

    Raises:
        ConfigError: Naming training.precision, why, and what to use instead.
    """
    if precision == Precision.float32:
        return
    import_tensorflow_off_console()  # before provenance asks TensorFlow for its GPUs
    reason = problem(precision, provenance.gpus(), provenance.device()["name"], provenance.cpu_flags())
    if reason is not None:
        raise ConfigError(reason)


def problem(precision: Precision, gpus: list[dict], device_name: str, cpu_flags: Optional[frozenset]) -> Optional[str]:
    """Why ``precision`` cannot run on these GPUs (the first trains) or, with none, on this CPU.

    Args:
        precision: The policy.
        gpus: The GPUs TensorFlow sees (see ``provenance.gpus``).
        device_name: The device's name, for the message.
        cpu_flags: The CPU's feature flags, or None when unknown (then bfloat16 is allowed).

    Returns:
        The message, or None when it can run.
    """
    if precision == Precision.float32:
        return None
    key, needed = f"training.precision={precision.value}", MIN_COMPUTE_CAPABILITY[precision]
    wanted = ".".join(map(str, needed))
    if gpus:
        have = gpus[0]["compute_capability"]
        if have is None or _capability(have) < needed:
            return (f"{key}: needs a GPU of compute capability {wanted} or higher; this one ({gpus[0]['name']}) "
                    f"has {have}; use training.precision=float32" +
                    (", or mixed_float16 (7.0)" if precision == Precision.mixed_bfloat16
                     and have is not None and _capability(have) >= (7, 0) else ""))
        return None
    if precision == Precision.mixed_float16:
        fallback = " or mixed_bfloat16" if cpu_flags is None or cpu_flags & CPU_BFLOAT16_FLAGS else ""
        return (f"{key}: needs a GPU (compute capability {wanted} or higher) and TensorFlow sees none; on a CPU "
                f"({device_name}) float16 has no fast kernels and trains slower than float32; use "
                f"training.precision=float32{fallback} here")
    if cpu_flags is not None and not cpu_flags & CPU_BFLOAT16_FLAGS:
        return (f"{key}: this CPU ({device_name}) has no bfloat16 instructions ({', '.join(sorted(CPU_BFLOAT16_FLAGS))}) "
                f"and TensorFlow sees no GPU, so bfloat16 would be emulated, slower than float32; use "
                f"training.precision=float32, or a GPU of compute capability {wanted} or higher")
    return None


def _capability(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))
