"""training.precision: a schema value, refused on hardware that cannot run it (here, before any
work; in preflight for local runs), set per run and recorded with the device."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import compose

from cvsweep.reporting.result_diff import without_timings
from cvsweep.config.schema import ConfigError, Precision
from cvsweep.config.validate import load_run_config
from cvsweep.training import precision, provenance
from cvsweep.training.train import train

CPU_WITH_BF16 = frozenset({"avx2", "avx512f", "avx512_bf16"})
CPU_WITHOUT_BF16 = frozenset({"avx2", "avx512f"})


def _here(policy: Precision):
    """Why this machine cannot run ``policy`` (None: it can)."""
    try:
        precision.check(policy)
    except ConfigError as err:
        return str(err)
    return None


@pytest.fixture
def float32_afterwards():
    """The policy is process-wide: leave it as every other test expects it."""
    yield
    import keras

    keras.mixed_precision.set_global_policy("float32")


def test_the_schema_refuses_an_unknown_precision_naming_the_allowed_ones(tiny_run):
    tiny_run["training"]["precision"] = "float16"
    with pytest.raises(ConfigError) as refused:
        load_run_config(tiny_run)
    message = str(refused.value)
    assert "training.precision" in message
    assert all(policy.value in message for policy in Precision)


@pytest.mark.parametrize("policy,gpus,cpu_flags,fragment", [
    (Precision.mixed_float16, [{"name": "Tesla P100", "compute_capability": "6.0"}], None,
     "needs a GPU of compute capability 7.0 or higher; this one (Tesla P100) has 6.0"),
    (Precision.mixed_bfloat16, [{"name": "Tesla T4", "compute_capability": "7.5"}], None,
     "compute capability 8.0 or higher; this one (Tesla T4) has 7.5; use training.precision=float32, or mixed_float16"),
    (Precision.mixed_float16, [], CPU_WITH_BF16, "needs a GPU (compute capability 7.0 or higher)"),
    (Precision.mixed_bfloat16, [], CPU_WITHOUT_BF16, "has no bfloat16 instructions"),
])
def test_hardware_that_cannot_run_a_policy_is_named_with_the_reason(policy, gpus, cpu_flags, fragment):
    reason = precision.problem(policy, gpus, "the device", cpu_flags)
    assert reason.startswith(f"training.precision={policy.value}: ") and fragment in reason


@pytest.mark.parametrize("policy,gpus,cpu_flags", [
    (Precision.float32, [{"name": "Tesla K80", "compute_capability": "3.7"}], CPU_WITHOUT_BF16),
    (Precision.mixed_float16, [{"name": "Tesla V100", "compute_capability": "7.0"}], None),
    (Precision.mixed_bfloat16, [{"name": "NVIDIA A100", "compute_capability": "8.0"}], CPU_WITHOUT_BF16),
    (Precision.mixed_bfloat16, [{"name": "NVIDIA H100", "compute_capability": "9.0"}], None),
    (Precision.mixed_bfloat16, [], CPU_WITH_BF16),
])
def test_hardware_that_can_run_a_policy_passes(policy, gpus, cpu_flags):
    assert precision.problem(policy, gpus, "the device", cpu_flags) is None


def test_a_run_this_machine_cannot_train_fails_before_any_work_naming_the_setting(tiny_run):
    refused = next((p for p in Precision if _here(p) is not None), None)
    if refused is None:
        pytest.skip("this machine runs every precision policy (a GPU of compute capability >= 8.0)")
    tiny_run["training"]["precision"] = refused.value
    result = train(tiny_run)
    assert result["status"] == "failed" and result["infeasible"] is True
    assert result["failure"]["code"] == "invalid_config"
    assert result["failure"]["problems"][0].startswith(f"training.precision={refused.value}: ")
    assert result["metrics"] == {} and result["data"] == {}  # refused before the data was loaded


def test_preflight_refuses_it_for_local_runs_only(tmp_path):
    from cvsweep.sweep.preflight import check_run

    refused = next((p for p in Precision if _here(p) is not None), None)
    if refused is None:
        pytest.skip("this machine runs every precision policy")
    with pytest.raises(ConfigError, match=f"training.precision={refused.value}: "):
        check_run(compose(f"training.precision={refused.value}", f"output_root={tmp_path}"))


def test_mixed_float16_compiles_with_loss_scaling_and_a_float32_output(tiny_run, float32_afterwards):
    """Keras wraps the optimizer in compile(); nothing is fitted here (float16 on a CPU is slow)."""
    import keras

    from cvsweep.models.architectures import build
    from cvsweep.training.train import _compile

    tiny_run["training"]["precision"] = "mixed_float16"
    cfg = load_run_config(tiny_run)
    keras.mixed_precision.set_global_policy(cfg.training.precision.value)
    model = build(cfg, (8, 8, 1))
    _compile(model, cfg.training, splits=None)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.layers[0].compute_dtype == "float16" and model.layers[0].variable_dtype == "float32"
    assert model.layers[-1].compute_dtype == "float32"
    assert model.outputs[0].dtype == "float32"


@pytest.mark.slow
def test_mixed_bfloat16_trains_and_a_later_float32_run_is_untouched(tiny_run, tmp_path, float32_afterwards):
    if _here(Precision.mixed_bfloat16) is not None:
        pytest.skip(_here(Precision.mixed_bfloat16))
    import keras

    before = train(tiny_run)
    tiny_run["training"].update(precision="mixed_bfloat16", epochs=1)
    mixed = train(tiny_run, model_dir=str(tmp_path))
    assert mixed["status"] == "completed", mixed["reason"]
    assert mixed["executed_on"]["device"]["precision"] == "mixed_bfloat16"
    json.dumps(mixed, allow_nan=False)  # diagnostics of bfloat16 activations are plain floats too
    model = keras.models.load_model(tmp_path / "model.keras")
    assert model.layers[0].compute_dtype == "bfloat16" and model.layers[-1].compute_dtype == "float32"
    assert model.predict(np.zeros((2, 8, 8, 1)), verbose=0).dtype == "float32"

    tiny_run["training"].update(precision="float32", epochs=2)
    after = train(tiny_run)  # the policy is reset: the run is the one before, bit for bit
    assert after["executed_on"]["device"]["precision"] == "float32"
    for part in ("health", "diagnostics"):
        assert after[part] == before[part]
    assert without_timings(after["metrics"]) == without_timings(before["metrics"])  # timings and memory peaks vary


def test_executed_on_names_the_gpus_tf32_and_the_policy(tiny_run):
    tiny_run["training"]["epochs"] = 1
    device = train(tiny_run)["executed_on"]["device"]
    assert device["precision"] == "float32"
    assert device["gpus"] == provenance.gpus()
    if device["gpus"]:  # deterministic (the default) turns TF32 off on a GPU
        assert device["tf32"] is False and all(gpu["name"] and gpu["compute_capability"] for gpu in device["gpus"])
    else:
        assert device["type"] == "CPU" and device["gpus"] == [] and device["tf32"] is None
