"""The pipeline's checks and detectors as kernel calls, and how far each one reaches.

A :class:`Step` is one check or detector on one metric: a kernel of
:mod:`kernels` with its arguments. Its reach along time comes from the
kernel's own declaration (:mod:`kernels.distribution`): a pointwise kernel
needs nothing around a sample, a window kernel ``before``/``after`` samples,
a scan its carried state. That is all the pipeline needs to run a step on
any stretch of the grid -- the whole history, or only the end of it in an
incremental run -- with the same result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

import kernels
from kernels.distribution import Pointwise, Scan, Window

from ..model import FLAG_MISSING, FLAG_NOT_EVALUATED, FLAG_PASS, FLAG_SUSPECT
from ..ops.detect import cycle_samples
from .config import tests_for

#: the events' ``kind`` and the variable suffix of each check and detector
KERNELS = {
    "gross_range": kernels.gross_range, "spike": kernels.spike,
    "rate_of_change": kernels.rate_of_change, "flat_line": kernels.flat_line,
    "time_gap": kernels.sample_gaps, "zscore": kernels.move_zscore,
    "anomaly": kernels.anomaly_score,
}
#: the alarm logic's arguments, the rest of an anomaly step's go to its score
ALARM_ARGS = ("threshold", "warmup", "min_duration", "merge_gap", "cooldown")


@dataclass(frozen=True)
class Step:
    """One check or detector of one metric, ready to run on numpy blocks."""

    kind: str
    metric: str
    args: dict = field(hash=False)
    times: bool = False
    threshold: float | None = None

    @property
    def kernel(self):
        return KERNELS[self.kind]

    @property
    def key(self) -> str:
        return f"{self.metric}/{self.kind}"

    @property
    def flag_name(self) -> str:
        return f"{self.metric}_{self.kind}_flag"

    @property
    def score_name(self) -> str | None:
        scored = self.threshold is not None or self.kind == "anomaly"
        return f"{self.metric}_{self.kind}_score" if scored else None

    @property
    def is_scan(self) -> bool:
        return isinstance(self.kernel.distribution, Scan)

    def halo(self) -> tuple[int, int]:
        """Samples needed before and after each output sample (0, 0 for scans)."""
        dist = self.kernel.distribution
        if isinstance(dist, (Pointwise, Scan)):
            return 0, 0
        assert isinstance(dist, Window) and dist.span is None
        before, after = dist.halo(self.args)
        return int(before), int(after)

    def run(self, values: np.ndarray, times: np.ndarray, state=None, *, with_state=False):
        """``(flag, score)`` over ``values`` (rows, time); with the end state for scans."""
        extra = {"times": times} if self.times else {}
        if self.kind == "anomaly":  # two scans: the score, and the alarms on it
            state = state or (None, None)
            alarm_args = {k: v for k, v in self.args.items() if k in ALARM_ARGS}
            score_args = {k: v for k, v in self.args.items() if k not in ALARM_ARGS}
            score, s1 = kernels.anomaly_score(values, **score_args, warmup=self.args["warmup"],
                                              state=state[0], return_state=True)
            flag, s2 = kernels.alarms(score, **alarm_args, state=state[1], return_state=True)
            flag[np.isnan(values)] = FLAG_MISSING
            return (flag, score, (s1, s2)) if with_state else (flag, score)
        if self.is_scan:
            flag, new_state = self.kernel(values, **self.args, **extra, state=state,
                                          return_state=True)
            return (flag, None, new_state) if with_state else (flag, None)
        out = self.kernel(values, **self.args, **extra)
        if self.threshold is None:
            return (out, None, None) if with_state else (out, None)
        flag = np.where(np.abs(out) > self.threshold, FLAG_SUSPECT, FLAG_PASS).astype(np.int8)
        flag[np.isnan(out)] = FLAG_NOT_EVALUATED
        flag[np.isnan(values)] = FLAG_MISSING
        return (flag, out, None) if with_state else (flag, out)


def build_steps(config: dict, metrics: list[str], step: pd.Timedelta) -> list[Step]:
    """The steps of every metric, in a fixed order (metric, then test name)."""
    out = []
    for m in metrics:
        checks, detectors = tests_for(config, m)
        for name in sorted(checks):
            out.append(_check_step(name, m, checks[name], step))
        for name in sorted(detectors):
            p = detectors[name]
            if name == "anomaly":
                period = cycle_samples(p.get("period", "auto"), step)  # in bins of the grid
                out.append(Step(name, m, {**p, "period": period}))
                continue
            out.append(Step(name, m, {"window": p["window"],
                                      "min_count": p.get("min_count")},
                            threshold=float(p["threshold"])))
    return out


def _check_step(name: str, metric: str, p: dict, step: pd.Timedelta) -> Step:
    if name == "gross_range":
        return Step(name, metric, {"fail_span": tuple(p["fail"]),
                                   "suspect_span": tuple(p["suspect"]) if "suspect" in p
                                   else None})
    if name == "spike":
        return Step(name, metric, {"suspect": p["suspect"], "fail": p["fail"]})
    if name == "rate_of_change":
        unit = pd.Timedelta(p.get("per", "1s")).value
        return Step(name, metric, {"threshold": p["threshold"] / unit}, times=True)
    if name == "flat_line":
        tol = p.get("tolerance", 0.0)
        if isinstance(p["suspect"], str):
            return Step(name, metric, {"tolerance": tol,
                                       "suspect": pd.Timedelta(p["suspect"]).value,
                                       "fail": pd.Timedelta(p["fail"]).value}, times=True)
        return Step(name, metric, {"tolerance": tol, "suspect": p["suspect"],
                                   "fail": p["fail"]})
    if name == "time_gap":
        return Step(name, metric, {"max_gap": pd.Timedelta(p["max_gap"]).value}, times=True)
    raise AssertionError(name)


def reach(steps: list[Step]) -> tuple[int, int]:
    """The largest ``before`` and ``after`` halo of the steps."""
    halos = [s.halo() for s in steps] or [(0, 0)]
    return max(b for b, _ in halos), max(a for _, a in halos)


def nbins(duration, step: pd.Timedelta) -> int:
    """Bins spanned by ``duration`` (rounded up)."""
    return math.ceil(pd.Timedelta(duration) / step)


__all__ = ["KERNELS", "Step", "build_steps", "reach"]
