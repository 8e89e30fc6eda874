"""Is an image file complete? Checks the readers cannot be trusted to make.

ITK's NIfTI reader fills whatever a truncated ``.nii`` or ``.nii.gz`` lacks and returns
an image without a word; the segmentation of that image looks like any other and its
grade is wrong. NRRD and MetaImage readers notice a short file but say so on the native
console ("data not read completely") and raise an unrelated message ("No such file or
directory"). So before a NIfTI file is read, its whole compressed stream is decoded and
its data length compared with the header's; the native console of every read is
captured, so what it said can go into one clear line instead of onto the terminal.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import struct
import sys
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onfh.errors import OnfhError

_CHUNK = 1 << 20
# Phrases native readers use for data shorter than the header says (NRRD, MetaIO, GDCM).
_TRUNCATION_PHRASES = ("not read completely", "expected", "fread got only", "premature", "truncat")


_NIFTI_FLOAT_TYPES = {16: "f4", 64: "f8"}  # NIfTI datatype codes of float32 and float64


@dataclass
class NiftiHeader:
    """What a NIfTI-1/2 header says about the data that follow it."""

    data_offset: int  # vox_offset: where the voxel data start
    data_bytes: int  # voxels times bytes per voxel
    float_dtype: str | None  # numpy dtype of float data ("<f4", ">f8"), None for other types

    @property
    def expected_bytes(self) -> int:
        return self.data_offset + self.data_bytes


def parse_nifti_header(header: bytes) -> NiftiHeader | None:
    """The data layout a single-file NIfTI-1/2 header describes, or ``None`` if it is not one."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", header[70:74])
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            dims = struct.unpack(endian + "8q", header[16:80])
            datatype, bitpix = struct.unpack(endian + "2h", header[12:16])
            offset = int(struct.unpack(endian + "q", header[168:176])[0])
            break
    else:
        return None
    rank = int(dims[0])
    if not 1 <= rank <= 7 or bitpix <= 0 or any(int(n) < 0 for n in dims[1 : rank + 1]):
        return None
    voxels = int(np.prod([int(n) for n in dims[1 : rank + 1]], dtype=object))
    code = _NIFTI_FLOAT_TYPES.get(int(datatype))
    return NiftiHeader(offset, voxels * int(bitpix) // 8, endian + code if code else None)


@dataclass
class NiftiScan:
    """A NIfTI file read through once: its header, data length and non-finite voxels."""

    header: NiftiHeader | None
    length: int = 0  # bytes of the (decoded) file
    nonfinite_voxels: int = 0
    _pending: bytes = b""

    def feed(self, block: bytes, start: int) -> None:
        """Count NaN/inf in the float voxels of ``block``, which starts at byte ``start``."""
        self.length = start + len(block)
        layout = self.header
        if layout is None or layout.float_dtype is None:
            return
        low = max(start, layout.data_offset)
        high = min(self.length, layout.expected_bytes)
        if high <= low:
            return
        data = self._pending + block[low - start : high - start]
        size = np.dtype(layout.float_dtype).itemsize
        whole = len(data) - len(data) % size
        values = np.frombuffer(data[:whole], dtype=layout.float_dtype)
        self.nonfinite_voxels += int(values.size - np.count_nonzero(np.isfinite(values)))
        self._pending = data[whole:]


def _blocks(path: Path) -> Iterator[bytes]:
    """The decoded bytes of ``path`` (gunzipped if gzip data) in blocks; damage raises ``OnfhError``."""
    with open(path, "rb") as stream:
        compressed = stream.read(2) == b"\x1f\x8b"  # gzip's magic: a ".nii.gz" may be plain
    if not compressed:
        with open(path, "rb") as stream:
            yield from iter(lambda: stream.read(_CHUNK), b"")
        return
    try:
        with gzip.open(path, "rb") as stream:
            yield from iter(lambda: stream.read(_CHUNK), b"")
    except EOFError:
        raise OnfhError(f"{path}: file is truncated (the compressed data end early); copy it again") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as error:
        raise OnfhError(f"{path}: compressed data are damaged ({error}); copy it again") from None


def scan_nifti(path: str | os.PathLike) -> NiftiScan:
    """Read a ``.nii``/``.nii.gz`` once, in blocks: decode it whole (``gzip`` checks the CRC
    and length), measure its data and count non-finite float voxels.

    Raises:
        OnfhError: a damaged or truncated compressed stream.
    """
    p = Path(path)
    scan: NiftiScan | None = None
    head = b""
    offset = 0
    for block in _blocks(p):
        if scan is not None:
            scan.feed(block, offset)
            offset += len(block)
            continue
        head += block
        if len(head) >= 540:  # a whole NIfTI-2 header (NIfTI-1 needs 348)
            scan = NiftiScan(parse_nifti_header(head))
            scan.feed(head, 0)
            offset = len(head)
    if scan is None:
        scan = NiftiScan(parse_nifti_header(head))
        scan.feed(head, 0)
    return scan


def require_intact_nifti(path: str | os.PathLike) -> None:
    """Refuse a ``.nii``/``.nii.gz`` that is damaged, shorter than its header says, or holds NaN/inf.

    ITK's NIfTI reader fills missing data and turns NaN into 0 without a word, so these
    are found here, on the file's own bytes, before it is read.

    Raises:
        OnfhError: naming the file and what is wrong with it.
    """
    scan = scan_nifti(path)
    layout = scan.header
    if layout is None:
        return  # not NIfTI after all: the reader will say what it is not
    if scan.length < layout.expected_bytes:
        raise OnfhError(
            f"{path}: file is truncated ({scan.length:,} of the {layout.expected_bytes:,} bytes "
            "its header describes); copy it again"
        )
    voxels = layout.data_bytes // np.dtype(layout.float_dtype).itemsize if layout.float_dtype else 0
    if scan.nonfinite_voxels and scan.nonfinite_voxels == voxels:
        raise OnfhError(f"{path}: image holds no numbers (every voxel is NaN or infinite)")
    if scan.nonfinite_voxels:
        raise OnfhError(f"{path}: image contains NaN or infinite values ({scan.nonfinite_voxels:,} voxels)")


def sounds_truncated(text: str) -> bool:
    """Whether a native reader's message says the data ended before the header's size."""
    lowered = text.lower()
    return any(phrase in lowered for phrase in _TRUNCATION_PHRASES)


class CapturedOutput:
    """What the native code wrote to the console while captured (``text`` after the block)."""

    text: str = ""


def _flush_c_stdio() -> None:
    """Flush C's stdio buffers: C++ streams (MetaIO writes to ``std::cout``) land there."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError, TypeError):  # no such C library (Windows)
        ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def captured_native_stderr() -> Iterator[CapturedOutput]:
    """Send the native console (file descriptors 1 and 2: ITK, GDCM, MetaIO, NRRD) to a
    buffer for a block; ``text`` holds what was written.

    Python's streams and C's stdio buffers are flushed at both ends, so nothing written
    inside the block reaches the terminal, and nothing written before it is captured.
    """
    captured = CapturedOutput()
    descriptors = [1, 2]  # where native code writes, whatever Python's sys.stdout is now
    try:
        for fd in descriptors:
            os.fstat(fd)
    except OSError:  # no console at all (a GUI application)
        yield captured
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    _flush_c_stdio()
    saved = [os.dup(fd) for fd in descriptors]
    with tempfile.TemporaryFile() as buffer:
        for fd in descriptors:
            os.dup2(buffer.fileno(), fd)
        try:
            yield captured
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            _flush_c_stdio()
            for fd, copy in zip(descriptors, saved):
                os.dup2(copy, fd)
                os.close(copy)
            buffer.seek(0)
            captured.text = buffer.read().decode("utf-8", "replace")
