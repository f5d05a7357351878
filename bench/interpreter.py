"""The Python that benchmarks run fetchd with: the one users run it with.

``install.sh`` puts fetchd in ``.venv``; a user's ``fetchd`` starts that
interpreter, which reads only its own site-packages. A shared interpreter
may run code of its own at every start (``.pth`` files of other packages),
so timing fetchd under it times the machine's other software too. The
checkout's code is what runs either way (``PYTHONPATH`` points at it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["FETCHD_PYTHON"]

_REPO = Path(__file__).resolve().parents[1]


def _fetchd_python() -> str:
    chosen = os.environ.get("FETCHD_BENCH_PYTHON")
    if chosen:
        return chosen
    installed = _REPO / ".venv" / "bin" / "python"
    return str(installed) if installed.exists() else sys.executable


#: ``$FETCHD_BENCH_PYTHON``, else ``.venv/bin/python`` as install.sh makes it,
#: else the interpreter running the benchmark.
FETCHD_PYTHON = _fetchd_python()
