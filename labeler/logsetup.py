"""How labeler's log lines reach a terminal: one handler on the `labeler` logger, set up once by
whatever runs as the process (the command line, a Ray job's entrypoint). The library itself only
calls `logging.getLogger(__name__)`.

The `labeler` command's own process owns its terminal: unless it runs with -v, what other
libraries write there (Ray's C++ core worker, Ray Data's warnings, Python warnings) goes to a log
file instead (`divert_stderr`, from raycluster.init_ray, which moves it into Ray's log folder).
"""
from __future__ import annotations

import io
import logging
import os
import sys
from typing import Optional

_state = {"verbosity": None, "owner": False, "diverted": None}


class _Terminal(logging.StreamHandler):
    """Writes to sys.stderr as it is when a line is logged, so that a diverted stderr
    (divert_stderr) still leaves labeler's lines on the terminal."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def setup_logging(verbosity: int = 0) -> None:
    """INFO and above on stderr (verbosity < 0: warnings only; > 0: debug, and the Ray and vLLM
    logs of every worker). Without it, Python shows only warnings: a job's progress lines and
    stage summaries would vanish from its logs."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    root = logging.getLogger("labeler")
    if not any(getattr(h, "_labeler", False) for h in root.handlers):
        h = _Terminal()
        h.setFormatter(logging.Formatter("%(message)s"))
        h._labeler = True
        root.addHandler(h)
        root.propagate = False
    root.setLevel(level)
    _state["verbosity"] = verbosity
    if owns_terminal():
        quiet_progress_bars()


def quiet_progress_bars() -> None:
    """No Hugging Face progress bars ("Loading weights" as a model loads) on labeler's terminal:
    set before those libraries load (their processes inherit it), switched off where loaded."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def own_terminal() -> None:
    """This process is the `labeler` command: its terminal is labeler's (not a test's or a
    library user's, who may call the command's functions in their own process)."""
    _state["owner"] = True


def owns_terminal() -> bool:
    """Whether this process is the command (own_terminal), with labeler's logging set up
    (setup_logging) and without -v."""
    v = _state["verbosity"]
    return _state["owner"] and v is not None and v <= 0


def diverted() -> Optional[str]:
    """The file other libraries' stderr goes to, once diverted."""
    return _state["diverted"]


def divert_stderr(path: str) -> Optional[str]:
    """File descriptor 2 (where C++ libraries and child processes write) to `path`, appended;
    sys.stderr (labeler's lines, error messages, tracebacks) stays on the terminal. Only in a
    process that owns its terminal; returns the file, None where nothing was diverted."""
    if not owns_terminal():
        return None
    if _state["diverted"]:
        return _state["diverted"]
    sys.stderr.flush()
    terminal = os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    sys.stderr = io.TextIOWrapper(io.FileIO(terminal, "w"), encoding=encoding, errors="backslashreplace",
                                  line_buffering=True, write_through=True)
    _state["diverted"] = path
    return path


def moved(path: str) -> None:
    """The diverted file was renamed to `path` (the descriptor still writes to it)."""
    if _state["diverted"]:
        _state["diverted"] = path


def to_diverted(logger: logging.Logger, level: int = logging.INFO) -> None:
    """`logger`'s lines to the diverted file only (it stops propagating to the terminal)."""
    for h in logger.handlers[:]:
        logger.removeHandler(h)
    h = logging.StreamHandler(sys.__stderr__)  # descriptor 2: the diverted file
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(h)
    logger.setLevel(level)
    logger.propagate = False
