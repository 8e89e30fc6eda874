"""``python -m onfh``: the same as the ``onfh`` command.

Slicer runs this file by path (``PythonSlicer <root>/onfh/__main__.py segment ...``), so
the child does not depend on ``PYTHONPATH`` surviving the PythonSlicer launcher. Run by
path, Python puts this folder first on ``sys.path``; the package's parent must be there
instead, or ``import onfh`` fails and the package's modules shadow top-level names.
"""

from __future__ import annotations

import os
import sys

if not __package__:
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from onfh.cli import main  # needs the path set above when run by path

if __name__ == "__main__":
    sys.exit(main())
