"""What a client may ask for: a sweep's overrides, exactly as a user types them after
``cvsweep -m``, checked as data before anything starts.

Two layers. First the service's own rules, which the command line does not need (its user
already runs code on the machine): every override is parsed by Hydra's own override parser;
no ``+``/``++``/``~`` or ``@package`` overrides, no ``${...}`` interpolation (a resolver reads
the environment), no ``_target_``, no option a group does not have, no ``hydra.*`` key but a
few, no setting the schema marks operator-only (where files go, where credentials are sent),
and a ``dataset.path`` only inside ``serve.data_roots``. Then the command's own checks: the
config is composed from the same tree and goes through the same preflight as ``cvsweep -m``
(cvsweep/sweep/preflight.py), so what is refused here is refused there, with the same words.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, OverrideType
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cvsweep.compose import compose, compose_sweep
from cvsweep.config.objectives import directions_of, objectives_of
from cvsweep.config.schema import ConfigError, marked_keys
from cvsweep.errors import CvsweepError
from cvsweep.service.settings import MAX_OVERRIDE_CHARS, MAX_OVERRIDES, ServeSettings
from cvsweep.study.constraints import CONSTRAINTS
from cvsweep.study.search_space import search_space
from cvsweep.study.storage import n_counted
from cvsweep.sweep.preflight import check_sweep

# The hydra.* settings a client may set: how many trials, the sampler's seed, the pruner and
# its settings. Everything else of Hydra (launcher, sweep folder, callbacks, storage) is the
# operator's.
CLIENT_HYDRA_KEYS = ("hydra.sweeper.n_trials", "hydra.sweeper.sampler.seed", "hydra.sweeper.timeout_s",
                     "hydra.sweeper.budget_usd",
                     *(f"hydra.sweeper.constraints.{name}" for name in CONSTRAINTS))
PRUNER_GROUP = "hydra/sweeper/pruner"
PRUNER_SETTING = re.compile(r"^hydra\.sweeper\.pruner\.[a-z_]+$")
# Hydra composes one config at a time (its global state); the checks take turns.
_COMPOSING = threading.Lock()


@dataclass
class Problem:
    """One reason a request is refused: which override (when one is to blame), its key and the message."""

    index: Optional[int]  # which override, when one is to blame
    key: Optional[str]
    msg: str

    def to_json(self) -> dict:
        """The problem as the service's 422 answer lists it.

        Returns:
            ``{"loc", "key", "msg"}``, ``loc`` in FastAPI's form.
        """
        loc = ["body", "overrides"] + ([self.index] if self.index is not None else [])
        return {"loc": loc, "key": self.key, "msg": self.msg}


class Refused(CvsweepError):
    """A request the service refuses, with every problem found.

    Args:
        problems: The problems.
    """

    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(p.msg for p in problems))
        self.problems = problems


@dataclass
class CheckedSweep:
    """A request that passed every check: what the sweep process runs, and what the service
    shows of it before it has written anything."""

    overrides: list[str]
    objectives: list[str]
    directions: list[str]
    n_trials: int
    params: list[str]  # the searched keys: the trials table's columns
    study: dict = field(default_factory=dict)  # name, storage
    already_finished: int = 0  # the study's finished trials before this sweep (a resumed study)


def check_request(overrides: Any, settings: ServeSettings, groups: dict[str, list[str]],
                  sweep_dir: Path) -> CheckedSweep:
    """``overrides`` as the service runs them in ``sweep_dir``, checked.

    Args:
        overrides: The request's overrides (anything a client sent).
        settings: The service's settings.
        groups: Each config group's options.
        sweep_dir: The sweep's folder.

    Returns:
        The checked sweep.

    Raises:
        Refused: With every problem found.
    """
    problems = _shape_problems(overrides)
    if problems:
        raise Refused(problems)
    problems = [p for i, text in enumerate(overrides) for p in _override_problems(i, text, settings, groups)]
    if problems:
        raise Refused(problems)
    return _preflight(list(overrides), settings, sweep_dir)


def owned_overrides(settings: ServeSettings, sweep_dir: Path) -> list[str]:
    """What the service itself sets: every file below its outputs root, in the sweep's folder.

    Args:
        settings: The service's settings.
        sweep_dir: The sweep's folder.

    Returns:
        The ``output_root`` and ``hydra.sweep.dir`` overrides, quoted.
    """
    return [f"output_root={_quoted(str(settings.root))}", f"hydra.sweep.dir={_quoted(str(sweep_dir))}"]


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _shape_problems(overrides: Any) -> list[Problem]:
    if not isinstance(overrides, list):
        return [Problem(None, None, "overrides: allowed is a list of strings, as typed after `cvsweep -m`")]
    if len(overrides) > MAX_OVERRIDES:
        return [Problem(None, None, f"overrides: {len(overrides)} given, allowed are at most {MAX_OVERRIDES}")]
    problems = []
    for i, text in enumerate(overrides):
        if not isinstance(text, str):
            problems.append(Problem(i, None, f"overrides[{i}]: allowed is a string like training.epochs=5"))
        elif len(text) > MAX_OVERRIDE_CHARS:
            problems.append(Problem(i, None, f"overrides[{i}]: {len(text)} characters, allowed are at most "
                                             f"{MAX_OVERRIDE_CHARS}"))
        elif any(ch in text for ch in "\x00\r\n"):
            problems.append(Problem(i, None, f"overrides[{i}]: a line break or NUL; allowed is one override per item"))
    return problems


def _override_problems(index: int, text: str, settings: ServeSettings, groups: dict) -> list[Problem]:
    def problem(key: Optional[str], msg: str) -> list[Problem]:
        return [Problem(index, key, msg)]

    if text.startswith("-"):
        return problem(None, f"{text!r}: a command-line flag; allowed are overrides KEY=VALUE only")
    if "${" in text:
        return problem(None, f"{text!r}: interpolation (${{...}}) is not allowed in a request; give the value itself")
    if "_target_" in text:
        return problem(None, f"{text!r}: _target_ is not allowed in a request (it names code to run)")
    try:
        override = OverridesParser.create().parse_override(text)
    except HydraException as err:
        return problem(None, f"{text!r}: not an override ({str(err).splitlines()[0]})")
    key = override.key_or_group
    # Hydra undoes escapes (``$\{`` is ``${``): what OmegaConf would resolve is in the parsed value.
    if any("${" in part for part in _strings(override.value())):
        return problem(key, f"{text!r}: interpolation (${{...}}, also written with escapes) is not allowed in a "
                            "request; give the value itself")
    if override.type != OverrideType.CHANGE:
        return problem(key, f"{text!r}: +, ++ and ~ overrides are not allowed in a request; allowed is KEY=VALUE "
                            "for a setting the config has")
    if override.package is not None:
        return problem(key, f"{text!r}: @package overrides are not allowed in a request")
    if key in groups:
        return _choice_problems(index, override, key, groups[key])
    if key == "hydra" or key.startswith(("hydra.", "hydra/")):
        allowed = f"{', '.join(CLIENT_HYDRA_KEYS)}, {PRUNER_GROUP}=NAME and hydra.sweeper.pruner.SETTING"
        if key not in CLIENT_HYDRA_KEYS and not PRUNER_SETTING.match(key):
            return problem(key, f"{key}: the service's own setting; of hydra's, a request may set only {allowed}")
        if override.is_sweep_override():
            return problem(key, f"{key}: one value, not a sweep")
        return []
    operator_only = marked_keys("operator_only")
    if key in operator_only:
        return problem(key, f"{key}: set by whoever runs the service ({operator_only[key]}), not by a request")
    # A section given whole (executor.artifact_store={...}) would set the marked settings inside it.
    capped = marked_keys("client_cap")
    inside = [marked for marked in (*operator_only, *marked_keys("within_data_roots"), *capped)
              if marked.startswith(key + ".")]
    if inside:
        return problem(key, f"{key}: a section holding {inside[0]}, which only whoever runs the service sets; "
                            f"allowed is {key}.NAME=VALUE for its other settings")
    if key in marked_keys("within_data_roots"):
        return _path_problems(index, override, key, settings)
    if key in capped:
        return _cap_problems(index, override, key, capped[key])
    return []


def _cap_problems(index: int, override, key: str, cap) -> list[Problem]:
    """A safety limit a request may lower, never raise (the machine's memory is the operator's)."""
    for value in _values(override):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value > cap:
            return [Problem(index, key, f"{key}={value}: a request may lower this limit, not raise it; "
                                        f"allowed is a number up to {cap:g}")]
    return []


def _choice_problems(index: int, override, key: str, options: list[str]) -> list[Problem]:
    chosen = _values(override)
    bad = [value for value in chosen if not isinstance(value, str) or value not in options]
    if bad:
        return [Problem(index, key, f"{key}={bad[0]}: no such option; allowed: {', '.join(options)}")]
    return []


def _path_problems(index: int, override, key: str, settings: ServeSettings) -> list[Problem]:
    roots = settings.data_roots
    if not roots:
        return [Problem(index, key, f"{key}: this service accepts no data paths (it was started without "
                                    "--data-root); use a built-in dataset or ask its operator")]
    for value in _values(override):
        if value is None:
            continue
        if not isinstance(value, str):
            return [Problem(index, key, f"{key}={value}: allowed is a path inside {', '.join(roots)}")]
        # Where it really leads (.., symbolic links), from where the sweep process runs.
        real = os.path.realpath(os.path.expanduser(value))
        if not any(Path(real).is_relative_to(root) for root in roots):
            return [Problem(index, key, f"{key}={value}: outside the data roots; allowed is a path inside "
                                        f"{', '.join(roots)}")]
    return []


def _strings(value: Any) -> Iterator[str]:
    """Every string in a parsed override value: itself, a list's items, a dict's keys and values,
    a sweep's choices."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.items():
            yield from _strings(list(item))
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _strings(item)
    elif is_dataclass(value):
        for f in fields(value):
            yield from _strings(getattr(value, f.name))


