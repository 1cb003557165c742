"""``cvsweep completion bash`` (cvsweep/cli/completion.py): the script, sourced in bash, completes
the subcommands, their options and their choices, and hands anything else to Hydra's own
completion function (here a stand-in that records the call; tests/e2e/test_package.py runs the
real one against the installed command)."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from cvsweep.cli.completion import bash_script
from cvsweep.cli.main import main
from cvsweep.cli.subcommands import SUBCOMMANDS

SCRIPT = bash_script()


def offered(line: str) -> list[str]:
    """What the script offers for ``line<TAB>``, with Hydra's function standing in."""
    words = line.split(" ")
    probe = (f"{SCRIPT}\n"
             "hydra_bash_completion() { COMPREPLY=(HYDRA); }\n"  # the stand-in, after Hydra's own
             f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
             f"COMP_LINE={shlex.quote(line)}; COMP_POINT={len(line)}\n"
             "_cvsweep_completion\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_command_prints_the_script(capsys):
    assert main(["completion", "bash"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == SCRIPT.strip()
    assert "hydra_bash_completion()" in out  # Hydra's own function, for the overrides
    assert out.strip().endswith("complete -o nospace -o default -F _cvsweep_completion cvsweep")


@pytest.mark.parametrize("line, expected", [
    ("cvsweep ", ["HYDRA", *SUBCOMMANDS]),
    ("cvsweep se", ["HYDRA", "serve"]),
    ("cvsweep da", ["HYDRA", "datasets"]),
    ("cvsweep serve --p", ["--port"]),
    ("cvsweep serve --port ", []),  # a value: bash completes file names
    ("cvsweep deploy --skip-s", ["--skip-smoke-test"]),
    ("cvsweep datasets ", ["fetch"]),
    ("cvsweep datasets fetch ", ["gtsrb"]),
    ("cvsweep datasets fetch gtsrb --", ["--help", "--dest", "--url", "--sha256"]),
    ("cvsweep evaluate ", []),  # a path: bash completes file names
    ("cvsweep completion ", ["bash"]),
    ("cvsweep dataset=", ["HYDRA"]),
    ("cvsweep -m training.epochs=3 model", ["HYDRA"]),
])
def test_subcommands_and_their_options_here_overrides_by_hydra(line, expected):
    assert offered(line) == expected
