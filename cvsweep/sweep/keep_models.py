"""``artifacts=best``: when a sweep ends, only the study's best trial keeps its model.keras
(a multi-objective study: every trial on its Pareto front). The best is the study's, over
every run of the same command, so a resumed run never deletes the model of an earlier run's
best trial; the models of earlier runs' trials that a later trial beat are deleted then.

Each deleted model's result.json then records it as missing, with the reason, and its
Optuna artifact's file is removed from the store (cvsweep/study/artifacts.py)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from omegaconf import DictConfig

from cvsweep.config.objectives import objectives_of
from cvsweep.jsonio import read_json, write_json_atomic
from cvsweep.training import artifact

log = logging.getLogger("cvsweep.summary")


def keep_best(cfg: DictConfig) -> list[dict]:
    """Delete the models of the study's completed trials whose result.json lies on this host,
    except the best; returns what was deleted (``{"trial", "folder"}``), empty unless
    artifacts=best."""
    if cfg.artifacts.name != "best":
        return []
    from cvsweep.reporting.summary import load_study

    study = load_study(cfg)
    doomed = _not_best_in_study(study) if study is not None else _not_best_in_run(cfg)
    single = len(objectives_of(cfg)) == 1
    reason = ("deleted when the sweep ended (artifacts=best): not "
              + ("the study's best trial" if single else "on the study's Pareto front"))
    deleted = []
    for number, folder, artifact_id in doomed:
        if _delete(folder, reason):
            deleted.append({"trial": number, "folder": str(folder)})
        if artifact_id:
            from cvsweep.study import artifacts

            artifacts.remove(cfg.output_root, artifact_id)
    return deleted


def _not_best_in_study(study) -> list[tuple]:
    """(trial number, folder, artifact id) of every completed trial of this host but the best.
    The trials are read before the best: a trial that completes in between (another process)
    is then neither deleted nor wrongly kept as best."""
    from optuna.trial import TrialState

    from cvsweep.study.storage import RESULT_ATTR

    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        return []
    best = {t.number for t in ([study.best_trial] if len(study.directions) == 1 else study.best_trials)}
    doomed = []
    for trial in completed:
        record = trial.user_attrs.get(RESULT_ATTR) or {}
        if trial.number not in best and record.get("host") == socket.gethostname() and record.get("path"):
            doomed.append((trial.number, Path(record["path"]).parent, record.get("artifact_id")))
    return doomed


def _not_best_in_run(cfg: DictConfig) -> list[tuple]:
    """Without a study storage (hydra.sweeper.storage=null) the best is this run's."""
    from cvsweep.config.objectives import directions_of
    from cvsweep.reporting.summary import pareto_front

    sweep_dir = Path(cfg.hydra.sweep.dir)
    rows = []
    for path in sorted(sweep_dir.glob("*/result.json")):
        values = (read_json(path).get("trial") or {}).get("objective_values")
        if values:
            rows.append({"folder": path.parent, "objective_values": values})
    front = pareto_front(rows, directions_of(cfg))
    kept = front[:1] if len(front) and len(front[0]["objective_values"]) == 1 else front
    return [(None, row["folder"], None) for row in rows if row not in kept]


def _delete(folder: Path, reason: str) -> bool:
    """Delete ``folder``'s model file and record why in its result.json; False when it kept none."""
    path = folder / "result.json"
    try:
        result = read_json(path)
        record = result.get("model") or {}
        if "path" not in record:
            return False
        (folder / record["path"]).unlink(missing_ok=True)
        result["model"] = artifact.missing(reason)
        write_json_atomic(path, result)
        return True
    except (OSError, ValueError) as err:  # a folder moved or unreadable: the summary still comes
        log.warning("artifacts=best: could not delete the model of %s: %s", folder, err)
        return False
