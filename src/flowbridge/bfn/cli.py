"""``python -m flowbridge.bfn fit --config models/bfn_*.yaml``, the same as ``flowbridge fit``.

The discretized and discrete recipes name :class:`~flowbridge.bfn.BFNModule` as their
``model.class_path``, which ``flowbridge fit`` accepts; this entry point is kept as an alias.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from flowbridge.cli import ConfigError, FlowbridgeCLI
from flowbridge.cli import build_cli as flowbridge_build_cli
from flowbridge.training.data import DataError


def build_cli(args: Sequence[str], *, run: bool = True) -> FlowbridgeCLI:
    """Builds the CLI for ``args``; the recipes name :class:`BFNModule` as their ``class_path``, so
    this is :func:`flowbridge.cli.build_cli` itself (kept for ``python -m flowbridge.bfn``)."""
    return flowbridge_build_cli(args, run=run)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; configuration and data errors are printed as one line (exit code 2)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        build_cli(args)
    except (ConfigError, DataError) as exc:
        print(f"flowbridge.bfn: error: {exc}", file=sys.stderr)
        return 2
    return 0
