"""What a sweep says as it opens its study: cvsweep's one line, not Optuna's two."""

from __future__ import annotations

import re


def test_the_sweep_names_its_study_once_without_optunas_lines(tiny_sweep):
    _, proc = tiny_sweep
    said = proc.stdout + proc.stderr
    assert "A new study created" not in said and "Using an existing study" not in said
    assert len(re.findall(r"Study \S+ in sqlite:///\S+: 0 trials so far", said)) == 1, said[:3000]
