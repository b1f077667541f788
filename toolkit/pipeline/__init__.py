"""Declarative pipelines: one described job from raw telemetry to findings.

See :mod:`toolkit.pipeline.config` for the file, :mod:`toolkit.pipeline.run`
for full and incremental runs.
"""

from .config import PipelineError, check_config, read_config
from .run import Pipeline, RunResult

__all__ = ["Pipeline", "PipelineError", "RunResult", "check_config", "read_config"]
