"""The service refuses a study database it cannot open before it listens: one line naming the
setting, the file and the fix, exit 2, no traceback (the sweep command's own check, reused)."""

from __future__ import annotations

import pytest

from cvsweep.service.settings import SettingsError, parse


def _corrupt_root(tmp_path):
    root = tmp_path / "outputs"
    root.mkdir()
    (root / "optuna.db").write_bytes(b"this is no SQLite file, " * 200)
    return root


def test_a_corrupt_study_database_is_refused_with_the_file_and_the_fix(tmp_path):
    root = _corrupt_root(tmp_path)
    with pytest.raises(SettingsError) as refused:
        parse(["--output-root", str(root)])
    said = str(refused.value)
    assert "\n" not in said
    assert said.startswith(f"serve.output_root={root}: cannot open its study storage sqlite:///{root / 'optuna.db'}")
    assert "file is not a database" in said
    assert f"move {root / 'optuna.db'} aside" in said and "another --output-root" in said


def test_the_command_exits_2_with_that_line_before_listening(tmp_path, capsys):
    from cvsweep.cli.main import main  # the command; it never reaches the server here

    root = _corrupt_root(tmp_path)
    assert main(["serve", "--output-root", str(root), "--port", "1"]) == 2
    printed = capsys.readouterr()
    lines = printed.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in printed.err + printed.out
    assert lines[0].startswith("cvsweep serve: serve.output_root=")
    assert f"{root / 'optuna.db'}" in lines[0] and "file is not a database" in lines[0]


def test_a_good_outputs_root_still_starts_and_gets_its_database(tmp_path):
    settings = parse(["--output-root", str(tmp_path / "fresh")])
    assert (tmp_path / "fresh" / "optuna.db").is_file() and settings.root == (tmp_path / "fresh").resolve()
