"""The one exception type the command line turns into a one-line message."""

from __future__ import annotations


class OnfhError(Exception):
    """A problem with the user's input or environment, explained in one line.

    Raised for anything a user can fix (a missing file, a 2D image, weights that fail
    their checksum). The CLI prints ``onfh: error: <message>`` and exits non-zero; it
    never shows a traceback for these. Programming errors stay ordinary exceptions.
    """
