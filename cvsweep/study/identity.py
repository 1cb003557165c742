"""What makes a study one experiment, so that a sweep never mixes two.

A study's identity is everything its trials share and its objective values depend on:
- the fixed part of the run config: every setting that is not searched, with the data's
  sha256 where the data can be read here (so another file under the same name is another
  experiment);
- the objectives and their directions (and ``health_weight`` when ``health`` is one);
- the search space: each searched key and its Optuna distribution.

The default study name carries a short hash of it (``digits-cnn-cnn-3f9a1c2e``): the same
command resumes its study, any change of a fixed setting, objective or search space starts a
new one. A study named explicitly must have the identity recorded when it was created (its
user attribute ``cvsweep.identity``), or the sweep is refused before any trial with each
difference listed.
"""

from __future__ import annotations

import hashlib
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, read_write
from optuna.distributions import CategoricalDistribution, IntDistribution

from cvsweep.config.fingerprint import canonical_json
from cvsweep.config.objectives import directions_of, objectives_of
from cvsweep.config.schema import RUN_KEYS, ConfigError, Objective, run_config_of
from cvsweep.data.source_identity import pin_dataset
from cvsweep.study.constraints import limits_of
from cvsweep.study.search_space import search_space, sweep_parameters
from cvsweep.study.storage import create_or_load, open_storage

IDENTITY_ATTR = "cvsweep.identity"
HASH_LENGTH = 8


def identity_of(cfg: DictConfig) -> dict[str, Any]:
    """The study identity of a composed sweep config, as a flat mapping of readable keys.

    It holds what every trial shares (the run config's fixed settings, the data pinned), the
    objectives and directions, the constraints and the searched distributions.

    Args:
        cfg: The composed sweep config.

    Returns:
        Readable key to value.
    """
    distributions, _ = sweep_parameters(cfg)
    base = OmegaConf.masked_copy(cfg, list(RUN_KEYS))
    # The search space's plain values (e.g. search=mnist's model.conv_layers: 2) are fixed
    # for every trial, as much as the command line's are (those are in cfg already).
    for key, expression in search_space(cfg).items():
        if key not in distributions and key.split(".", 1)[0] in RUN_KEYS:
            OmegaConf.update(base, key, _plain_value(key, expression), merge=True)
    fixed = _flat(pin_dataset(run_config_of(base)))
    identity = {key: value for key, value in fixed.items() if key not in distributions}
    objectives, directions = objectives_of(cfg), directions_of(cfg)
    identity["objective"], identity["direction"] = objectives[0].name, directions[0]
    if len(objectives) > 1:
        identity["secondary_objectives"] = ",".join(o.name for o in objectives[1:])
        identity["secondary_directions"] = ",".join(directions[1:])
    if Objective.health in objectives:
        identity["health_weight"] = cfg.health_weight
    for name, limit in limits_of(cfg.hydra.sweeper).items():  # they decide which trials are candidates
        identity[f"constraint {name}"] = limit
    for name, distribution in sorted(distributions.items()):
        identity[f"search {name}"] = _described(distribution)
    return identity


def identity_hash(identity: dict) -> str:
    """A short hash of an identity, for study names.

    Args:
        identity: A study identity (see ``identity_of``).

    Returns:
        The first ``HASH_LENGTH`` hex digits of its canonical JSON's sha256.
    """
    return hashlib.sha256(canonical_json(identity).encode("utf-8")).hexdigest()[:HASH_LENGTH]


def default_study_name(cfg: DictConfig, identity: dict) -> str:
    """The study name derived from the experiment: ``<dataset>-<model>-<search>-<hash>``.

    Args:
        cfg: The composed sweep config (its group choices).
        identity: Its study identity.

    Returns:
        The name.
    """
    choices = cfg.hydra.runtime.choices
    return f"{choices.dataset}-{choices.model}-{choices.search}-{identity_hash(identity)}"


def differences(stored: dict, current: dict) -> list[str]:
    """``key: stored -> current`` for each key that differs, in key order.

    Args:
        stored: The identity the study recorded.
        current: This sweep's identity.

    Returns:
        One line per differing key; absent keys read ``(absent)``.
    """
    return [
        f"{key}: {_shown(stored.get(key, _ABSENT))} -> {_shown(current.get(key, _ABSENT))}"
        for key in sorted(stored.keys() | current.keys())
        if stored.get(key, _ABSENT) != current.get(key, _ABSENT)
    ]


def adopt_or_refuse(study, identity: dict, name_key: str = "hydra.sweeper.study_name") -> None:
    """Record the identity in a new study; refuse a study made for another experiment.

    Args:
        study: The Optuna study.
        identity: This sweep's identity.
        name_key: The setting that named the study, for messages.

    Raises:
        ConfigError: When the study holds another identity, or trials but no identity.
    """
    stored = study.user_attrs.get(IDENTITY_ATTR)
    if stored is None:
        if study.trials:  # made by a cvsweep that recorded no identity: nothing to compare
            raise ConfigError(
                f"{name_key}={study.study_name}: this study holds {len(study.trials)} trials but no recorded "
                "identity (an earlier cvsweep made it), so it cannot be shown to be the same experiment; "
                "choose another study_name, or leave it unset for a name derived from the experiment")
        study.set_user_attr(IDENTITY_ATTR, identity)
        return
    changed = differences(stored, identity)
    if changed:
        raise ConfigError(
            f"{name_key}={study.study_name}: that study is another experiment; what differs "
            f"(stored -> now):\n    " + "\n    ".join(changed)
            + "\n  run with the study's settings, choose another study_name, or leave it unset "
            "for a name derived from the experiment")


def settle_study(cfg: DictConfig) -> None:
    """Name the study after the experiment unless named, and refuse a stored study of another one.

    Runs before any trial exists; an in-memory study needs no check.

    Args:
        cfg: The composed sweep config; ``hydra.sweeper.study_name`` is filled in when unset.

    Raises:
        ConfigError: When the stored study is another experiment.
    """
    sweeper = cfg.hydra.sweeper
    identity = identity_of(cfg)
    if not sweeper.study_name:
        with read_write(sweeper):
            sweeper.study_name = default_study_name(cfg, identity)
    if not sweeper.storage:  # in memory: a new study every time
        return
    storage = open_storage(sweeper.storage, sweeper.heartbeat_interval, sweeper.grace_period)
    study = create_or_load(storage, sweeper.study_name, directions=directions_of(cfg))
    adopt_or_refuse(study, identity)


def _plain_value(key: str, expression: str) -> Any:
    return OverridesParser.create().parse_override(f"{key}={expression}").value()


def _flat(data: Any, prefix: str = "") -> dict:
    if isinstance(data, dict):
        out: dict = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def _described(distribution) -> str:
    """A distribution as a person reads it: choice(8, 16), int[1, 3], float[0.0001, 0.01] log."""
    if isinstance(distribution, CategoricalDistribution):
        return "choice(" + ", ".join(map(str, distribution.choices)) + ")"
    kind = "int" if isinstance(distribution, IntDistribution) else "float"
    text = f"{kind}[{distribution.low}, {distribution.high}]"
    if distribution.log:
        text += " log"
    if distribution.step not in (None, 1):
        text += f" step {distribution.step}"
    return text


_ABSENT = object()


def _shown(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    return "null" if value is None else str(value)
