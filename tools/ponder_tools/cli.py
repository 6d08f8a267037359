"""The ``ponder`` command line: offline tools around a Ponder installation.

Subcommands register themselves from their own modules (``add_*_parser``), so this file
stays a table of contents. Output goes to stdout; errors are one line on stderr and a
non-zero exit.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

# (module, add-parser function) for each subcommand; imported lazily to keep start-up fast.
_SUBCOMMANDS: tuple[tuple[str, str], ...] = (
    ("ponder_tools.sim.cli", "add_simulate_parser"),
    ("ponder_tools.costreport.cli", "add_cost_parser"),
    ("ponder_tools.evaluation.cli", "add_evaluate_parser"),
    ("ponder_tools.evaluation.cli", "add_calibrate_parser"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ponder", description="Ponder: reasoning LLM serving on Kubernetes."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name, function_name in _SUBCOMMANDS:
        module = __import__(module_name, fromlist=[function_name])
        add: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] = getattr(
            module, function_name
        )
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
