"""Operations on fleets: one module per kernel module it wraps.

:mod:`~toolkit.ops.rolling` (``kernels.rolling``, ``quantile``,
``timewindow``), :mod:`~toolkit.ops.ewm`, :mod:`~toolkit.ops.fill`,
:mod:`~toolkit.ops.qc`, :mod:`~toolkit.ops.detect`,
:mod:`~toolkit.ops.binning` (``regularize``) and :mod:`~toolkit.ops.lttb`
(``downsample``). Each hands its kernel to
:func:`toolkit.execution.apply.apply_kernel`; the accessor
(``ds.telemetry``) is their xarray face.
"""

__all__ = ["binning", "detect", "ewm", "fill", "lttb", "qc", "rolling"]
