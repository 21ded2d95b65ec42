"""Starting or joining Ray, and sizing actor pools from the resources actually there.

Pools are never hard-coded: on 2 cores an engine pool that takes every CPU starves the read
tasks feeding it and the job hangs, while on a cluster the pool should grow with the GPUs.
"""
from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from typing import Optional

from . import logsetup
from .allocator import arrow_pool_env, engine_env
from .config import EngineConfig, RayConfig
from .hardware import thread_count

log = logging.getLogger(__name__)
# Whether this process started the Ray it uses (not a cluster's): its memory is all there will be.
_local = {"started": False}


def init_ray(cfg: RayConfig, working_dir: Optional[str] = None):
    import ray

    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Inside a submitted job the job's runtime_env is already set; ours adds to it, not conflicts.
    os.environ.setdefault("RAY_OVERRIDE_JOB_RUNTIME_ENV", "1")
    env = {"TOKENIZERS_PARALLELISM": "false", **arrow_pool_env(), **cfg.env}
    for k in ("LABELER_CACHE", "LABELER_NO_BF16", "HF_HUB_OFFLINE", "VLLM_CPU_KVCACHE_SPACE"):
        if k in os.environ:
            env.setdefault(k, os.environ[k])
    runtime_env = {"env_vars": env}
    address = cfg.address or ("auto" if os.environ.get("RAY_ADDRESS") else None)
    # The workers' own logs (Ray, vLLM: hundreds of lines even in a small run) stay in Ray's log
    # folder unless the command runs with -v; the stages' progress lines are labeler's own.
    verbose = logging.getLogger("labeler").isEnabledFor(logging.DEBUG)
    # What Ray, its C++ core worker and Ray Data write to this process's stderr goes to a file from
    # here on (named below, in Ray's log folder), unless -v or a job's log is the terminal.
    early = None if verbose or _in_job() else logsetup.divert_stderr(_early_log())
    quiet_ray(verbose)
    if address:  # a cluster, or the one a submitted job runs in
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=verbose or _in_job())
        _local["started"] = False
    else:
        # Raylet starts each worker in its own process group and kills the group when the worker
        # exits, crashed or not: vLLM's EngineCore and workers go with their actor. (Not the raylet
        # subreaper: it sets SIGCHLD to SIG_IGN in every Ray process, the driver included, so every
        # subprocess they wait for reads exit status 0, and a job supervisor reports a failed or
        # still-running entrypoint as SUCCEEDED.)
        os.environ.setdefault("RAY_process_group_cleanup_enabled", "true")
        # No dashboard, so no one reads Ray's metrics; recording them cost memory that grew with
        # the run in Ray Data's _StatsActor and the driver (native memory, not Python objects),
        # flat without. RAY_enable_metrics_collection=1 keeps them.
        os.environ.setdefault("RAY_enable_metrics_collection", "0")
        # "local": a new Ray of its own even when a cluster started with `ray start` runs on this
        # machine (ray.init would attach to that one, and refuse num_cpus).
        ray.init(address="local", num_cpus=cfg.num_cpus or os.cpu_count(), include_dashboard=False,
                 object_store_memory=cfg.object_store_memory, runtime_env=runtime_env,
                 log_to_driver=verbose)
        _local["started"] = True
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = verbose
    if not verbose:
        logs = None
        try:
            logs = ray._private.worker._global_node.get_logs_dir_path()
        except Exception:
            pass
        if early and logs:
            try:
                os.replace(early, os.path.join(logs, "labeler-driver.log"))
                logsetup.moved(os.path.join(logs, "labeler-driver.log"))
            except OSError:
                pass  # another filesystem: it stays where it is, and is named below
        if logs:
            log.info("Ray and vLLM logs: %s (-v shows them here)", logs)
        if logsetup.diverted():
            _raylet_messages_to_log()
        if logsetup.diverted() and not (logs and logsetup.diverted().startswith(logs)):
            log.info("Ray's messages to this terminal: %s", logsetup.diverted())
    return ray


