"""What a path given to evaluate or plot means (cvsweep/reporting/folders.py): one answer for
both commands, one error, a UserError that names the path and what is expected."""

from __future__ import annotations

import pytest

from cvsweep.cli.main import main as cvsweep
from cvsweep.errors import UserError
from cvsweep.layout import result_of, summary_of
from cvsweep.reporting.folders import EXPECTED, NotATrialOrSweep, locate, trial_folders
from cvsweep.reporting.given_paths import trials_to_plot


def _sweep(tmp_path, *jobs: int, finished=()):
    sweep = tmp_path / "sweep"
    for job in jobs:
        (sweep / str(job)).mkdir(parents=True)
        if job in finished:
            result_of(sweep / str(job)).write_text("{}")
    return sweep


def test_a_trial_folder_its_result_and_a_sweep_folder(tmp_path):
    sweep = _sweep(tmp_path, 0, 2, 10, finished=(2, 10))
    assert trial_folders(sweep) == [sweep / "0", sweep / "2", sweep / "10"]  # job order, not names'
    assert (locate(sweep / "2").folder, locate(sweep / "2").is_sweep) == (sweep / "2", False)
    assert (locate(result_of(sweep / "2")).folder, locate(str(result_of(sweep / "2"))).is_sweep) == (sweep / "2", False)
    given = locate(sweep)
    assert (given.folder, given.is_sweep, given.has_summary) == (sweep, True, False)
    summary_of(sweep).write_text("{}")
    assert locate(sweep).has_summary
    assert trials_to_plot(str(_sweep(tmp_path / "other", 0, 1, finished=(1,)))) == \
        ([tmp_path / "other" / "sweep" / "1"], None)


@pytest.mark.parametrize("what", ["empty", "unfinished", "absent", "file"])
def test_anything_else_is_one_user_error_naming_the_path(what, tmp_path):
    path = {"empty": tmp_path, "unfinished": _sweep(tmp_path, 0), "absent": tmp_path / "absent",
            "file": tmp_path / "notes.txt"}[what]
    if what == "file":
        path.write_text("x")
    with pytest.raises(NotATrialOrSweep) as raised:
        locate(path)
    assert isinstance(raised.value, UserError)
    assert str(raised.value) == f"{path}: {'does not exist; expected' if what == 'absent' else 'not'} {EXPECTED}"


def test_evaluate_and_plot_say_the_same_about_such_a_path(tmp_path, capsys):
    assert cvsweep(["evaluate", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"cvsweep evaluate: {tmp_path}: not {EXPECTED}\n"
    assert cvsweep(["plot", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"cvsweep plot: {tmp_path}: not {EXPECTED}\n"


def test_evaluate_names_a_trial_of_a_sweep_that_has_no_summary_yet(tmp_path, capsys):
    sweep = _sweep(tmp_path, 0, 1, finished=(1,))
    assert cvsweep(["evaluate", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cvsweep evaluate: {sweep}: a sweep folder without summary.json yet")
    assert f"evaluate one of its trial folders, e.g. {sweep / '1'}" in err
