"""A sweep's job configs without composing each one anew.

Hydra's launchers compose every job's config from the defaults list (``load_sweep_config``,
the largest part of cvsweep's per-trial overhead). A sweep's
jobs usually differ in values only: the same keys each time, no config group switched. For
those, the config composed for an earlier job with the same keys is copied, the new values
are applied with Hydra's own override code, and the two hydra.* fields that depend on the
overrides are set as Hydra sets them. Anything else (a group choice, ``+key``/``~key``, a
``hydra.*`` key) is composed by Hydra as before. A test checks that both ways give the same
config.
"""

from __future__ import annotations

import copy
from typing import Any, List, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from cvsweep import compat


class SweepConfigCache:
    """Wraps Hydra's config loader; everything but load_sweep_config goes straight through."""

    def __init__(self, loader: Any):
        self.loader = loader
        self.templates: dict[tuple, DictConfig] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("loader", "templates"):  # unpickling (joblib's workers)
            raise AttributeError(name)
        return getattr(self.loader, name)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: List[str]) -> DictConfig:
        """A job's config: copied from an earlier job's with the same keys, or composed by Hydra.

        Args:
            master_config: The sweep's config.
            sweep_overrides: The job's overrides.

        Returns:
            The job's config, as Hydra's ``load_sweep_config`` would return it.
        """
        parsed = OverridesParser.create().parse_overrides(list(sweep_overrides))
        keys = _value_only_keys(master_config, parsed)
        template = self.templates.get(keys) if keys is not None else None
        if template is None:
            config = self.loader.load_sweep_config(master_config, sweep_overrides)
            if keys is not None:
                self.templates[keys] = copy.deepcopy(config)  # before the launcher and run_job edit it
            return config
        config = copy.deepcopy(template)
        compat.apply_overrides(_values(master_config, parsed), config)
        naming = config.hydra.job.config.override_dirname
        with open_dict(config.hydra):
            config.hydra.overrides.task = [o.input_line for o in parsed]
            config.hydra.job.override_dirname = compat.overrides_dirname(
                parsed, kv_sep=naming.kv_sep, item_sep=naming.item_sep, exclude_keys=naming.exclude_keys)
        OmegaConf.copy_cache(from_config=master_config, to_config=config)  # as load_sweep_config does
        return config


def _value_only_keys(master_config: DictConfig, parsed) -> Optional[tuple]:
    """What makes two jobs' configs differ only in values: the group choices (with their
    values: the same choices compose the same defaults) and the keys set. None when an
    override does more than choose a group or set a value."""
    groups = set(master_config.hydra.runtime.choices.keys())
    signature = []
    for override in parsed:
        key = override.key_or_group
        plain = not (override.is_add() or override.is_force_add() or override.is_delete()
                     or override.is_sweep_override() or override.is_hydra_override())
        if not plain or override.package is not None or key.split(".")[0] == "hydra":
            return None
        signature.append(override.input_line if key in groups else key)
    return tuple(signature)


def _values(master_config: DictConfig, parsed) -> list:
    groups = set(master_config.hydra.runtime.choices.keys())
    return [override for override in parsed if override.key_or_group not in groups]
