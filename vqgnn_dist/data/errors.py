"""The one exception type of the data layer."""

from __future__ import annotations


class DataError(ValueError):
    """Bad or missing input data.

    The message is one line that names the file (or dataset), the field and
    how to fix it; the CLI prints it as ``error: <message>`` and exits 2.
    """
