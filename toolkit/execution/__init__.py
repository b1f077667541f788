"""Chunk-exact execution: kernels on Dask arrays, as each kernel declares.

:mod:`~toolkit.execution.apply` dispatches on a kernel's declared
distribution; :mod:`~toolkit.execution.graph` builds the window and scan
graphs; :mod:`~toolkit.execution.progress` computes with a progress bar and
a clean Ctrl-C.
"""

__all__ = ["apply", "graph", "progress"]
