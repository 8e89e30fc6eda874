"""``python -m onfh``: the same as the ``onfh`` command (Slicer runs it this way)."""

from __future__ import annotations

import sys

from onfh.cli import main

if __name__ == "__main__":
    sys.exit(main())
