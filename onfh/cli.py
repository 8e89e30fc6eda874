"""The ``onfh`` command: one entry point, one sub-command per module in ``onfh.commands``.

Sub-commands are discovered from the ``onfh.commands`` package, so adding a command is
adding a file. Each command module defines ``register(subparsers)`` and keeps heavy
imports (torch, monai) inside its run function, so ``onfh --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from onfh import __version__
from onfh.errors import OnfhError


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every sub-command found in ``onfh.commands``."""
    import onfh.commands as commands

    parser = argparse.ArgumentParser(
        prog="onfh",
        description="Femoral head osteonecrosis: segment 3D MRI, grade (Steinberg A/B/C), "
        "synthesise phantoms, train, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"onfh {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        importlib.import_module(f"onfh.commands.{info.name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code.

    ``OnfhError`` (bad input the user can fix) becomes one line on stderr and exit 2;
    Ctrl-C exits 130 without a traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except OnfhError as error:
        print(f"onfh: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("onfh: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
