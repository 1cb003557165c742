"""What Hydra would refuse in a command line, found before Hydra runs it, as one line.

Hydra reports a config it cannot compose (an unknown key, a value of the wrong type, an
option that does not exist, an override it cannot parse, a config file that is no YAML) over
several lines, or as a traceback, and exits 1. ``cvsweep [overrides]`` composes the config as
Hydra will, first, so that such input is refused the way cvsweep refuses any input: one line
that names the key or file and the fix, exit status 2.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

from cvsweep.compose import CONF_DIR, register

# Hydra's own commands, which compose nothing to run (or another config tree): left to Hydra.
LEFT_TO_HYDRA = ("help", "hydra_help", "version", "cfg", "info", "shell_completion", "config_path",
                 "experimental_rerun")
# OmegaConf's context lines: the key is named in the message already.
CONTEXT_LINES = ("full_key:", "object_type=", "reference_type=")
SETTINGS_FIX = "cvsweep --help lists the groups, cvsweep --cfg job every key and its value"


def composition_problem(argv: list[str]) -> str | None:
    """Why Hydra would refuse to compose the config of ``cvsweep ARGV``, in one line.

    Args:
        argv: The command line after ``cvsweep``.

    Returns:
        The problem and its fix, or None when the config composes (or Hydra itself handles
        the command: --help, --cfg, --info, shell completion, another config path).
    """
    from hydra import initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    try:
        args = get_args_parser().parse_args(argv)
    except SystemExit:  # Hydra's own parser says what is wrong when it runs
        return None
    modes = [flag for flag, given in (("-m", args.multirun), ("--run", args.run), ("--cfg", args.cfg is not None),
                                      ("--info", args.info is not None), ("-sc", args.shell_completion)) if given]
    if len(modes) > 1:  # Hydra raises a bare ValueError for it, a traceback
        return (f"{' and '.join(modes)}: only one of -m, --run, --cfg, --info and --shell-completion at a time "
                f"(cvsweep --cfg job [overrides] prints a config; cvsweep -m [overrides] runs the sweep)")
    if any(getattr(args, name, None) for name in LEFT_TO_HYDRA):
        return None
    overrides = list(args.overrides)
    if args.config_dir:
        overrides.append(f"hydra.searchpath=[file://{Path(args.config_dir).resolve()}]")
    multirun = args.multirun or any(o.replace(" ", "") == "hydra.mode=MULTIRUN" for o in overrides)
    register()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            GlobalHydra.instance().hydra.compose_config(
                config_name=args.config_name or "config", overrides=overrides,
                run_mode=RunMode.MULTIRUN if multirun else RunMode.RUN, with_log_configuration=False)
    except (HydraException, OmegaConfBaseException, yaml.YAMLError, OSError, ValueError) as err:
        return one_line(err)
    return None


def one_line(err: BaseException) -> str:
    """Hydra's, OmegaConf's or YAML's report of a config it cannot compose, as one line with the fix.

    Args:
        err: The exception composing raised.

    Returns:
        The line, without the ``cvsweep: `` prefix.
    """
    yaml_error = _yaml_error_in(err)
    if yaml_error is not None:
        return yaml_line(yaml_error)
    if isinstance(err, MissingConfigException):
        return _missing_option_line(err)
    said = _lines(str(err))
    cause = err.__cause__
    if isinstance(cause, OmegaConfBaseException):
        # Hydra's first line names the override; OmegaConf's says what is wrong with it.
        key = getattr(cause, "full_key", None)
        hint = f"the key {key}: check its spelling and type; " if key else ""
        return f"{said[0].rstrip('.')}: {' '.join(_lines(str(cause)))} ({hint}{SETTINGS_FIX})"
    if isinstance(err, OverrideParseException):
        return f"{' '.join(said)} (quote a value with spaces or brackets: 'key=a b')"
    if said[0].startswith("Could not override"):
        return f"{said[0].rstrip('.')} ({SETTINGS_FIX})"  # not Hydra's "+key=value": the settings are fixed
    return " ".join(said)


def yaml_line(err) -> str:
    """A YAML syntax error as one line naming the file and the line.

    Args:
        err: PyYAML's error (a ``MarkedYAMLError`` names where).

    Returns:
        The line, without the ``cvsweep: `` prefix.
    """
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "a config file"
    what = " ".join(part for part in (getattr(err, "context", None), getattr(err, "problem", None)) if part)
    return f"{where}: not valid YAML: {what or err} (fix the file's syntax there)"


def _yaml_error_in(err: BaseException | None):
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, yaml.YAMLError):
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def _missing_option_line(err: MissingConfigException) -> str:
    said = _lines(str(err))
    first = said[0].split(": ", 1)[-1] if said[0].startswith("In '") else said[0]
    options = []
    for line in said[1:]:
        if line.startswith("Config search path"):
            break
        if not line.startswith("Available options"):
            options.append(line)
    available = f"available: {', '.join(options)}" if options else SETTINGS_FIX
    return f"{first} ({available})"


def _lines(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return [line for line in lines if not line.startswith(CONTEXT_LINES)] or [text.strip()]


