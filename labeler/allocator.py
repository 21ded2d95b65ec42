"""Which malloc labeler's processes run with: jemalloc for a vLLM engine in one process, and
Arrow's buffers from malloc in every process (below).

A vLLM step on a CPU allocates vocabulary-wide tensors (logits and log-probabilities: rows x
vocabulary x 4 bytes, 8-32 MB for a 49k vocabulary) whose size changes with every step's number of
sequences. glibc raises its mmap threshold to 32 MB after the first such free, so these come from
its heap, whose holes do not fit the next step's sizes, and the engine's memory grows through the
first part of a run. jemalloc's size classes reuse those holes, so the engine stays flat and grades
faster; decay stays off, because pages it purges are faulted in again every step. The A/B runs
behind this are in docs/benchmarks.md.

The library is the one Ray ships (`ray/core/libjemalloc.so`), so nothing more is installed. It must
be preloaded when a process starts, so it is set in the engine actor's runtime_env (vLLM's own
processes, with `malloc: jemalloc`, inherit it).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

# An engine in one process (engine.in_process): keep every page jemalloc touched (no purging), so
# the working set is reused each step. Not with vLLM's EngineCore and Worker processes: there the
# EngineCore (whose threads free what others allocated) then grew with every pair graded, and
# with jemalloc's own decay the stage was slower than with glibc: `auto` keeps glibc there.
# One arena: an engine in a Ray Data actor is called on its own thread (engines.base.EngineThread)
# and fed by Ray's, and with an arena per thread and no purging, what one thread freed into the
# other's arena stayed there, so the engine actor grew with the run; with one arena it stays flat.
JEMALLOC_CONF_ONE_PROCESS = "narenas:1,dirty_decay_ms:-1,muzzy_decay_ms:-1"


@lru_cache(maxsize=1)
def jemalloc_path() -> Optional[str]:
    """Ray's bundled jemalloc, found without importing Ray; None where this Ray has none."""
    spec = importlib.util.find_spec("ray")
    if spec is None or not spec.origin:
        return None
    lib = Path(spec.origin).parent / "core" / "libjemalloc.so"
    return str(lib) if lib.is_file() else None


# Arrow's buffers from the process's malloc (glibc's, or jemalloc where preloaded), not from the
# mimalloc Arrow bundles as its default. Ray frees a block in another thread than the one that made
# it (a read task's, once in the object store), and mimalloc kept those pages: a read worker grew
# over each file far past the buffers it held live, and the driver's peak as it exports the labels
# varied from run to run. With malloc every process's peak is lower and steadier, at the same rate
# (docs/benchmarks.md, "What the memory settings hold flat"). Set for Ray's workers by
# `arrow_pool_env` (raycluster.init_ray), for the `labeler` command's own process by
# `use_malloc_for_arrow`.
ARROW_POOL = "system"


def arrow_pool_env() -> dict[str, str]:
    """The worker environment that gives Arrow `ARROW_POOL` (a pool the user set is kept)."""
    return {"ARROW_DEFAULT_MEMORY_POOL": os.environ.get("ARROW_DEFAULT_MEMORY_POOL", ARROW_POOL)}


def use_malloc_for_arrow() -> None:
    """This process's Arrow buffers from malloc, unless the user chose a pool. Arrow reads the
    variable once, as pyarrow loads, so the command calls this before importing it; where pyarrow
    is already loaded, only pyarrow's own default pool can still change (Arrow's C++ reads and
    writes keep mimalloc, and the driver's peak stays above what setting it first gives)."""
    os.environ.update(arrow_pool_env())
    if "pyarrow" in sys.modules and os.environ["ARROW_DEFAULT_MEMORY_POOL"] == "system":
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())


def engine_env(choice: str, *, local_cpu: bool, in_process: bool = False, preload: str = "") -> dict[str, str]:
    """Environment variables for an engine process: jemalloc preloaded (before anything `preload`
    already names) for `jemalloc`, or `auto` with a local engine in one process on a CPU; nothing
    otherwise. `jemalloc` asked for where Ray ships none is an error, `auto` then keeps glibc."""
    if choice == "system" or (choice == "auto" and not (local_cpu and in_process)):
        return {}
    lib = jemalloc_path()
    if lib is None:
        if choice == "jemalloc":
            raise ValueError("engine.malloc: jemalloc, but this Ray has no ray/core/libjemalloc.so; "
                             "use malloc: system")
        log.info("engine malloc: glibc (this Ray ships no jemalloc)")
        return {}
    env = {"MALLOC_CONF": JEMALLOC_CONF_ONE_PROCESS} if in_process else {}
    if lib not in preload.split(":"):
        env["LD_PRELOAD"] = ":".join(x for x in (lib, preload) if x)
    return env
