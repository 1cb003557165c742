"""What ``cvsweep --help`` lists, derived instead of written out: the subcommands from their
table (cvsweep/cli/subcommands.py), the config groups and their options from the config tree
itself, the objectives from the schema. The help page (conf/hydra/help/cvsweep.yaml) calls
these through OmegaConf resolvers."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from cvsweep.config.schema import OBJECTIVES

SUMMARY_WIDTH = 72  # an option's first comment line: what it is, in one short line


def groups(choices, conf_dir: Path) -> str:
    """Each group of the config tree with its options, the chosen one starred, and what the
    option's file says of itself (its first comment line).

    Args:
        choices: Hydra's ``hydra.runtime.choices`` (group -> chosen option), or None.
        conf_dir: The config tree (cvsweep/compose.py's ``CONF_DIR``).

    Returns:
        The listing, one line per group and per option.
    """
    lines = []
    for group in sorted(p for p in conf_dir.iterdir() if p.is_dir() and p.name != "hydra"):
        chosen = (choices or {}).get(group.name)
        lines.append(f"{group.name}:")
        for option in sorted(group.glob("*.yaml")):
            mark = "*" if option.stem == chosen else " "
            lines.append(f"  {mark} {option.stem:<22} {summary(option)}".rstrip())
    return "\n".join(lines) + "\n"


def summary(path: Path) -> str:
    """An option file's first comment line, which says what the option is.

    Args:
        path: The option's YAML file.

    Returns:
        The line without its ``#``, or "" when it has none.
    """
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.startswith("#") and not text.startswith("# @package"):
            return text.lstrip("# ").rstrip()
    return ""


def objectives() -> str:
    """Each objective with its direction and what it measures, one line each.

    Returns:
        The lines, for the help page.
    """
    width = max(map(len, OBJECTIVES))
    return "".join(f"  {name:<{width}} {spec.direction:<9} {spec.description}\n" for name, spec in OBJECTIVES.items())


def register_resolvers(conf_dir: Path) -> None:
    """Register the help page's resolvers (``cvsweep.groups``, ``cvsweep.objectives``).

    Args:
        conf_dir: The config tree whose groups ``cvsweep.groups`` lists.
    """
    OmegaConf.register_new_resolver("cvsweep.groups", lambda choices: groups(choices, conf_dir), replace=True)
    OmegaConf.register_new_resolver("cvsweep.objectives", objectives, replace=True)


def subcommands(listed: dict[str, str]) -> str:
    """Each subcommand with what it does, one line each.

    Args:
        listed: Subcommand -> one line.

    Returns:
        The lines, for the help page.
    """
    width = max(map(len, listed), default=0)
    return "".join(f"  cvsweep {name:<{width}}  {what}\n" for name, what in listed.items())


def register_subcommands(listed: dict[str, str]) -> None:
    """Register the help page's ``cvsweep.subcommands`` resolver.

    Args:
        listed: Subcommand -> one line (the command's table).
    """
    OmegaConf.register_new_resolver("cvsweep.subcommands", lambda: subcommands(listed), replace=True)
