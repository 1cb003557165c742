"""Opening a study says nothing of Optuna's own ("A new study created in RDB", "Using an
existing study"): the sweep's start line "Study X ...: N trials so far" says it once."""

from __future__ import annotations

import logging

import optuna

from cvsweep.study import storage as studies


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_creating_and_loading_a_study_is_silent_and_leaves_optunas_verbosity_alone(tmp_path):
    records = _Records()
    optuna_logger = logging.getLogger("optuna")
    optuna_logger.addHandler(records)
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        storage = studies.open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=10, grace_period=20)
        created = studies.create_or_load(storage, "s", directions=["maximize"])
        created.add_trial(optuna.trial.create_trial(value=1.0))
        loaded = studies.create_or_load(storage, "s", directions=["maximize"])
        in_memory = studies.create_or_load(None, "m", directions=["minimize"])
        assert optuna.logging.get_verbosity() == optuna.logging.INFO  # restored for everything else
        optuna.logging.get_logger("optuna.storages").info("still heard")
    finally:
        optuna.logging.set_verbosity(before)
        optuna_logger.removeHandler(records)
        storage.engine.dispose()
    assert len(loaded.trials) == 1 and loaded.study_name == "s" and in_memory.study_name == "m"
    assert records.lines == ["still heard"]
