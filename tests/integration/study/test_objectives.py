"""The objectives of the one table beyond accuracy and loss: train_seconds, peak_memory_mb and
the health scores, alone and together, in real sweeps; and peak memory measured per run in
the reused training process."""

from __future__ import annotations

import copy

import optuna
import pytest
from conftest import TINY_OVERRIDES, TINY_RUN, compose_sweep, read_json, run_cli

from cvsweep.config.objectives import directions_of
from cvsweep.config.schema import OBJECTIVES, ConfigError
from cvsweep.reporting.plots import TRIAL_PLOTS
from cvsweep.sweep.preflight import check_sweep

NEW = ["train_seconds", "peak_memory_mb", "neuron_utilisation", "training_stability", "gradient_health"]


def recorded(result: dict, name: str):
    """Where result.json records an objective, read without cvsweep's own code."""
    return result["health"][name] if name in result["health"] else result["metrics"][name]


@pytest.mark.parametrize("name", NEW)
def test_each_new_objective_has_a_direction_and_refuses_a_named_pruner(name, tmp_path):
    cfg = compose_sweep(f"objective={name}", f"output_root={tmp_path}")
    check_sweep(cfg)  # the default pruner (auto) settles on none
    assert directions_of(cfg) == [OBJECTIVES[name].direction]
    with pytest.raises(ConfigError, match=f"objective={name} has no value per epoch.*hydra/sweeper/pruner=none"):
        check_sweep(compose_sweep(f"objective={name}", "hydra/sweeper/pruner=median", f"output_root={tmp_path}"))


@pytest.mark.slow
def test_one_sweep_optimises_every_new_objective_and_one_alone_with_plots_best(tmp_path):
    multi = run_cli("-m", *TINY_OVERRIDES, "hydra.sweeper.n_trials=2", "objective=train_seconds",
                    "secondary_objectives=[peak_memory_mb,neuron_utilisation,training_stability,gradient_health]",
                    "plots=none", f"output_root={tmp_path / 'multi'}")  # no pruner typed: auto settles on none
    assert multi.returncode == 0, multi.stderr
    sweep_dir = next((tmp_path / "multi" / "sweeps").iterdir())
    summary = read_json(sweep_dir / "summary.json")
    assert summary["objectives"] == NEW and summary["n_completed"] == 2
    assert summary["pruner"]["name"] == "none" and summary["pruner"]["chosen_by"] == "auto"
    assert "Pruner: none (hydra/sweeper/pruner=auto: 5 objectives" in multi.stdout + multi.stderr
    assert summary["directions"] == ["minimize", "minimize", "maximize", "maximize", "maximize"]
    study = optuna.load_study(study_name=summary["study"]["name"], storage=f"sqlite:///{tmp_path / 'multi'}/optuna.db")
    assert [d.name.lower() for d in study.directions] == summary["directions"]
    for trial in summary["trials"]:
        result = read_json(sweep_dir / trial["job"] / "result.json")
        assert trial["objective_values"] == [recorded(result, name) for name in NEW]
        assert result["metrics"]["peak_memory_mb"] > 0 and result["metrics"]["peak_memory_source"].endswith("_allocator")
    assert sorted(t.values for t in study.trials) == sorted(t["objective_values"] for t in summary["trials"])

    # Alone, and with plots=best: the best trial's plots only, and its health advice printed.
    alone = run_cli("-m", *TINY_OVERRIDES, "hydra.sweeper.n_trials=2", "objective=gradient_health",
                    "model.filters=choice(4,8)", "plots=best",
                    f"output_root={tmp_path / 'alone'}")
    assert alone.returncode == 0, alone.stderr
    sweep_dir = next((tmp_path / "alone" / "sweeps").iterdir())
    summary = read_json(sweep_dir / "summary.json")
    study = optuna.load_study(study_name=summary["study"]["name"], storage=f"sqlite:///{tmp_path / 'alone'}/optuna.db")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE and summary["n_completed"] == 2
    assert summary["pruner"] == {"name": "none", "chosen_by": "auto", "why": "objective=gradient_health has no value "
                                 "per epoch (it is known before training or only after it)"}
    for trial in summary["trials"]:
        result = read_json(sweep_dir / trial["job"] / "result.json")
        assert trial["objective_values"] == [result["health"]["gradient_health"]]
        assert trial["advice"] == result["health"]["advice"]
        plotted = sorted(p.name for p in (sweep_dir / trial["job"]).glob("*.png"))
        is_best = trial["job"] == summary["best"]["job"]
        assert plotted == (sorted(TRIAL_PLOTS) if is_best else []), (trial["job"], plotted)
    assert summary["best_model"]["trial_dir"] == str((sweep_dir / summary["best"]["job"]).resolve())
    assert (sweep_dir / "optimization_history.png").exists()  # the sweep's plots as with plots=summary
    assert f"Health advice for job {summary['best']['job']}:" in alone.stdout
    assert "<th>advice</th>" in (sweep_dir / "report.html").read_text()
    assert "<p>Pruner: none (objective=gradient_health has no value per epoch" in (sweep_dir / "report.html").read_text()


@pytest.mark.slow
def test_peak_memory_is_each_runs_own_in_the_reused_training_process():
    """Small, big, small in one training process: the big run's peak is far higher, and the
    small run after it measures what it measured before (the peak is reset, and the big
    run's leftovers collected, before each fit)."""
    from cvsweep.execution.executors import LocalExecutor

    big = copy.deepcopy(TINY_RUN)
    big["model"].update(conv_layers=2, filters=128, dense_layers=1)
    big["training"].update(batch_size=512, epochs=1)
    executor = LocalExecutor(None)
    runs = [executor.run(copy.deepcopy(config)) for config in (TINY_RUN, big, TINY_RUN)]
    assert all(r["status"] == "completed" for r in runs), [r["reason"] for r in runs]
    small, large, small_again = (r["metrics"] for r in runs)
    assert small["peak_memory_source"] == large["peak_memory_source"] in ("cpu_allocator", "gpu_allocator")
    assert 0 < small["peak_memory_mb"] and large["peak_memory_mb"] > 20 * small["peak_memory_mb"]
    # Within half, or a megabyte: a tiny run's peak is under a megabyte, where the allocator's
    # rounding alone moves it by half; the big run's peak, if left behind, is over 20 times it.
    assert small_again["peak_memory_mb"] == pytest.approx(small["peak_memory_mb"], rel=0.5, abs=1.0)
    assert all(m["peak_rss_mb"] > large["peak_memory_mb"] for m in (small, large, small_again))  # the whole process
