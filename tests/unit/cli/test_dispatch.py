"""The one command, in this process (cvsweep/cli/main.py): a first argument that names a
subcommand runs it, anything else goes to the Hydra app; each subcommand's --help; one error
style for every subcommand: one line ``cvsweep <sub>: ...`` and exit 2 for bad input, 1 for a
failed run, 130/143 when interrupted or terminated; and Hydra's own refusals (an unknown key,
a value of the wrong type, a missing option, a YAML syntax error, a ??? left unset) as one
line with exit 2 before any work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import types

import pytest
from conftest import compose
from omegaconf import OmegaConf

from cvsweep.cli import main as dispatcher
from cvsweep.cli.main import main
from cvsweep.cli.subcommands import SUBCOMMANDS
from cvsweep.errors import CvsweepError, UserError


def one_line(capsys) -> str:
    """What the command said on stderr, checked to be one line and no traceback."""
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize("argv", [[name, "--help"] for name in SUBCOMMANDS] + [["datasets", "fetch", "--help"]],
                         ids=lambda argv: " ".join(argv))
def test_every_subcommand_has_its_help(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cvsweep {' '.join(argv[:-1])}"), out


def test_no_subcommands_help_imports_tensorflow():
    # A fresh interpreter: this one may have imported it for another test.
    probe = ("import contextlib, io, sys\n"
             "from cvsweep.cli.main import main\n"
             "from cvsweep.cli.subcommands import SUBCOMMANDS\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    codes = [main([name, '--help']) for name in SUBCOMMANDS]\n"
             "print(codes, sorted(m for m in ('tensorflow', 'keras', 'optuna', 'uvicorn') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == f"{[0] * len(SUBCOMMANDS)} []", done.stdout + done.stderr


def test_cvsweep_help_lists_the_subcommands():
    # The page Hydra prints for cvsweep --help, resolved as it resolves it (the real command's
    # page, from the wheel: tests/e2e/test_package.py).
    import cvsweep.cli.hydra_app  # noqa: F401 (registers the page's list of subcommands)

    page = OmegaConf.to_container(compose().hydra.help, resolve=True)["template"]
    assert "== Subcommands (cvsweep SUBCOMMAND --help for each one's options) ==" in page
    for name, (_, what) in SUBCOMMANDS.items():
        assert f"  cvsweep {name:<10}  {what}\n" in page


@pytest.mark.parametrize("argv, says", [
    (["plot"], "cvsweep plot: the following arguments are required: path (see cvsweep plot --help)"),
    (["serve", "--port", "eighty"], "cvsweep serve: argument --port: invalid int value: 'eighty' (see cvsweep serve"),
    (["serve", "--max-running", "0", "--output-root", "{tmp}/out"], "cvsweep serve: serve.max_running=0: allowed is"),
    (["evaluate", "{tmp}"], "cvsweep evaluate: {tmp}: not a trial folder"),
    (["plot", "{tmp}/absent"], "cvsweep plot: {tmp}/absent: does not exist; expected a trial folder"),
    (["compare", "{tmp}", "{tmp}"], "cvsweep compare: {tmp}: not a trial folder"),
    (["datasets", "fetch", "gtsrb", "--sha256", "abc"], "cvsweep datasets: --sha256 abc: 64 hexadecimal digits"),
    (["datasets", "fetch", "imagenet"], "cvsweep datasets fetch: argument name: invalid choice: 'imagenet'"),
    (["completion", "tcsh"], "cvsweep completion: argument shell: invalid choice: 'tcsh'"),
], ids=lambda x: x if isinstance(x, str) else None)
def test_bad_input_is_one_line_and_exit_2(argv, says, tmp_path, capsys):
    assert main([arg.replace("{tmp}", str(tmp_path)) for arg in argv]) == 2
    assert one_line(capsys).startswith(says.replace("{tmp}", str(tmp_path)))


def fake_subcommand(monkeypatch, action):
    """A subcommand whose run() does ``action``: the dispatcher's handling of what it raises."""
    module = types.ModuleType("cvsweep.cli.fake")
    module.__doc__ = "A subcommand for the test."
    module.add_arguments = lambda parser: None
    module.run = lambda args: action()
    monkeypatch.setitem(sys.modules, "cvsweep.cli.fake", module)
    monkeypatch.setitem(SUBCOMMANDS, "fake", ("fake", "a subcommand for the test"))


