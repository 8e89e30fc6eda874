"""Can the results be written? Asked before any work, so minutes of segmentation or hours of
training never end in a permission error on the first write.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from onfh.errors import OnfhError


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or its closest ancestor that exists."""
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def require_writable_folder(folder: str | os.PathLike, option: str = "-o") -> None:
    """Refuse an output folder that cannot be created or written, without leaving anything behind.

    The test is the real thing: a temporary file (in an existing folder) or a temporary
    folder (in the closest existing ancestor of a missing one) is created and removed.
    Permission bits alone would not do: they say nothing for root, read-only mounts or
    full disks.

    Args:
        folder: the output folder, which need not exist yet.
        option: the command-line option that named it, for the message.

    Raises:
        OnfhError: one line naming the folder and why it cannot be written.
    """
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise OnfhError(f"{target}: output ({option}) exists and is not a folder")
    base = _nearest_existing(target)
    if not base.is_dir():
        raise OnfhError(f"{target}: cannot create the output folder ({option}): {base} is not a folder")
    try:
        if base == target.absolute():
            fd, probe = tempfile.mkstemp(prefix=".onfh-write-test-", dir=base)
            os.close(fd)
            os.unlink(probe)
        else:
            shutil.rmtree(tempfile.mkdtemp(prefix=".onfh-write-test-", dir=base))
    except OSError as error:
        reason = error.strerror or type(error).__name__
        where = "write in" if base == target.absolute() else f"create folders in {base} for"
        raise OnfhError(f"{target}: cannot {where} the output folder ({option}): {reason.lower()}") from None
