"""Mutation check: break one thing the tests promise to guard, and see that they fail.

    uv run python tests/mutations.py                 # every mutant, then a table
    uv run python tests/mutations.py --only NAME     # one mutant (repeatable)
    uv run python tests/mutations.py --tests-from REV --only NAME   # the tests of an older commit

Each mutant is (name, file, exact original snippet, replacement, node ids that must catch it).
The working tree (tracked and untracked files, uncommitted changes included) is copied into a
temporary folder that shares this checkout's .venv; the mutant is applied there and only its
tests run, so this checkout is never touched. Before the mutants, the same tests run unmutated
(they must pass, or a "caught" would mean nothing). Exit 1 if any mutant survives.
Not a test module (pytest collects test_*.py only), and not part of CI.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__test__ = False  # for pytest, should anyone point it at this file

REPO = Path(__file__).resolve().parents[1]
LOOP = "cvsweep/sweep/loop.py"
STUDY_TRIALS = "cvsweep/sweep/study_trials.py"
UNIT_LOOP = "tests/unit/sweep/test_loop.py::"

MUTANTS = [
    ("one-trial-in-flight", LOOP,
     "free = ctx.settings.n_jobs - len(ctx.running)", "free = 1 - len(ctx.running)",
     [UNIT_LOOP + "test_n_jobs_trials_are_in_flight",
      "tests/integration/execution/test_remote.py::test_remote_sweep_keeps_jobs_in_flight_and_never_writes_the_key"]),
    ("fingerprint-mismatch-unchecked", "cvsweep/execution/payload.py",
     "    if computed != claimed:\n", "    if False:\n",
     ["tests/integration/execution/test_hostile_worker_input.py::test_another_valid_config_under_the_old_fingerprint_is_refused",
      "tests/integration/execution/test_hostile_worker_input.py::test_a_valid_input_with_one_thing_changed_is_refused"]),
    ("plain-writes", "cvsweep/jsonio.py",
     "    tmp = _new_hidden_file(path, suffix)\n    try:\n        yield tmp\n", "    tmp = path\n    try:\n        yield tmp\n",
     ["tests/integration/sweep/test_resume.py::test_kills_inside_writes_leave_only_whole_files"]),
    ("nan-instead-of-failure", "cvsweep/sweep/trial.py",
     '        raise TrialFailed(f"{result[\'reason\']} (see {path})", infeasible=bool(result.get("infeasible")))',
     '        return float("nan")',
     ["tests/e2e/test_cli_end_to_end.py::test_infeasible_trials_are_recorded_and_the_sweep_goes_on",
      "tests/integration/execution/test_remote.py::test_a_broken_first_attempt_uses_up_nothing_of_the_budget"]),
    # Smaller items of issue 19.
    ("help-fails-to-compose", "conf/config.yaml",
     "  - dataset: digits\n", "  - dataset: no_such_dataset\n",
     ["tests/integration/config/test_config.py::test_cli_help_and_info_do_not_import_tensorflow"]),
    ("dropped-connections-never-dropped", "remote/emulator.py",
     'drop = emulator.faults.take("drop_connections")', "drop = False",
     ["tests/integration/execution/test_remote.py::test_dropped_connections_are_retried"]),
    ("gtsrb-values-overridden-by-its-base", "conf/dataset/gtsrb.yaml",
     "  - image_folder\n  - _self_\n", "  - _self_\n  - image_folder\n",
     ["tests/integration/config/test_config.py::test_every_option_composes_and_passes_value_checks[dataset=gtsrb]"]),
    ("unpickler-allows-everything", "cvsweep/data/text.py",
     "        if (module, name) not in self.ALLOWED:\n", "        if False:\n",
     ["tests/integration/data/test_more_datasets.py::test_a_text_file_cannot_run_code"]),
    # Caught already when the audit ran; kept so that they stay caught.
    ("fingerprint-key-dropped", "cvsweep/config/fingerprint.py",
     "canonical_json(run_config).encode", 'canonical_json({k: v for k, v in run_config.items() if k != "health"}).encode',
     ["tests/unit/config/test_fingerprint.py::test_every_setting_in_the_schema_changes_the_fingerprint"]),
    ("parity-seed-changed", "remote/handler.py",
     "        result = await train_in_child(run_config, ",
     '        run_config["training"]["seed"] += 1\n        result = await train_in_child(run_config, ',
     ["tests/integration/execution/test_remote.py::test_parity_local_and_remote_are_bit_identical"]),
    ("divergence-unchecked", "cvsweep/training/train.py",
     'if any(value is None for value in history.get("loss", [])):', "if False:",
     ["tests/integration/training/test_train.py::test_divergence_is_a_failed_result_not_an_exception"]),
    # Issue 24, one rule for which trial is best, and evaluate's comparison.
    ("evaluate-equal-within-one", "cvsweep/cli/evaluate.py",
     "        same = recorded.get(key) == now[key]\n", "        same = abs(recorded.get(key) - now[key]) < 1.0\n",
     ["tests/integration/test_evaluate_figures.py::test_recorded_figures_a_hundredth_off_are_reported_as_differing"]),
    ("ranking-ties-to-the-later-trial", "cvsweep/study/ranking.py",
     "    return sorted(candidates, key=", "    return sorted(candidates[::-1], key=",
     ["tests/unit/study/test_ranking.py::test_ties_keep_the_order_given_and_directions_turn_the_order",
      "tests/unit/study/test_ranking.py::test_every_caller_names_the_same_best_trials"]),
    ("service-best-ignores-constraints", "cvsweep/service/snapshot.py",
     'ranking.best_row(ended, request["directions"])',
     'ranking.best([r for r in ended if r["objective_values"]], request["directions"])',
     ["tests/unit/study/test_ranking.py::test_every_caller_names_the_same_best_trials"]),
    # Issue 24, import circles and one definition of each thing.
    ("circle-through-a-function-level-import", "cvsweep/config/objective_table.py",
     "from typing import Optional\n",
     "from typing import Optional\n\n\ndef _late():\n    from cvsweep.config import schema  # noqa: F401\n",
     ["tests/unit/test_layout.py::test_no_module_imports_itself_through_others"]),
    ("environment-ignored-for-a-schema-default", "cvsweep/config/schema.py",
     "    if variable in os.environ:\n", "    if False:\n",
     ["tests/unit/config/test_schema_split.py::test_the_runpod_url_is_the_schemas_default_unless_the_environment_names_another"]),
    ("config-error-drops-the-fix", "cvsweep/config/schema.py",
     "            super().__init__(problems[0], **details)\n",
     "            super().__init__(problems[0], key=details.get(\"key\"))\n",
     ["tests/unit/config/test_schema_split.py::test_a_problem_in_a_few_words_gets_the_key_the_value_and_the_fix"]),
    # The execution layer split (issue 24): a stop that arrives during a retried status request.
    ("no-cancel-when-stopped-during-a-status-retry", "cvsweep/execution/runpod.py",
     "            except JobInterrupted:\n                self._cancel(job_id)\n",
     "            except JobInterrupted:\n",
     ["tests/unit/execution/test_runpod_interrupt.py::test_a_stop_during_a_retried_status_request_cancels_the_job"]),
    # The sweep loop's seams, each caught in-process by the loop's unit tests.
    ("loop-streak-not-reset", LOOP,
     "        ctx.streak.clear()\n", "        pass\n",
     [UNIT_LOOP + "test_a_success_resets_the_failure_streak"]),
    ("loop-n-jobs-ignored", LOOP,
     "free = ctx.settings.n_jobs - len(ctx.running)", "free = ctx.settings.n_trials - len(ctx.running)",
     [UNIT_LOOP + "test_n_jobs_trials_are_in_flight"]),
    ("loop-failed-trials-counted", STUDY_TRIALS,
     "state=studies.INFEASIBLE if infeasible else TrialState.FAIL", "state=studies.INFEASIBLE",
     [UNIT_LOOP + "test_failed_trials_use_up_nothing_of_n_trials"]),
    ("loop-deadline-ignored", LOOP,
     "if ctx.deadline is None or ctx.out_of_time or ctx.clock() < ctx.deadline:",
     "if ctx.deadline is None or ctx.out_of_time or True:",
     [UNIT_LOOP + "test_the_deadline_starts_nothing_new_and_ends_the_sweep_early"]),
    ("budget-ignored", LOOP,
     "    if budget is None or wanted <= 0:\n", "    if True:\n",
     ["tests/unit/sweep/test_budget.py::test_the_budget_stops_the_next_trial_that_would_pass_it"]),
    ("budget-in-flight-not-estimated", LOOP,
     "left = budget - ctx.spent.usd - (mean or 0.0) * len(ctx.running)", "left = budget - ctx.spent.usd",
     ["tests/unit/sweep/test_budget.py::test_the_trials_in_flight_count_at_the_mean_cost_of_the_priced_ones"]),
    ("trial-cost-not-recorded", STUDY_TRIALS,
     'record = {"host": socket.gethostname(), "path": str(result.resolve()), **spent}',
     'record = {"host": socket.gethostname(), "path": str(result.resolve())}',
     ["tests/unit/sweep/test_budget.py::test_each_trial_records_its_cost_and_a_local_one_none",
      "tests/unit/sweep/test_budget.py::test_a_rerun_of_a_spent_study_starts_nothing_and_exits_0"]),
    ("loop-interrupt-keeps-asking", "cvsweep/sweep/context.py",
     "return (self.interrupts.signum is not None or self.out_of_time", "return (self.out_of_time",
     [UNIT_LOOP + "test_an_interrupt_stops_the_asks_and_the_jobs_in_flight"]),
    ("loop-interrupt-not-passed-on", LOOP,
     "        launcher.interrupt()  # its workers", "        pass  # its workers",
     [UNIT_LOOP + "test_an_interrupt_stops_the_asks_and_the_jobs_in_flight"]),
    ("loop-pruned-told-fail", STUDY_TRIALS,
     "self.study.tell(trial, state=TrialState.PRUNED)", "self.study.tell(trial, state=TrialState.FAIL)",
     [UNIT_LOOP + "test_pruned_trials_count_as_finished_and_are_told_pruned"]),
    ("loop-full-disk-trial-kept-running", LOOP,
     "        stop_on_full_disk(ctx, trials, full, ctx.sweep_dir / str(run.job))\n        release(ctx, trials, run)\n",
     "        stop_on_full_disk(ctx, trials, full, ctx.sweep_dir / str(run.job))\n",
     ["tests/unit/sweep/test_full_disk_stop.py::"
      "test_a_job_that_meets_a_full_disk_stops_the_sweep_and_its_trial_is_released_at_once"]),
    ("loop-failure-rate-unchecked", LOOP,
     "    if ctx.failures and len(ctx.failures) / ctx.told > ctx.settings.max_failure_rate:",
     "    if False:",
     [UNIT_LOOP + "test_the_failure_rate_raises_the_first_failure"]),
    # Defaults that adapt: the pruner auto settles on, and worker data's shape for max_params.
    ("auto-pruner-ignores-the-value-per-epoch", "cvsweep/study/pruning.py",
     "    if metric is None:\n        return AutoChoice(\"none\"", "    if False:\n        return AutoChoice(\"none\"",
     ["tests/unit/study/test_auto_pruner.py::test_every_objective_sweeps_with_the_default_pruner"]),
    ("worker-data-read-here-for-its-shape", "cvsweep/sweep/trial.py",
     "    if not pin:  # a download, or data on the worker", "    if not pin and dataset.path is None:  # a download",
     ["tests/unit/study/test_max_params_on_worker_data.py::test_a_trial_on_worker_data_takes_its_shape_without_reading_the_path"]),
    # The worker's own limits: the operator's caps and stores, and a result RunPod would drop.
    ("worker-caps-unchecked", "cvsweep/execution/payload.py",
     "    if over:\n        raise PayloadError(\"over_worker_caps\"", "    if False:\n        raise PayloadError(\"over_worker_caps\"",
     ["tests/integration/execution/test_hostile_worker_input.py::test_a_job_over_the_operators_caps_is_refused_before_training"]),
    ("any-store-allowed", "cvsweep/execution/payload.py",
     "            if refusal:\n", "            if False:\n",
     ["tests/integration/execution/test_hostile_worker_input.py::test_the_worker_uploads_only_to_stores_its_operator_allows"]),
    ("result-size-unchecked", "remote/handler.py",
     "    if size <= cap:\n        return result\n    if isinstance", "    if True:\n        return result\n    if isinstance",
     ["tests/integration/execution/test_model_transport.py::test_a_result_over_the_cap_leaves_its_inline_model_out_with_the_reason"]),
    # The remote client as RunPod behaves: RUNNING is running, the outage wait bounded by the TTL,
    # RunPod's bounds and endpoint ids checked before any request.
    ("running-not-counted-as-running", "cvsweep/execution/runpod.py",
     'RUNNING_STATES = ("IN_PROGRESS", "RUNNING")', 'RUNNING_STATES = ("IN_PROGRESS",)',
     ["tests/unit/execution/test_runpod_answers.py::test_running_is_relayed_and_asks_the_pruner_as_in_progress_does",
      "tests/unit/execution/test_runpod_answers.py::test_a_killed_sweeps_running_job_is_collected_with_no_second_run"]),
    ("outage-waited-out-past-the-ttl", "cvsweep/execution/remote_jobs.py",
     '    ends = [entry["submitted_at"] + entry["ttl_s"]]\n', '    ends = [entry["submitted_at"] + 100 * entry["ttl_s"]]\n',
     ["tests/unit/execution/test_runpod_answers.py::test_a_status_outage_is_waited_out_only_while_runpod_can_still_answer"]),
    ("ttl-not-checked-against-the-timeout", "cvsweep/config/validate.py",
     "ttl < timeout + QUEUE_MARGIN_S", "ttl < timeout",
     ["tests/unit/config/test_runpod_policy_settings.py::"
      "test_a_ttl_that_cannot_cover_the_execution_timeout_is_refused_in_one_line_naming_both"]),
    ("endpoint-id-not-checked", "cvsweep/config/validate.py",
     "    if endpoint_id and not ENDPOINT_ID.fullmatch(str(endpoint_id)):", "    if False:",
     ["tests/unit/config/test_runpod_policy_settings.py::"
      "test_an_endpoint_id_that_is_not_one_is_refused_before_any_request"]),
]

# The tests of the commit before issue 19 that stood for each mutant (--tests-from).
def _flat(node_ids: list[str]) -> list[str]:
    """Today's node ids as they were when every test file sat in tests/ itself."""
    return [re.sub(r"^tests/(?:unit|integration|e2e)/(?:[a-z_]+/)?", "tests/", node) for node in node_ids]


