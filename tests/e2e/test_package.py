"""cvsweep as an installed package: the wheel carries the config tree, its ``cvsweep`` command
runs a sweep in an empty folder, ``cvsweep --help`` and every subcommand's ``--help`` work there,
and ``cvsweep completion bash`` completes the subcommands and, through Hydra's completion,
cvsweep's groups."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO

from cvsweep.cli.subcommands import SUBCOMMANDS

pytestmark = pytest.mark.slow


def _run(*args, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=900, **kwargs)
    assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from this checkout, installed as the README says: with uv and the
    overrides pyproject.toml declares (read from it, never restated). Returns its bin/."""
    uv = shutil.which("uv")
    assert uv, "uv is on PATH wherever the tests run (the README installs it first)"
    root = tmp_path_factory.mktemp("installed")
    _run(uv, "build", "--wheel", "--out-dir", str(root / "dist"), str(REPO))
    (wheel,) = (root / "dist").glob("cvsweep-*.whl")
    overrides = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["uv"]["override-dependencies"]
    (root / "overrides.txt").write_text("\n".join(overrides) + "\n")
    _run(uv, "venv", "--quiet", "--python", sys.executable, str(root / "venv"))
    # Linked from uv's cache (which `uv run pytest` filled), and not byte-compiled: compiling all
    # of TensorFlow costs more than the processes here compiling only what they import.
    _run(uv, "pip", "install", "--quiet", "--no-compile-bytecode", "--python", str(root / "venv" / "bin" / "python"),
         "--override", str(root / "overrides.txt"), str(wheel))
    return root / "venv" / "bin"


def _env(bin_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}


def test_the_wheel_carries_the_config_tree(installed):
    site = _run(str(installed / "python"), "-c", "import cvsweep, pathlib; print(pathlib.Path(cvsweep.__file__).parent)",
                cwd="/", env=_env(installed)).stdout.strip()
    shipped = {p.relative_to(Path(site) / "conf") for p in (Path(site) / "conf").rglob("*.yaml")}
    in_repo = {p.relative_to(REPO / "conf") for p in (REPO / "conf").rglob("*.yaml")}
    assert shipped == in_repo
    assert not Path(site).is_relative_to(REPO), "the test must use the installed copy, not the checkout"


def test_the_installed_command_runs_a_sweep_in_an_empty_folder(installed, tmp_path):
    workdir = tmp_path / "empty"
    workdir.mkdir()
    run = _run(str(installed / "cvsweep"), "-m", "hydra.sweeper.n_trials=2", "training.epochs=1", "plots=none",
               cwd=workdir, env=_env(installed))
    (summary_path,) = workdir.glob("outputs/sweeps/*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert [t["status"] for t in summary["trials"]] == ["completed", "completed"], run.stdout[-2000:]
    assert (workdir / "outputs" / "optuna.db").exists()


def test_help_is_cvsweeps_own(installed, tmp_path):
    text = _run(str(installed / "cvsweep"), "--help", cwd=tmp_path, env=_env(installed)).stdout
    assert text.startswith("cvsweep: ")
    assert "powered by Hydra" not in text
    assert all(f"\n  cvsweep {name} " in text for name in SUBCOMMANDS), text
    for group in (p.name for p in (REPO / "conf").iterdir() if p.is_dir() and p.name != "hydra"):
        assert f"\n{group}:\n" in text, group
    assert "  * digits " in text and re.search(r"\n  val_loss +minimize  validation loss\n", text)


def test_every_subcommands_help_works_in_an_empty_folder(installed, tmp_path):
    # One shell for them all: each line is the subcommand, its exit status, its usage line.
    script = "".join(f"cvsweep {name} --help > {name}.txt; echo {name} $? \"$(head -1 {name}.txt)\"\n"
                     for name in SUBCOMMANDS)
    said = _run("bash", "-c", script, cwd=tmp_path, env=_env(installed)).stdout.splitlines()
    assert [line.split(" ", 2)[:2] for line in said] == [[name, "0"] for name in SUBCOMMANDS], said
    assert all(line.split(" ", 2)[2].startswith(f"usage: cvsweep {line.split()[0]} ") for line in said), said


def _complete(bin_dir: Path, line: str, cwd: Path) -> list[str]:
    """What bash offers for ``line<TAB>``, from the script ``cvsweep completion bash`` prints."""
    script = _run(str(bin_dir / "cvsweep"), "completion", "bash", cwd=cwd, env=_env(bin_dir)).stdout
    words = line.split(" ")
    probe = (f"{script}\nCOMP_WORDS=({line}); COMP_LINE={line!r}; COMP_POINT={len(line)}; "
             f"COMP_CWORD={len(words) - 1}\n_cvsweep_completion\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n")
    return _run("bash", "-c", probe, cwd=cwd, env=_env(bin_dir)).stdout.split()


def test_shell_completion_completes_subcommands_groups_and_options(installed, tmp_path):
    assert {"dataset=", "datasets"} <= set(_complete(installed, "cvsweep data", tmp_path))
    options = _complete(installed, "cvsweep dataset=", tmp_path)
    assert {"dataset=digits", "dataset=mnist", "dataset=imdb"} <= set(options), options
    assert _complete(installed, "cvsweep serve --po", tmp_path) == ["--port"]