def _values(override) -> list:
    """The plain value, or each value of a choice sweep; a range or interval as itself."""
    value = override.value()
    return list(value.list) if isinstance(value, ChoiceSweep) else [value]


def _preflight(overrides: list[str], settings: ServeSettings, sweep_dir: Path) -> CheckedSweep:
    """The config ``cvsweep -m`` would compose, through the same checks it runs first."""
    full = overrides + owned_overrides(settings, sweep_dir)
    with _COMPOSING:
        try:
            cfg = compose_sweep(*full)
            check_sweep(cfg)
        except ConfigError as err:
            raise Refused([Problem(*_blamed(p, overrides), p) for p in err.problems]) from None
        except (HydraException, OmegaConfBaseException, ValueError) as err:
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            if err.__cause__ is not None:  # Hydra's "Error merging override ..." says why in its cause
                lines += [line.strip() for line in str(err.__cause__).splitlines()[:1]]
            text = " ".join(lines)
            index, key = _blamed(text, overrides)
            raise Refused([Problem(index, key, _unknown_key(text, key) or text)]) from None
    sweeper = cfg.hydra.sweeper
    return CheckedSweep(
        overrides=full,
        objectives=[o.name for o in objectives_of(cfg)],
        directions=directions_of(cfg),
        n_trials=int(sweeper.n_trials),
        params=list(search_space(cfg)),
        study={"name": sweeper.study_name, "storage": OmegaConf.select(cfg, "hydra.sweeper.storage")},
        already_finished=_finished_in_study(sweeper.storage, sweeper.study_name),
    )


