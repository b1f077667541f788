"""The toolkit's exceptions: one root, specific subclasses.

Every message names what was wrong (the argument, file, URL or address and
the offending value) and what to do about it.
"""

from __future__ import annotations


class ToolkitError(Exception):
    """Root of every error the toolkit raises on purpose."""


class ClusterConnectionError(ToolkitError, ConnectionError):
    """A Dask scheduler could not be reached at the given address."""


class ArgumentError(ToolkitError, ValueError, TypeError):
    """An argument of the wrong type or value: the message names the argument,
    the value given and what is expected. Callers may catch it as
    :class:`ValueError` or :class:`TypeError` too."""


class DataModelError(ToolkitError, ValueError):
    """A dataset does not follow the fleet data model (dims, dtypes, coords)."""


class LoadError(ToolkitError, ValueError):
    """Input files that cannot be loaded as asked: the message names the file,
    the line, the field, the offending text and what to do."""


__all__ = ["ArgumentError", "ClusterConnectionError", "DataModelError", "LoadError",
           "ToolkitError"]
