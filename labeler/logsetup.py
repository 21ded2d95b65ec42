"""How labeler's log lines reach a terminal: one handler on the `labeler` logger, set up once by
whatever runs as the process (the command line, a Ray job's entrypoint). The library itself only
calls `logging.getLogger(__name__)`."""
from __future__ import annotations

import logging
import sys


def setup_logging(verbosity: int = 0) -> None:
    """INFO and above on stderr (verbosity < 0: warnings only; > 0: debug, and the Ray and vLLM
    logs of every worker). Without it, Python shows only warnings: a job's progress lines and
    stage summaries would vanish from its logs."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    root = logging.getLogger("labeler")
    if not any(getattr(h, "_labeler", False) for h in root.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(message)s"))
        h._labeler = True
        root.addHandler(h)
        root.propagate = False
    root.setLevel(level)