def _unknown_key(message: str, key: Optional[str]) -> Optional[str]:
    """Hydra's answer to an unknown key suggests ``+KEY=VALUE``, which a request may not use:
    say instead which settings the key's section has."""
    if key is None or "Could not override" not in message:
        return None
    section, _, _ = key.rpartition(".")
    node = compose().get(section) if section and "." not in section else None
    if not isinstance(node, DictConfig):
        return f"{key}: no such setting"
    return f"{key}: no such setting; {section} has: {', '.join(str(k) for k in node.keys())}"


def _finished_in_study(storage: Optional[str], name: Optional[str]) -> int:
    """A resumed study's finished trials: they count towards n_trials (docs/guides/pruning.md, "Honest counts")."""
    if not storage or not name:
        return 0
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:  # a new study
        return 0
    return n_counted(study.get_trials(deepcopy=False))


KEY_IN_MESSAGE = re.compile(r"(?:^|'|\s)([a-z_][a-z0-9_]*(?:[./][a-z0-9_]+)+)(?:=|'|:)", re.I)


def _blamed(message: str, overrides: list[str]) -> tuple[Optional[int], Optional[str]]:
    """(index, key) of the override a check's message is about: one whose key it names
    (``training.epochs=0: ...``, ``Error merging override objective=speed``), else the first
    dotted key it names, if any."""
    keys = [text.split("=", 1)[0] for text in overrides]
    for index in sorted(range(len(keys)), key=lambda i: -len(keys[i])):
        if re.search(rf"(?:^|[\s'])({re.escape(keys[index])})(?:=|'|:)", message):
            return index, keys[index]
    found = KEY_IN_MESSAGE.search(message)
    return None, found.group(1) if found else None
