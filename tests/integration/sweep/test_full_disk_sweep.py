"""A real sweep whose trial folders fill a real disk: a tiny tmpfs, mounted in a mount namespace
of the sweep's own (as root, or as root of a user namespace), so nothing of the machine fills
and the mount goes with the process. The sweep ends with one line naming the file or folder it
could not write and the fix, exit 1, no traceback; the trial the failed write abandoned is failed
in the study at once, its parameters asked again, and a re-run counts it as nothing.

Where neither a mount namespace nor a user namespace is allowed, the test skips (and fails
under CI=true)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import optuna
import pytest
from conftest import REPO, TINY_OVERRIDES, require
from optuna.trial import TrialState

from cvsweep.study import storage as studies

SIZE = "64k"  # the first trial's folder holds more: its model (about 46 KiB) and result.json


def _in_own_tmpfs(mount_point, *command: str) -> list[str]:
    """``command`` run where a tmpfs of SIZE is mounted on ``mount_point``, seen by it alone."""
    as_root = [] if os.geteuid() == 0 else ["--map-root-user"]
    script = f'mount -t tmpfs -o size={SIZE} tmpfs "$0" && exec "$@"'
    return ["unshare", "--mount", *as_root, "sh", "-c", script, str(mount_point), *command]


def _can_mount(tmp_path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    return subprocess.run(_in_own_tmpfs(probe, "true"), capture_output=True).returncode == 0


@pytest.mark.slow  # a real sweep
def test_a_full_disk_mid_sweep_is_one_line_exit_1_and_its_trial_is_released(tmp_path):
    require(_can_mount(tmp_path), "a tmpfs in a mount namespace (root, or unprivileged user namespaces)")
    disk, out = tmp_path / "small-disk", tmp_path / "out"
    disk.mkdir()
    sweep = disk / "sweep"
    command = [sys.executable, "-m", "cvsweep", "-m", *TINY_OVERRIDES, "hydra.sweeper.n_trials=2", "plots=none",
               f"output_root={out}", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(_in_own_tmpfs(disk, *command), cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"})

    said = proc.stdout + proc.stderr
    assert proc.returncode == 1, said[-3000:]
    assert "Traceback" not in said and "Logging error" not in said, said[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert [line for line in proc.stderr.splitlines() if line.startswith("cvsweep:")] == [last]
    assert last.startswith(f"cvsweep: no space left on the device to write {sweep / '0'}"), last
    assert "point hydra.sweep.dir (the trial folders) at another disk" in last
    assert last.endswith("trial 0 marked failed, so the same command runs it again"), last

    study = optuna.load_study(study_name=None, storage=f"sqlite:///{out / 'optuna.db'}")
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]  # released, asked again
    assert trials[0].user_attrs[studies.RESULT_ATTR]["reason"] == "no space left on the device"
    assert trials[1].params == trials[0].params
    assert studies.n_to_ask(study, 2) == 2  # a re-run runs both trials
