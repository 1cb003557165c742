"""TensorFlow's process setup (cvsweep/training/tf_runtime.py): what every entry point sets
first, without importing TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

from cvsweep.training import tf_runtime


def test_an_entry_point_quiets_tensorflow_unless_the_environment_chose_a_level(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    with warnings.catch_warnings():
        tf_runtime.configure_entry_point()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == tf_runtime.TF_LOG_LEVEL
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    with warnings.catch_warnings():
        tf_runtime.configure_entry_point()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_an_entry_point_hides_the_sweepers_deprecation_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tf_runtime.configure_entry_point()
        warnings.warn_explicit("deprecated", FutureWarning, "optuna/x.py", 1, module="optuna.samplers")
        warnings.warn_explicit("ours", FutureWarning, "cvsweep/x.py", 1, module="cvsweep.x")
    assert [str(w.message) for w in caught] == ["ours"]


def test_importing_the_runtime_module_imports_no_tensorflow():
    code = "import sys, cvsweep.training.tf_runtime; print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
