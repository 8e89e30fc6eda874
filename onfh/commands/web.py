"""``onfh web``: the surgeon's loop in a browser (trame-slicer), served from this machine.

Safe by default: it listens on 127.0.0.1 only, reads images only under ``--data`` and
writes results only there. Another ``--host`` makes the page reachable from the network
and prints a warning. Needs the ``[web]`` extra.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from onfh.errors import OnfhError

DEFAULT_PORT = 8080


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "web",
        help="open the segment-correct-grade loop in a browser (needs the [web] extra)",
        description="Serve the ONFH web application: load an MRI (or the synthetic sample hip, the "
        "default), Segment, correct in the Segment Editor, watch the grade follow, Save. Listens on "
        "127.0.0.1 unless --host says otherwise; reads and writes files only under --data.",
    )
    parser.add_argument(
        "images", nargs="*", metavar="IMAGE", help="image file(s) or DICOM folder(s) under --data"
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="folder the page may read images from and save results into "
        "(default: the first IMAGE's folder, else the current folder)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser window")
    parser.set_defaults(func=run)


def data_folder(data: str | None, images: list[str]) -> Path:
    """The ``--data`` folder: given, else the first image's folder, else the current folder.

    Raises:
        OnfhError: the folder does not exist, or an IMAGE lies outside it.
    """
    folder = Path(data) if data else (Path(images[0]).resolve().parent if images else Path.cwd())
    if not folder.is_dir():
        raise OnfhError(f"{folder}: --data is not a folder")
    root = folder.resolve()
    for image in images:
        resolved = Path(image).resolve()
        if not resolved.exists():
            raise OnfhError(f"{image}: no such file or folder")
        if root not in resolved.parents:
            raise OnfhError(f"{image}: outside --data {root}; the page reads files only under --data")
    return root


def run(args: argparse.Namespace) -> int:
    from onfh.web.files import host_warning

    root = data_folder(args.data, args.images)
    missing = [name for name in ("trame", "trame_slicer") if importlib.util.find_spec(name) is None]
    if missing:
        raise OnfhError(
            f"onfh web needs the web extra: pip install -e '.[web]' ({', '.join(missing)} missing)"
        )
    from onfh.web.server import serve

    warning = host_warning(args.host)
    if warning:
        print(warning, file=sys.stderr)
    first = [str(Path(i).resolve().relative_to(root)) for i in args.images]
    serve(root, first[0] if first else None, args.host, args.port, open_browser=not args.no_browser)
    return 0
