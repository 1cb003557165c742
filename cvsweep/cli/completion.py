"""``cvsweep completion bash``: a bash completion script for the whole command.

    eval "$(cvsweep completion bash)"     # in ~/.bashrc

It completes the subcommands' names, their options and their options' choices, and leaves
everything else (``cvsweep [overrides]``, ``cvsweep -m ...``) to Hydra's own completion of
groups, options and keys (the function ``cvsweep -sc install=bash`` prints, which asks
``cvsweep -sc query=bash``), so overrides are completed in one place.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex

SHELLS = ("bash",)
# Where Hydra's script registers its own function for the command; this script registers its own.
HYDRA_REGISTRATION = "COMP_WORDBREAKS=$COMP_WORDBREAKS complete"

FUNCTION = r'''
_cvsweep_completion()
{
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" key="${COMP_WORDS[1]}"
    if (( COMP_CWORD == 1 )); then
        hydra_bash_completion
        COMPREPLY+=($(compgen -W "__SUBCOMMANDS__" -- "$cur"))
        return
    fi
    if (( COMP_CWORD > 2 )) && [[ " __NESTED__ " == *" ${COMP_WORDS[1]} "* ]]; then
        key="${COMP_WORDS[1]} ${COMP_WORDS[2]}"
    fi
    local options="" values="" words=""
    case "$key" in
__CASES__
        *) hydra_bash_completion; return ;;
    esac
    if [[ " $values " == *" $prev "* ]]; then COMPREPLY=(); return; fi  # a value: files, by default
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$options" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$words" -- "$cur"))  # none: bash completes file names
    fi
}
COMP_WORDBREAKS=${COMP_WORDBREAKS//=}
COMP_WORDBREAKS=$COMP_WORDBREAKS complete -o nospace -o default -F _cvsweep_completion cvsweep
'''


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command line of ``cvsweep completion``.

    Args:
        parser: The subcommand's parser.
    """
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete in")


def run(args: argparse.Namespace) -> int:
    """Print the completion script.

    Args:
        args: The parsed command line.

    Returns:
        0.
    """
    print(bash_script())
    return 0


def bash_script() -> str:
    """The bash completion script of ``cvsweep``.

    Returns:
        Hydra's completion function, then this command's, registered for ``cvsweep``.
    """
    from cvsweep.cli.main import parser

    cases, nested = [], []
    for name, sub in _subparsers(parser()).items():
        inner = _subparsers(sub)
        if inner:
            nested.append(name)
            cases.append(_case(name, sub, words=list(inner)))
            cases += [_case(f"{name} {action}", parser_) for action, parser_ in inner.items()]
        else:
            cases.append(_case(name, sub))
    function = (FUNCTION.replace("__SUBCOMMANDS__", " ".join(_subparsers(parser())))
                .replace("__NESTED__", " ".join(nested)).replace("__CASES__", "\n".join(cases)))
    return hydra_bash_function() + function


def hydra_bash_function() -> str:
    """Hydra's bash completion function, ``hydra_bash_completion``, without its registration.

    Returns:
        The script ``cvsweep -sc install=bash`` prints, up to where it registers itself.
    """
    from hydra._internal.core_plugins.bash_completion import BashCompletion

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        BashCompletion(config_loader=None).install()
    script = printed.getvalue()
    script = script[:script.index(HYDRA_REGISTRATION)]
    return "\n".join(line for line in script.splitlines() if not line.startswith("export _HYDRA_OLD_COMP")
                     and not line.startswith("COMP_WORDBREAKS=")) + "\n"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _case(key: str, parser: argparse.ArgumentParser, words: list[str] | None = None) -> str:
    options, values, choices = [], [], list(words or [])
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        options += action.option_strings
        if action.option_strings and action.nargs != 0:
            values += action.option_strings
        if not action.option_strings and action.choices:
            choices += [str(choice) for choice in action.choices]
    return (f"        {shlex.quote(key)}) options={shlex.quote(' '.join(options))}; "
            f"values={shlex.quote(' '.join(values))}; words={shlex.quote(' '.join(choices))} ;;")
