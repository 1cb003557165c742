"""A config as the command line would compose it, from Python: for the tests and the
benchmarks, which need the same config without running the CLI."""

from __future__ import annotations

from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode

from cvsweep import help_text
from cvsweep.config.schema import register_configs

# The config tree is the package's conf/: in a checkout a link to the repository's top-level
# conf/, in the wheel a copy of it (hatch follows the link), so both find it the same way.
CONF_DIR = Path(__file__).resolve().parent / "conf"


def register() -> None:
    """What Hydra needs before it composes cvsweep's config: the schemas in its ConfigStore and
    the help page's resolvers. Idempotent; the command does it at import."""
    register_configs()
    help_text.register_resolvers(CONF_DIR)


def compose(*overrides: str):
    """The config Hydra composes for ``python -m cvsweep OVERRIDES`` (hydra node included).

    Args:
        *overrides: Command-line overrides.

    Returns:
        The composed DictConfig.
    """
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def compose_sweep(*overrides: str):
    """The config Hydra composes for ``python -m cvsweep -m OVERRIDES`` (sweeps allowed).

    As the checks before a sweep see it: the sweep's overrides in ``hydra.overrides.task``.

    Args:
        *overrides: Command-line overrides, sweeps included.

    Returns:
        The composed DictConfig.
    """
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return GlobalHydra.instance().hydra.compose_config(
            config_name="config", overrides=list(overrides), run_mode=RunMode.MULTIRUN, with_log_configuration=False)


def group_options(*groups: str) -> dict[str, list[str]]:
    """The options of each config group, as Hydra finds them (conf/ and the ConfigStore).

    Args:
        *groups: Group names, such as ``dataset`` or ``hydra/sweeper/pruner``.

    Returns:
        Each group's options, sorted.
    """
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        return {group: sorted(loader.get_group_options(group)) for group in groups}
