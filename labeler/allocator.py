"""Which malloc a local engine's processes run with, and why it is not glibc's on a CPU.

A vLLM step on a CPU allocates vocabulary-wide tensors (logits and log-probabilities: rows x
vocabulary x 4 bytes, 8-32 MB for a 49k vocabulary) whose size changes with every step's number of
sequences. glibc raises its mmap threshold to 32 MB after the first such free, so these come from
its heap, whose holes do not fit the next step's sizes: direct vLLM grew from 2.9 to 3.6 GB over
its first 70k pairs and only then stopped (the engine's peak +10-15% from 100k to 1M pairs before).
jemalloc's size classes reuse those holes; with decay off it keeps the pages it has touched
instead of returning them and faulting them in again every step. Direct vLLM in process (random
Llama, token ids, 2 cores): +4% RSS, flat after 40k pairs, 4-14% more pairs/s than glibc; jemalloc
with its default decay was as flat but 17% slower, glibc with a fixed 8 MB mmap threshold 21%
slower. Through the label stage at 100k pairs: 1,086 pairs/s against glibc's 872 (1,144 against
1,015 with `in_process`).

The library is the one Ray ships (`ray/core/libjemalloc.so`), so nothing more is installed. It must
be preloaded when a process starts, so it is set in the engine actor's runtime_env; vLLM's own
processes inherit it.
"""
from __future__ import annotations

import importlib.util
import logging
from functools import lru_cache
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

# Keep every page jemalloc touched (no purging): the engine's working set is reused each step.
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"


@lru_cache(maxsize=1)
def jemalloc_path() -> Optional[str]:
    """Ray's bundled jemalloc, found without importing Ray; None where this Ray has none."""
    spec = importlib.util.find_spec("ray")
    if spec is None or not spec.origin:
        return None
    lib = Path(spec.origin).parent / "core" / "libjemalloc.so"
    return str(lib) if lib.is_file() else None


def engine_env(choice: str, *, local_cpu: bool, preload: str = "") -> dict[str, str]:
    """Environment variables for an engine process: jemalloc preloaded (before anything `preload`
    already names) for `jemalloc`, or `auto` with a local engine on a CPU; nothing otherwise.
    `jemalloc` asked for where Ray ships none is an error, `auto` then falls back to glibc."""
    if choice == "system" or (choice == "auto" and not local_cpu):
        return {}
    lib = jemalloc_path()
    if lib is None:
        if choice == "jemalloc":
            raise ValueError("engine.malloc: jemalloc, but this Ray has no ray/core/libjemalloc.so; "
                             "use malloc: system")
        log.info("engine malloc: glibc (this Ray ships no jemalloc)")
        return {}
    if lib in preload.split(":"):
        return {"MALLOC_CONF": JEMALLOC_CONF}
    return {"LD_PRELOAD": ":".join(x for x in (lib, preload) if x), "MALLOC_CONF": JEMALLOC_CONF}
