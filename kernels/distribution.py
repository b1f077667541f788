"""How each kernel is distributed over chunks of the time axis: plain data.

Every public kernel carries a declaration, set beside its definition with
:func:`distributed`, that the toolkit's execution layer reads to build the
Dask graph; no wrapper works a halo out by itself.

- :class:`Pointwise` -- each sample on its own.
- :class:`Window` -- each sample needs neighbours: ``before``/``after``
  samples (a number, or the name of the kernel argument holding the count,
  plus a constant), or, when the kernel runs on the sample times, the
  samples within the duration held by the argument ``span``.
- :class:`Scan` -- runs through time carrying a state: the kernel takes
  ``state=`` and, with ``return_state=True``, returns ``(*outputs, state)``.
- :class:`Reduce` -- needs the whole series (binning, downsampling).

``outputs`` names what a kernel returns, in order, with its dtype:
``"same"`` is the input's float dtype.

Examples
--------
>>> import kernels
>>> d = kernels.move_mean.distribution
>>> type(d).__name__, d.before, d.before_add
('Window', 'window', -1)
>>> kernels.move_mean.distribution.halo({"window": 60})
(59, 0)
"""

from __future__ import annotations

from dataclasses import dataclass

SAME = (("result", "same"),)
FLAG = (("flag", "int8"),)


@dataclass(frozen=True)
class Pointwise:
    """Each sample alone: chunks need nothing from their neighbours."""

    outputs: tuple = SAME


@dataclass(frozen=True)
class Window:
    """Needs the samples around each one (a halo from the neighbouring chunks)."""

    before: int | str = 0
    before_add: int = 0
    after: int | str = 0
    after_add: int = 0
    span: str | None = None
    span_after: bool = False
    span_inclusive: bool = False
    outputs: tuple = SAME

    def halo(self, args: dict) -> tuple[int | None, int | None]:
        """Samples needed before and after each chunk for these arguments.

        None where the argument that sets it is None (the whole series is
        needed then).
        """
        return (_count(self.before, self.before_add, args),
                _count(self.after, self.after_add, args))

    def span_of(self, args: dict) -> tuple[int, bool]:
        """For a kernel run on times: the halo's duration (ns) and whether it
        also reaches after each chunk. The halos count strictly, so an
        inclusive span (ends at most ``span`` apart) adds one nanosecond."""
        return int(args[self.span]) + int(self.span_inclusive), self.span_after


@dataclass(frozen=True)
class Scan:
    """Carries a state from chunk to chunk (``state=``, ``return_state=True``)."""

    outputs: tuple = SAME


@dataclass(frozen=True)
class Reduce:
    """Needs each series whole (or combines per-chunk partial results)."""

    outputs: tuple = SAME


def _count(spec, add, args):
    if isinstance(spec, int):
        return spec + add
    value = args.get(spec)
    return None if value is None else int(value) + add


def distributed(declaration):
    """Attach ``declaration`` to a kernel as its ``distribution`` attribute."""

    def attach(func):
        func.distribution = declaration
        return func

    return attach
