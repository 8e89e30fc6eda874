"""What the browser may see of the server's disk: images under ``--data``, nothing else.

A browser page is less trusted than a command line: it can send any string as a "path".
Every path the page names is resolved against the data folder and refused if it leaves
it (``..``, absolute paths, symbolic links pointing out), so the server never reads a
file the person who started it did not put under ``--data``. Pure functions, no trame.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from onfh.errors import OnfhError
from onfh.imageio import IMAGE_SUFFIXES, image_suffix

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_LISTED = 500
"""The picker lists at most this many entries (a data folder may be a whole archive)."""
MAX_DEPTH = 3
DICOM_SUFFIXES = (".dcm", ".ima")
UPLOAD_LIMIT_BYTES = 512 * 1024**2
"""Largest accepted upload: a 3D hip MRI is tens of MB; anything this large is not one."""
UPLOAD_FOLDER = "uploads"


def resolve_under(root: str | os.PathLike, relative: str) -> Path:
    """The path ``relative`` names inside ``root``, fully resolved.

    Raises:
        OnfhError: the path is absolute, or leaves ``root`` (``..``, a link pointing out).
    """
    base = Path(root).resolve()
    text = str(relative).strip()
    if not text or Path(text).is_absolute() or text.startswith("~"):
        raise OnfhError(f"{text or '(empty)'}: not a path inside the data folder")
    target = (base / text).resolve()
    if target != base and base not in target.parents:
        raise OnfhError(f"{text}: outside the data folder; refused")
    return target


def _is_image_file(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and any(name.endswith(s) for s in IMAGE_SUFFIXES) and not name.endswith(".seg.nrrd")


def _is_dicom_folder(path: Path) -> bool:
    try:
        return any(p.is_file() and p.suffix.lower() in DICOM_SUFFIXES for p in path.iterdir())
    except OSError:
        return False


def list_inputs(root: str | os.PathLike, max_depth: int = MAX_DEPTH, limit: int = MAX_LISTED) -> list[str]:
    """Image files and DICOM folders under ``root``, as paths relative to it, sorted.

    Segmentations (``.seg.nrrd``) and hidden entries are skipped; links that point out of
    ``root`` are not followed.
    """
    base = Path(root).resolve()
    found: list[str] = []

    def walk(folder: Path, depth: int) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        for entry in entries:
            if len(found) >= limit or entry.name.startswith("."):
                continue
            try:
                resolved = entry.resolve()
            except OSError:
                continue
            if resolved != base and base not in resolved.parents:
                continue
            if _is_image_file(entry):
                found.append(entry.relative_to(base).as_posix())
            elif entry.is_dir():
                if _is_dicom_folder(entry):
                    found.append(entry.relative_to(base).as_posix() + "/")
                elif depth < max_depth:
                    walk(entry, depth + 1)

    walk(base, 1)
    return found


def upload_path(
    root: str | os.PathLike, name: str, size_bytes: int, limit_bytes: int = UPLOAD_LIMIT_BYTES
) -> Path:
    """Where an uploaded image is stored: ``<root>/uploads/<name>``, never replacing a file.

    Only the file name's last component is used, restricted to letters, digits and
    ``._-`` (a name cannot place the file elsewhere); a taken name gets ``-2``, ``-3``...

    Raises:
        OnfhError: over the size limit, or not a NIfTI/NRRD/MHA file name.
    """
    base_name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(name).replace("\\", "/")).name).lstrip(".")
    if size_bytes > limit_bytes:
        mib = limit_bytes // 1024**2
        raise OnfhError(
            f"{base_name or name}: {size_bytes / 1024**2:.0f} MiB is over the {mib} MiB upload limit"
        )
    suffix = image_suffix(base_name)
    if not suffix or base_name.lower().endswith(".seg.nrrd"):
        raise OnfhError(
            f"{name}: not an image file ({', '.join(IMAGE_SUFFIXES)}); upload DICOM as files under --data"
        )
    folder = Path(root) / UPLOAD_FOLDER
    stem, candidate, number = base_name[: -len(suffix)], base_name, 2
    while (folder / candidate).exists():
        candidate, number = f"{stem}-{number}{suffix}", number + 1
    return folder / candidate


def host_warning(host: str) -> str | None:
    """A warning when the server listens beyond this machine, else ``None``."""
    if host in LOOPBACK_HOSTS:
        return None
    return (
        f"onfh web: WARNING: listening on {host}: anyone who can reach this machine can open the page, "
        "see the images under --data and save into it. There is no login; use a trusted network."
    )


def sample_cache_dir() -> Path:
    """Where the synthetic sample hip is generated: ``$XDG_CACHE_HOME/onfh`` (``~/.cache/onfh``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "onfh"
