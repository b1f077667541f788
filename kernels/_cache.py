"""Where numba keeps the compiled kernels: a per-user cache folder, never the package.

Numba's default for ``cache=True`` is the ``__pycache__`` folder next to the
source file. For an installed package that is inside ``site-packages``:
files that pip did not install, so ``pip uninstall`` leaves them behind, and
the folder they keep alive then shadows the next (editable) install as an
empty namespace package named ``kernels``. So before any kernel is compiled,
this module points numba at a folder of the user's own cache:

1. ``NUMBA_CACHE_DIR``, when the user has set it (numba's own setting, which
   then also holds every other numba cache of the process);
2. else ``TOOLKIT_CACHE_DIR``, when set;
3. else ``$XDG_CACHE_HOME/iot-telemetry-toolkit/numba`` (``~/.cache/...``;
   ``%LOCALAPPDATA%`` on Windows).

The choice is written to ``NUMBA_CACHE_DIR`` in this process's environment,
so Dask worker processes started from it find the same compiled code; numba
keys each cached kernel on its source file's path and contents, so two
installs of the toolkit never read each other's machine code. Numba's
setting is process-wide: other numba code of the same process caches its
functions in this folder too (set ``NUMBA_CACHE_DIR`` yourself to choose).
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "TOOLKIT_CACHE_DIR"
NUMBA_ENV = "NUMBA_CACHE_DIR"


def default_cache_dir() -> Path:
    """The per-user folder for the compiled kernels (not created here).

    Examples
    --------
    >>> default_cache_dir().name
    'numba'
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "iot-telemetry-toolkit" / "numba"


def use_user_cache() -> str:
    """Point numba's cache at :func:`default_cache_dir` unless the user chose one.

    Returns the folder numba uses. Called once, when :mod:`kernels` is
    imported, before any kernel is compiled.
    """
    if not os.environ.get(NUMBA_ENV):
        os.environ[NUMBA_ENV] = str(default_cache_dir())
    # numba reads its environment when it is first imported; if it already
    # was (by the caller's own code), read it again so the folder applies
    from numba.core.config import reload_config

    reload_config()
    return os.environ[NUMBA_ENV]


CACHE_DIR = use_user_cache()
