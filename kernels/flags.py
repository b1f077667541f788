"""QARTOD quality-flag codes, defined once for the whole project.

Every flag kernel writes these into int8 arrays; :mod:`toolkit.model`
re-exports them (as ``FLAG_PASS``...) with the CF attributes of a flag
variable.

Examples
--------
>>> from kernels import flags
>>> dict(zip(flags.MEANINGS, flags.CODES))["suspect"]
3
"""

PASS, NOT_EVALUATED, SUSPECT, FAIL, MISSING = 1, 2, 3, 4, 9
CODES = (PASS, NOT_EVALUATED, SUSPECT, FAIL, MISSING)
MEANINGS = ("pass", "not_evaluated", "suspect", "fail", "missing")
