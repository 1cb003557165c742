"""The one command, ``cvsweep``: the Hydra app (``cvsweep [overrides]``, ``cvsweep -m``) and its
subcommands (``cvsweep serve``, ``evaluate``, ``plot``, ``compare``, ``deploy``, ``datasets``,
``completion``), dispatched by cvsweep/cli/main.py. The top layer: it may import any other,
and nothing imports it but ``cvsweep/__main__.py``."""