def _raylet_messages_to_log() -> None:
    """The errors Ray's raylet sends the driver (a worker killed for memory: a page of text at
    each retry) to the diverted log, not stdout: the driver prints them whether or not it shows the
    workers' logs, and the command says the error that ends a run in one line of its own."""
    import sys

    import ray._private.worker as worker

    show = getattr(worker, "print_to_stdstream", None)
    if show is None or getattr(show, "_labeler", False):
        return

    def to_log(data, ignore_prefix):
        if data.get("pid") != "raylet":
            return show(data, ignore_prefix)
        for line in data.get("lines") or []:
            sys.__stderr__.write(f"(raylet) {line}\n")
        sys.__stderr__.flush()

    to_log._labeler = True
    worker.print_to_stdstream = to_log


def _early_log() -> str:
    """Where the diverted stderr starts, before Ray has a log folder (init_ray moves it there)."""
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"labeler-driver-{os.getpid()}.log")


def _in_job() -> bool:
    """Inside a submitted Ray job the driver's output is the job log users follow: keep workers' logs."""
    return bool(os.environ.get("RAY_JOB_ID") or os.environ.get("RAY_SUBMISSION_ID"))


def quiet_ray(verbose: bool) -> None:
    """Ray's and Ray Data's lines (progress tables, issue detectors' repeated memory warnings) only
    with -v; without, Ray Data's go to its own file (ray-data.log in Ray's log folder) and, where
    labeler diverted stderr (logsetup.divert_stderr), Ray's and Python's warnings to that file."""
    import ray.data  # noqa: F401  (it configures its loggers on import: set the levels after)

    import warnings

    data = logging.getLogger("ray.data")
    for h in data.handlers:
        if h.get_name() == "console":  # Ray Data's terminal handler; its file handler keeps every line
            h.setLevel(logging.DEBUG if verbose else logging.CRITICAL + 1)
    if verbose:
        for name in ("ray", "ray.train", "ray.tune"):
            logging.getLogger(name).setLevel(logging.DEBUG)
    elif logsetup.diverted():
        logsetup.to_diverted(logging.getLogger("ray"))
        logging.captureWarnings(True)
        logsetup.to_diverted(logging.getLogger("py.warnings"), logging.WARNING)
    else:
        for name in ("ray", "ray.train", "ray.tune"):
            logging.getLogger(name).setLevel(logging.WARNING)
    # Engine pools pass max_restarts, which map_batches takes only as a ray_remote_args entry.
    warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")


def pool_args(engine: EngineConfig, *, vllm: bool = False, memory: Optional[int] = None,
              key: str = "engine") -> dict:
    """map_batches arguments for an engine actor pool sized from the cluster's resources; `vllm`:
    the pool runs vLLM engines, which in one process on a CPU get jemalloc (labeler.allocator).
    `memory`: bytes one engine actor needs (engines.memory), asked of Ray for each actor; the pool
    is then no larger than the nodes' memory holds. `key`: the engine's config key, for messages."""
    out = _pool_args(engine, memory, key)
    local_cpu = vllm and engine.gpus_per_actor == 0
    in_process = engine.runs_in_process(gpu=engine.gpus_per_actor > 0)
    env = engine_env(engine.malloc, local_cpu=local_cpu, in_process=in_process, preload=os.environ.get("LD_PRELOAD", ""))
    threads = thread_count(engine.cpu_threads)
    if local_cpu and in_process and threads:
        # In process vLLM binds no threads of its own: the model runs on the actor's OMP threads,
        # which Ray sets to its CPUs (1) unless the actor starts with its own OMP_NUM_THREADS (set
        # later, in the actor, torch's and each thread's OpenMP counts disagree and vLLM's CPU
        # attention fails). "all": this machine's cores.
        env["OMP_NUM_THREADS"] = str(threads)
    if env and engine.backend != "openai":
        out["runtime_env"] = {"env_vars": env}
    return out


