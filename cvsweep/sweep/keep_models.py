"""``artifacts=best``: when a sweep ends, only the study's best trial keeps its model.keras
(a multi-objective study: every trial on its Pareto front). The best is the study's, over
every run of the same command, so a resumed run never deletes the model of an earlier run's
best trial; the models of earlier runs' trials that a later trial beat are deleted then.
Without a study storage the best is this run's, chosen as the summary chooses it. Either way
the best is cvsweep/study/ranking.py's (``best_trials``: a tie keeps the earlier trial).

When the best has no model on this host (its model could not come home, or its result.json
lies on another host), the best of this host's trials that kept one keeps it instead, so
artifacts=best never leaves no model; the summary says so.

Each deleted model's result.json then records it as missing, with the reason, and its
Optuna artifact's file is removed from the store (cvsweep/study/artifacts.py). Only ever a
trial folder's model.keras is deleted, whatever path its result.json names."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig

from cvsweep.config.objectives import directions_of
from cvsweep.jsonio import read_json, write_json_atomic
from cvsweep.layout import MODEL, result_of
from cvsweep.reporting.folders import trial_folders
from cvsweep.reporting.summary import load_study, trial_row
from cvsweep.study import ranking
from cvsweep.training import artifact

log = logging.getLogger("cvsweep.summary")


def keep_best(cfg: DictConfig) -> dict:
    """Delete the models of the study's completed trials whose result.json lies on this host,
    except the best (nothing unless artifacts=best).

    Args:
        cfg: The sweep's config (artifacts, the study, the sweep folder, the objectives).

    Returns:
        ``{"deleted": [{"trial", "folder"}], "kept_instead": None or {"folders", "because"}}``:
        the models deleted, and the trials kept because the best has no model here.
    """
    kept_models = {"deleted": [], "kept_instead": None}
    if cfg.artifacts.name != "best":
        return kept_models
    study = load_study(cfg)
    directions = directions_of(cfg)
    candidates, best = _in_study(study) if study is not None else _in_run(cfg, directions)
    kept = best
    why_not = [_no_model_here(c["folder"]) for c in best]
    if best and all(why_not):  # keep the best of this host's trials that have a model
        with_model = [c for c in candidates if not _no_model_here(c["folder"])]
        # Those that meet the constraints first; else any, so that some model is kept.
        kept = ranking.best_trials([c for c in with_model if c["competes"]] or with_model, directions)
        if kept:
            kept_models["kept_instead"] = {"folders": [str(c["folder"]) for c in kept], "because": why_not[0]}
    reason = ("deleted when the sweep ended (artifacts=best): not "
              + ("the study's best trial" if len(directions) == 1 else "on the study's Pareto front"))
    for candidate in candidates:
        if candidate in kept or candidate["folder"] is None:  # kept, or not on this host
            continue
        if _delete(candidate["folder"], reason):
            kept_models["deleted"].append({"trial": candidate["trial"], "folder": str(candidate["folder"])})
        if candidate["artifact_id"]:
            from cvsweep.study import artifacts

            artifacts.remove(cfg.output_root, candidate["artifact_id"])
    return kept_models


def _in_study(study) -> tuple[list[dict], list[dict]]:
    """The study's completed trials, and its best ones. The trials are read before the best:
    a trial that completes in between (another process) is then neither deleted nor wrongly
    kept as best."""
    from optuna.trial import TrialState

    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    competing = {t.number for t in ranking.study_candidates(study, completed)}
    best = ranking.study_best(study, completed)
    candidates = {t.number: _candidate(t, t.number in competing) for t in completed}
    return list(candidates.values()), [candidates[t.number] for t in best]


def _candidate(trial, competes: bool) -> dict:
    """A study trial: its number, its folder when its result.json lies on this host (else
    None), its Optuna artifact, its objective values and whether it competes for best (meets
    the constraints)."""
    from cvsweep.study.storage import RESULT_ATTR

    record = trial.user_attrs.get(RESULT_ATTR) or {}
    here = record.get("host") == socket.gethostname() and record.get("path")
    return {"trial": trial.number, "folder": Path(record["path"]).parent if here else None,
            "artifact_id": record.get("artifact_id"), "objective_values": trial.values, "competes": competes}


def _in_run(cfg: DictConfig, directions: list[str]) -> tuple[list[dict], list[dict]]:
    """Without a study storage (hydra.sweeper.storage=null): this run's completed trials, in
    job order, and the ones the summary shows as best."""
    rows = []
    for folder in trial_folders(Path(cfg.hydra.sweep.dir)):
        row = trial_row(folder, [], folder.name)
        if row["status"] == "completed" and row["objective_values"]:
            rows.append({"trial": None, "folder": folder, "artifact_id": None,
                         "objective_values": row["objective_values"], "competes": not row["violates"]})
    return rows, ranking.best_trials([r for r in rows if r["competes"]], directions)


def _no_model_here(folder: Optional[Path]) -> Optional[str]:
    """None when ``folder`` (None: on another host) keeps its model.keras, else why not."""
    if folder is None:
        return "its result.json lies on another host"
    try:
        record = read_json(result_of(folder)).get("model") or {}
    except (OSError, ValueError) as err:
        return f"its result.json cannot be read: {err}"
    if not isinstance(record, dict) or record.get("path") != MODEL:
        return (record.get("missing") if isinstance(record, dict) else None) or "it kept no model"
    if not (folder / MODEL).is_file():
        return f"{folder / MODEL} is gone"
    return None


def _delete(folder: Path, reason: str) -> bool:
    """Delete ``folder``'s model.keras and record why in its result.json; False when it kept
    none. Never another file: a result.json that names another path keeps it."""
    path = result_of(folder)
    try:
        result = read_json(path)
        record = result.get("model") or {}
        if not isinstance(record, dict) or "path" not in record:
            return False
        if record["path"] != MODEL:
            log.warning("artifacts=best: %s names the model %r, not %s: left alone", path, record["path"],
                        MODEL)
            return False
        (folder / MODEL).unlink(missing_ok=True)
        result["model"] = artifact.missing(reason)
        write_json_atomic(path, result)
        return True
    except (OSError, ValueError) as err:  # a folder moved or unreadable: the summary still comes
        log.warning("artifacts=best: could not delete the model of %s: %s", folder, err)
        return False
