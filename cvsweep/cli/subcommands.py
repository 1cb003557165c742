"""The subcommands of ``cvsweep``, listed once: the dispatcher (cvsweep/cli/main.py), the help
page (``cvsweep --help``) and the completion script (cvsweep/cli/completion.py) read them here."""

from __future__ import annotations

# Subcommand -> (its module under cvsweep/cli/, with add_arguments(parser) and run(args) -> status;
# what it does, for the help pages).
SUBCOMMANDS = {
    "serve": ("serve", "the sweep service: HTTP API, web page, study dashboard"),
    "evaluate": ("evaluate", "evaluate a trial's saved model and check it against its record"),
    "plot": ("plot", "draw a trial's plots, or every trial's of a sweep, from their result.json"),
    "compare": ("compare", "explain how two trials' results differ (config, data, versions, device, metrics)"),
    "deploy": ("deploy", "build, smoke-test and push the worker image, and point the RunPod endpoint at it"),
    "datasets": ("datasets_fetch", "download, check and unpack an archived dataset (datasets fetch NAME)"),
    "completion": ("completion", "print the bash completion script of subcommands, groups and keys"),
}


def listing() -> dict[str, str]:
    """Each subcommand and what it does.

    Returns:
        Name -> one line.
    """
    return {name: what for name, (_, what) in SUBCOMMANDS.items()}
