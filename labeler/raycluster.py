"""Starting or joining Ray, and sizing actor pools from the resources actually there.

Pools are never hard-coded: on 2 cores an engine pool that takes every CPU starves the read
tasks feeding it and the job hangs, while on a cluster the pool should grow with the GPUs.
"""
from __future__ import annotations

import logging
import math
import os
from typing import Optional

from .allocator import arrow_pool_env, engine_env
from .config import EngineConfig, RayConfig
from .hardware import thread_count

log = logging.getLogger(__name__)


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
    # The workers' own logs (Ray, vLLM: 160-260 lines in a small run) stay in Ray's log folder
    # unless the command runs with -v; the stages' progress lines are labeler's own.
    verbose = logging.getLogger("labeler").isEnabledFor(logging.DEBUG)
    quiet_ray(verbose)
    if address:  # a cluster, or the one a submitted job runs in
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=verbose or _in_job())
    else:
        # Raylet starts each worker in its own process group and kills the group when the worker
        # exits, crashed or not: vLLM's EngineCore and workers go with their actor. (Not the raylet
        # subreaper: it sets SIGCHLD to SIG_IGN in every Ray process, the driver included, so every
        # subprocess they wait for reads exit status 0, and a job supervisor reports a failed or
        # still-running entrypoint as SUCCEEDED.)
        os.environ.setdefault("RAY_process_group_cleanup_enabled", "true")
        # No dashboard, so no one reads Ray's metrics; recording them cost memory that grew with
        # the run: Ray Data's _StatsActor 105 -> 118 MB and the driver with it over 1M pairs
        # (native memory, not Python objects), flat without. RAY_enable_metrics_collection=1 keeps them.
        os.environ.setdefault("RAY_enable_metrics_collection", "0")
        ray.init(num_cpus=cfg.num_cpus or os.cpu_count(), include_dashboard=False,
                 object_store_memory=cfg.object_store_memory, runtime_env=runtime_env,
                 log_to_driver=verbose)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = verbose
    if not verbose:
        try:
            logs = ray._private.worker._global_node.get_logs_dir_path()
            log.info("Ray and vLLM logs: %s (-v shows them here)", logs)
        except Exception:
            pass
    return ray


def _in_job() -> bool:
    """Inside a submitted Ray job the driver's output is the job log users follow: keep workers' logs."""
    return bool(os.environ.get("RAY_JOB_ID") or os.environ.get("RAY_SUBMISSION_ID"))


def quiet_ray(verbose: bool) -> None:
    """Ray's and Ray Data's INFO lines (progress tables, repeated memory warnings) only with -v."""
    import ray.data  # noqa: F401  (it configures its loggers on import: set the levels after)

    import warnings

    level = logging.DEBUG if verbose else logging.WARNING
    for name in ("ray", "ray.data", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(level)
    # Engine pools pass max_restarts, which map_batches takes only as a ray_remote_args entry.
    warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")


def pool_args(engine: EngineConfig, *, vllm: bool = False) -> dict:
    """map_batches arguments for an engine actor pool sized from the cluster's resources; `vllm`:
    the pool runs vLLM engines, which in one process on a CPU get jemalloc (labeler.allocator)."""
    out = _pool_args(engine)
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


def _pool_args(engine: EngineConfig) -> dict:
    """The pool's size and each actor's resources."""
    import ray

    total = ray.cluster_resources()
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
               "max_restarts": engine.max_restarts}
        return {**out, "resources": dict(engine.resources_per_actor)} if engine.resources_per_actor else out
    cpus = total.get("CPU", 1)
    # Keep one CPU for the tasks that read and feed the pool.
    fit = max(1, math.floor((cpus - 1) / engine.cpus_per_actor)) if cpus > 1 else 1
    custom = engine.resources_per_actor
    if custom:  # as many actors as the nodes offering those resources hold
        fit = max(1, min(math.floor(total.get(k, 0) / v) for k, v in custom.items()))
    size = min(engine.num_actors, fit) if engine.num_actors else fit
    cpus_each = min(engine.cpus_per_actor, max(0.25, cpus - 1) if cpus > 1 else 0.5)
    out = {"compute": ray.data.ActorPoolStrategy(size=size), "num_cpus": cpus_each, "max_restarts": engine.max_restarts}
    return {**out, "resources": dict(custom)} if custom else out
