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

    ``OnfhError`` (bad input the user can fix) and ``OSError`` (a file system that refuses)
    become one line on stderr and exit 2; Ctrl-C exits 130 without a traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    quiet_itk()
    try:
        return int(args.func(args) or 0)
    except OnfhError as error:
        print(f"onfh: error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("onfh: interrupted", file=sys.stderr)
        return 130
    except OSError as error:
        # The disk or the file system refused (permission, full disk, read-only): the user's
        # to fix, so one line naming the file, as for any bad input.
        where = f"{error.filename}: " if error.filename else ""
        print(f"onfh: error: {where}{one_line(error.strerror or str(error))}", file=sys.stderr)
        return 2
    except MemoryError:
        print("onfh: error: out of memory; close other programs or use a smaller image", file=sys.stderr)
        return 2


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of spaces folded: errors are one line."""
    return " ".join(text.split())


def quiet_itk() -> None:
    """Keep ITK's warnings (e.g. GDCM scanning a folder of NIfTI files) off the console.

    Only the command line does this: inside Slicer the same engine must not change the
    application's global ITK settings. Problems reach the user as ``OnfhError`` lines.
    """
    import SimpleITK as sitk

    sitk.ProcessObject_SetGlobalWarningDisplay(False)


if __name__ == "__main__":
    sys.exit(main())