BEFORE = {
    "one-trial-in-flight": _flat(MUTANTS[0][4]),
    "fingerprint-mismatch-unchecked": ["tests/test_hostile_worker_input.py"],
    "plain-writes": ["tests/test_resume.py::test_kills_at_any_moment_leave_only_whole_files"],
    "help-fails-to-compose": _flat(MUTANTS[4][4]),
    "dropped-connections-never-dropped": _flat(MUTANTS[5][4]),
    "gtsrb-values-overridden-by-its-base": _flat(MUTANTS[6][4]),
}


def copy_tree(dest: Path, tests_from: str | None) -> None:
    """This working tree as it is now (tracked and untracked, not ignored), sharing .venv."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_symlink():  # cvsweep/conf -> ../conf: a link, as in the checkout
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).symlink_to(os.readlink(source))
        elif source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / ".venv").symlink_to(REPO / ".venv")  # no reinstall
    if tests_from:
        shutil.rmtree(dest / "tests")
        archive = subprocess.run(["git", "archive", tests_from, "tests"], cwd=REPO, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)


def apply(dest: Path, path: str, original: str, replacement: str) -> None:
    target = dest / path
    text = target.read_text()
    if text.count(original) != 1:
        raise SystemExit(f"{path}: the snippet occurs {text.count(original)} times, not once: {original!r}")
    target.write_text(text.replace(original, replacement))


def run_tests(dest: Path, node_ids: list[str]) -> tuple[int, float, str]:
    # The copy first on sys.path, before the editable install that points at this checkout.
    env = {**os.environ, "PYTHONPATH": str(dest), "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.monotonic()
    # One process (-n 0): a mutant's few tests, and -x's exit status stays pytest's 1.
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "pytest", "-q", "-x", "-n", "0",
                           "-p", "no:cacheprovider", *node_ids], cwd=dest, env=env, capture_output=True, text=True)
    return proc.returncode, time.monotonic() - started, (proc.stdout + proc.stderr).strip().splitlines()[-1:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=[m[0] for m in MUTANTS], help="run only this mutant")
    parser.add_argument("--tests-from", metavar="REV", help="the tests of another commit (with BEFORE's node ids)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the same tests")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.only or m[0] in args.only]
    if args.tests_from:
        chosen = [(n, f, o, r, BEFORE.get(n, ids)) for n, f, o, r, ids in chosen]

    rows = []
    if not args.no_baseline:
        with tempfile.TemporaryDirectory(prefix="cvsweep-mutant-") as tmp:
            copy_tree(Path(tmp), args.tests_from)
            node_ids = sorted({node for m in chosen for node in m[4]})
            code, seconds, last = run_tests(Path(tmp), node_ids)
            print(f"baseline (no mutant): exit {code} in {seconds:.0f} s: {' '.join(last)}", flush=True)
            if code != 0:
                print("the tests fail without a mutant: fix them first", file=sys.stderr)
                return 1
    for name, path, original, replacement, node_ids in chosen:
        with tempfile.TemporaryDirectory(prefix="cvsweep-mutant-") as tmp:
            copy_tree(Path(tmp), args.tests_from)
            apply(Path(tmp), path, original, replacement)
            code, seconds, last = run_tests(Path(tmp), node_ids)
        # pytest exits 1 when a test failed; 0 means the mutant survived, anything else is an error.
        verdict = {0: "NOT CAUGHT", 1: "caught"}.get(code, f"error (pytest exit {code})")
        rows.append((name, path, verdict, seconds))
        print(f"{name}: {verdict} in {seconds:.0f} s: {' '.join(last)}", flush=True)

    print(f"\n| mutant | file | result | seconds |\n| --- | --- | --- | --- |")
    for name, path, verdict, seconds in rows:
        print(f"| {name} | {path} | {verdict} | {seconds:.0f} |")
    return 0 if all(verdict == "caught" for *_, verdict, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
