"""Trained models as Optuna artifacts: each completed trial's model.keras is copied into a
file-system artifact store, ``<output_root>/artifacts`` (next to the default study storage),
and linked to its trial, so optuna-dashboard lists and serves it
(``optuna-dashboard sqlite:///outputs/optuna.db --artifact-dir outputs/artifacts``).
An in-memory study (storage null) registers none: it is gone after the run, and nothing
would remove the copies (the sweep checks: cvsweep/sweep/study_trials.py).

optuna.artifacts is imported on first use only: importing it imports boto3 as well, a cost
paid once per sweep process, never by ``--help`` or a sweep that keeps no model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from cvsweep.jsonio import read_json

log = logging.getLogger("cvsweep.study")

ARTIFACT_DIR = "artifacts"


def store(output_root: str | Path):
    """The file-system artifact store of ``output_root`` (created on first use).

    Args:
        output_root: The sweeps' output root.

    Returns:
        An Optuna ``FileSystemArtifactStore`` over ``<output_root>/artifacts``.
    """
    from optuna.artifacts import FileSystemArtifactStore

    folder = Path(output_root) / ARTIFACT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(folder)


def register_model(trial, result_path: Path, output_root: str | Path) -> Optional[str]:
    """Upload the model a result records (model.keras beside it) as an artifact of ``trial``.

    ``trial`` is still running: a finished trial takes no more attributes. A copy that fails is
    logged, never a failed trial.

    Args:
        trial: The running Optuna trial.
        result_path: The trial's result.json.
        output_root: The sweeps' output root.

    Returns:
        The artifact's id, or None when the result keeps no model or the copy failed.
    """
    try:
        record = read_json(result_path).get("model") or {}
        if "path" not in record:
            return None
        from optuna.artifacts import upload_artifact

        model = Path(result_path).parent / record["path"]
        return upload_artifact(artifact_store=store(output_root), file_path=str(model), study_or_trial=trial)
    except Exception as err:  # a full disk, a file removed meanwhile: the trial itself is fine
        log.warning("could not register this trial's model as an Optuna artifact: %s: %s", type(err).__name__, err)
        return None


def remove(output_root: str | Path, artifact_id: str) -> bool:
    """Delete an artifact's file from the store.

    Its record stays in the finished trial (Optuna lets nothing change a finished trial), so
    the dashboard still names it, and answers 404 for its file.

    Args:
        output_root: The sweeps' output root.
        artifact_id: The artifact's id.

    Returns:
        True when it was removed; False if it was not there, or could not be removed (logged).
    """
    from optuna.artifacts.exceptions import ArtifactNotFound

    try:
        store(output_root).remove(artifact_id)
    except ArtifactNotFound:
        return False
    except OSError as err:
        log.warning("could not remove artifact %s: %s", artifact_id, err)
        return False
    return True