def _pool_args(engine: EngineConfig, memory: Optional[int] = None, key: str = "engine") -> dict:
    """The pool's size and each actor's resources."""
    import ray

    total = ray.cluster_resources()
    mem = {"memory": int(memory)} if memory else {}
    if engine.backend == "openai":
        # Remote calls: one light actor per `concurrency` slot group; CPU is not the bottleneck.
        size = engine.num_actors or 1
        return {"compute": ray.data.ActorPoolStrategy(size=size), "num_cpus": 0.25, "max_restarts": engine.max_restarts}
    if engine.gpus_per_actor > 0:
        gpus = total.get("GPU", 0)
        fit = int(gpus // engine.gpus_per_actor)
        if engine.num_actors:
            # With an autoscaler the GPUs may not exist yet: let the pool grow to the configured size.
            strategy = ray.data.ActorPoolStrategy(min_size=max(1, min(fit, engine.num_actors)),
                                                  max_size=engine.num_actors)
        else:
            strategy = ray.data.ActorPoolStrategy(size=max(1, fit))
        out = {"compute": strategy, "num_gpus": engine.gpus_per_actor, "num_cpus": engine.cpus_per_actor,
               "max_restarts": engine.max_restarts, **mem}
        return {**out, "resources": dict(engine.resources_per_actor)} if engine.resources_per_actor else out
    cpus = total.get("CPU", 1)
    # Keep one CPU for the tasks that read and feed the pool.
    fit = max(1, math.floor((cpus - 1) / engine.cpus_per_actor)) if cpus > 1 else 1
    custom = engine.resources_per_actor
    if custom:  # as many actors as the nodes offering those resources hold
        fit = max(1, min(math.floor(total.get(k, 0) / v) for k, v in custom.items()))
    if memory:
        fit = min(fit, _memory_fit(memory, key, engine.num_actors or fit))
    size = min(engine.num_actors, fit) if engine.num_actors else fit
    cpus_each = min(engine.cpus_per_actor, max(0.25, cpus - 1) if cpus > 1 else 0.5)
    out = {"compute": ray.data.ActorPoolStrategy(size=size), "num_cpus": cpus_each, "max_restarts": engine.max_restarts,
           **mem}
    return {**out, "resources": dict(custom)} if custom else out


def node_memory() -> list[float]:
    """The `memory` resource of each alive node (what Ray gives its workers there)."""
    import ray

    return [n["Resources"].get("memory", 0.0) for n in ray.nodes() if n.get("Alive")]


def _memory_fit(need: int, key: str, wanted: int) -> int:
    """How many engine actors of `need` bytes the nodes' memory holds (each on one node). None
    fitting is an error with the local Ray this process started (it would wait forever); on a
    cluster a node with the memory may still join, so the pool waits for it."""
    nodes = node_memory()
    fit = sum(int(m // need) for m in nodes)
    if fit < 1:
        line = (f"{key}: one engine needs ~{need / 1e9:.1f} GB, and no Ray node has that much for its workers "
                f"(largest: {max(nodes, default=0) / 1e9:.1f} GB); {MEMORY_ADVICE.format(key=key)}")
        if _local["started"]:
            raise ValueError(line)
        log.warning("%s; the pool waits for a node that has", line)
        return 1
    if fit < wanted:
        log.info("%s: memory holds %d engine%s of ~%.1f GB (Ray's nodes: %s GB for workers)", key, fit,
                 "s" if fit > 1 else "", need / 1e9, ", ".join(f"{m / 1e9:.1f}" for m in nodes))
    return fit


MEMORY_ADVICE = "set {key}.memory_gb, lower {key}.kv_cache_gib, or use a smaller model"


def memory_for_workers(cfg: RayConfig) -> Optional[tuple[float, str]]:
    """The most memory one node gives Ray's workers, and one phrase saying where that is ("this
    machine has 9.8 GB for Ray's workers (of ...)"); None where unknown before connecting (a
    cluster's address)."""
    import ray

    if ray.is_initialized():
        nodes = node_memory()
        best = max(nodes, default=0.0)
        where = "the largest Ray node has" if len(nodes) > 1 else "Ray's node has"
        return best, f"{where} {best / 1e9:.1f} GB for Ray's workers"
    if cfg.address or os.environ.get("RAY_ADDRESS"):
        return None
    # A local Ray gives its workers the memory free as it starts, less its object store (Ray's
    # own formula, which these functions are).
    from ray._common.utils import get_system_memory
    from ray._private.utils import estimate_available_memory

    free = float(estimate_available_memory() - cfg.object_store_memory)
    return free, (f"this machine has {free / 1e9:.1f} GB for Ray's workers (of {get_system_memory() / 1e9:.1f} GB; "
                  f"the rest is in use or Ray's object store)")


# -- an out-of-memory kill, said in one line ---------------------------------------------------

class KilledForMemory(RuntimeError):
    """Ray killed a process of the run because its node ran low on memory; the message is one
    line naming the stage, the process and the config key to change."""


@dataclass
class MemoryKill:
    """What Ray's message says about a process its memory monitor killed."""

    process: Optional[str] = None   # the actor class (EngineWorker) or task name
    pid: Optional[int] = None
    used_gb: Optional[float] = None  # the process's memory when killed
    node_used_gb: Optional[float] = None
    node_limit_gb: Optional[float] = None

    def describe(self) -> str:
        what = f"the actor {self.process}" if self.process else "a worker"
        facts = [f"pid {self.pid}" if self.pid else None,
                 f"using {self.used_gb:.1f} GB" if self.used_gb is not None else None]
        facts = [f for f in facts if f]
        node = (f" ({self.node_used_gb:.1f} of {self.node_limit_gb:.1f} GB used)"
                if self.node_used_gb is not None and self.node_limit_gb is not None else "")
        return f"Ray killed {what}{' (' + ', '.join(facts) + ')' if facts else ''} when its node ran out of memory{node}"


# Ray's wording for a kill by its memory monitor (not the generic "worker died" text, which names
# the kernel's OOM killer only as one possible cause).
_OOM = re.compile(r"running low on memory|due to memory pressure|NODE_OUT_OF_MEMORY|killed due to .{0,40}memory", re.I)


def memory_kill(exc: BaseException) -> Optional[MemoryKill]:
    """The memory kill behind `exc` (ray.exceptions.OutOfMemoryError, or an ActorDiedError or task
    error whose cause Ray gives as memory), searched through causes and wrapped errors; else None."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        text = str(e)
        if type(e).__name__ == "OutOfMemoryError" or _OOM.search(text):
            return _parse_kill(text)
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    return None


def _parse_kill(text: str) -> MemoryKill:
    def num(pattern):
        m = re.search(pattern, text)
        return float(m.group(1)) if m else None

    k = MemoryKill()
    m = (re.search(r"MapBatches\((\w+)\)", text) or re.search(r"class_name: (\S+)", text)
         or re.search(r"task name=([^,\s)]+)", text) or re.search(r"\bname=([^,\s)]+)", text))
    k.process = m.group(1) if m else None
    pid = num(r"\bpid[=:] ?(\d+)")
    k.pid = int(pid) if pid else None
    k.used_gb = num(r"memory used=([\d.]+) ?GB")
    m = (re.search(r"was ([\d.]+) ?GB used / ([\d.]+) ?GB", text)
         or re.search(r"was ([\d.]+) ?GB / ([\d.]+) ?GB", text))
    if m:
        k.node_used_gb, k.node_limit_gb = float(m.group(1)), float(m.group(2))
    return k


def memory_kill_line(kill: MemoryKill, stage: Optional[str] = None, key: Optional[str] = None,
                     declared: Optional[float] = None) -> str:
    """One line: what was killed, and the settings that give it more room."""
    where = f"[{stage}] " if stage else ""
    if key:
        have = f" (declared now: ~{declared / 1e9:.1f} GB)" if declared else ""
        advice = (f"set {key}.memory_gb to what one engine needs{have}, lower {key}.max_num_seqs or "
                  f"{key}.kv_cache_gib, or run fewer engines ({key}.num_actors)")
    else:
        advice = "run fewer actors at once, or give the machine more memory"
    return f"{where}{kill.describe()}; {advice}"