def _raise(err):
    raise err


def _terminate():
    os.kill(os.getpid(), signal.SIGTERM)
    signal.sigtimedwait([], 5)  # the handler runs before this returns


@pytest.mark.parametrize("action, status, says", [
    (lambda: 0, 0, None),
    (lambda: 1, 1, None),
    (lambda: _raise(UserError("is wrong", key="fake.key", value=3, fix="set it to 2")), 2,
     "cvsweep fake: fake.key=3: is wrong; set it to 2"),
    (lambda: _raise(CvsweepError("the step failed (the command above)")), 1,
     "cvsweep fake: the step failed (the command above)"),
    (lambda: _raise(KeyboardInterrupt()), 130, "cvsweep fake: interrupted"),
    (_terminate, 143, "cvsweep fake: terminated"),
], ids=["ok", "its-own-status", "user-error", "failed-run", "sigint", "sigterm"])
def test_one_place_turns_what_a_subcommand_raises_into_its_line_and_status(action, status, says, monkeypatch,
                                                                          capsys):
    fake_subcommand(monkeypatch, action)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["fake"]) == status
    if says is None:
        assert capsys.readouterr().err == ""
    else:
        assert one_line(capsys) == says
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the subcommand's only


def test_a_command_line_without_a_subcommand_goes_to_hydra_unchanged(monkeypatch):
    handed = []
    monkeypatch.setattr("cvsweep.cli.hydra_app.main", lambda argv: handed.append(argv) or 0)
    for argv in (["-m", "training.epochs=1"], ["serve=1"], [], ["--cfg", "job"]):
        assert main(argv) == 0
    assert handed == [["-m", "training.epochs=1"], ["serve=1"], [], ["--cfg", "job"]]
    assert dispatcher.EXIT_BAD_INPUT == 2


@pytest.mark.parametrize("argv, says", [
    (["foo=1"], "cvsweep: Could not override 'foo': Key 'foo' not in 'Config' (the key foo: check"),
    (["-m", "model.dropuot=0.1"], "cvsweep: Could not override 'model.dropuot': Key 'dropuot' not in 'CnnModelConfig'"),
    (["training.epochs=many"], "cvsweep: Error merging override training.epochs=many: Value 'many' of type 'str' "
                               "could not be converted to Integer (the key training.epochs"),
    (["dataset=imagenet"], "cvsweep: Could not find 'dataset/imagenet' (available: cifar10, cifar100, digits,"),
    (["x=("], "cvsweep: Error parsing override 'x=('"),
    (["training.epochs=1,2"], "cvsweep: Ambiguous value for argument 'training.epochs=1,2'"),
    (["-m", "--cfg", "job"], "cvsweep: -m and --cfg: only one of -m, --run, --cfg, --info and --shell-completion"),
], ids=["unknown-key", "unknown-nested-key", "wrong-type", "no-such-option", "unparsable", "sweep-without-m",
        "two-modes"])
def test_what_hydra_cannot_compose_is_one_line_and_exit_2(argv, says, capsys):
    assert main(argv) == 2
    assert one_line(capsys).startswith(says)


def test_a_yaml_syntax_error_names_the_file_and_the_line(tmp_path, capsys):
    (tmp_path / "experiment").mkdir()
    bad = tmp_path / "experiment" / "mine.yaml"
    bad.write_text("# @package _global_\ntraining:\n  epochs: [1, 2\n  seed: 3\n")
    assert main(["-m", "--config-dir", str(tmp_path), "+experiment=mine"]) == 2
    said = one_line(capsys)
    assert said.startswith(f"cvsweep: {bad}, line 4, column 7: not valid YAML: "), said
    assert said.endswith("(fix the file's syntax there)")


def test_a_value_left_unset_is_named_with_its_fix(tmp_path, capsys):
    from cvsweep.sweep.hooks import CvsweepHooks

    with pytest.raises(SystemExit) as done:
        CvsweepHooks().on_run_start(compose("training.epochs=???", f"output_root={tmp_path}"))
    assert done.value.code == 2
    assert one_line(capsys) == "cvsweep: training.epochs: has no value (???) and needs one (set it: training.epochs=VALUE)"
