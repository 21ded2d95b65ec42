"""vLLM engines in one process on a CPU run with jemalloc, decay off (labeler.allocator): glibc's
heap grew ~25% over a run with vLLM's step-sized vocabulary tensors. The choice reaches the actor
through its runtime_env; vLLM's EngineCore and Worker processes keep glibc unless asked. Arrow
takes its buffers from malloc in every process labeler starts."""
from __future__ import annotations

import pytest

from labeler import allocator
from labeler.config import EngineConfig


def test_auto_preloads_ray_jemalloc_for_a_local_cpu_engine_in_one_process_only():
    lib = allocator.jemalloc_path()
    assert lib and lib.endswith("libjemalloc.so")  # Ray ships it: nothing else to install
    assert allocator.engine_env("auto", local_cpu=True, in_process=True) == {
        "LD_PRELOAD": lib, "MALLOC_CONF": allocator.JEMALLOC_CONF_ONE_PROCESS}
    assert allocator.engine_env("auto", local_cpu=True) == {}  # vLLM's engine processes: glibc
    assert allocator.engine_env("jemalloc", local_cpu=True) == {"LD_PRELOAD": lib}  # jemalloc's own decay
    assert allocator.engine_env("auto", local_cpu=False, in_process=True) == {}  # a GPU actor, an API backend
    assert allocator.engine_env("system", local_cpu=True, in_process=True) == {}
    assert allocator.engine_env("jemalloc", local_cpu=False)["LD_PRELOAD"] == lib


def test_a_preload_already_there_is_kept_after_jemalloc_and_not_repeated():
    lib = allocator.jemalloc_path()
    env = allocator.engine_env("auto", local_cpu=True, in_process=True, preload="/x/libgomp.so")
    assert env["LD_PRELOAD"] == f"{lib}:/x/libgomp.so"
    assert "LD_PRELOAD" not in allocator.engine_env("auto", local_cpu=True, in_process=True, preload=f"/x/a.so:{lib}")


def test_jemalloc_asked_for_where_ray_has_none_is_an_error(monkeypatch):
    monkeypatch.setattr(allocator, "jemalloc_path", lambda: None)
    with pytest.raises(ValueError, match="malloc: system"):
        allocator.engine_env("jemalloc", local_cpu=True)
    assert allocator.engine_env("auto", local_cpu=True, in_process=True) == {}  # auto keeps glibc


def test_malloc_is_a_runtime_field_not_part_of_a_stage_fingerprint():
    from labeler.config import identity

    a, b = EngineConfig(model="m"), EngineConfig(model="m", malloc="system")
    assert identity(a) == identity(b)


def test_the_engine_pool_actor_runs_with_jemalloc(ray_local):
    """The pool's runtime_env is what Ray starts the engine actor with: jemalloc is mapped into it."""
    from labeler.raycluster import pool_args

    ray = ray_local
    assert "runtime_env" not in pool_args(EngineConfig(model="m", in_process=False), vllm=True)  # glibc
    pool = pool_args(EngineConfig(model="m"), vllm=True)  # in process: the default on a CPU
    assert pool["runtime_env"]["env_vars"]["MALLOC_CONF"] == allocator.JEMALLOC_CONF_ONE_PROCESS
    assert "runtime_env" not in pool_args(EngineConfig(model="m", gpus_per_actor=1), vllm=True)  # a GPU engine
    assert "runtime_env" not in pool_args(EngineConfig(model="m", in_process=True, malloc="system"), vllm=True)
    assert "runtime_env" not in pool_args(EngineConfig(model="m", in_process=True))  # not a vLLM pool

    @ray.remote(num_cpus=0.25)
    class Probe:
        def maps(self):
            import os

            import pyarrow as pa
            with open("/proc/self/maps") as f:
                return ([ln.split()[-1] for ln in f if "jemalloc" in ln], os.environ.get("MALLOC_CONF"),
                        pa.default_memory_pool().backend_name)

    libs, conf, arrow = ray.get(Probe.options(runtime_env=pool["runtime_env"]).remote().maps.remote())
    assert allocator.jemalloc_path() in libs and conf == allocator.JEMALLOC_CONF_ONE_PROCESS
    assert arrow == "system"  # the actor's own runtime_env adds to the job's, where Arrow's pool is set
    libs, _, arrow = ray.get(Probe.remote().maps.remote())
    assert not libs and arrow == "system"  # other workers keep glibc, and take Arrow's buffers from it


def test_an_engine_in_one_process_gets_its_cpu_threads_as_the_actor_starts(ray_local):
    """vLLM binds threads only for a Worker process it starts: in process the model runs on the
    actor's OMP threads, which Ray sets to its CPUs (1) unless the pool starts it with cpu_threads."""
    from labeler.raycluster import pool_args

    ray = ray_local
    pool = pool_args(EngineConfig(model="m", cpu_threads=2), vllm=True)
    assert pool["runtime_env"]["env_vars"]["OMP_NUM_THREADS"] == "2"
    assert "OMP_NUM_THREADS" not in pool_args(EngineConfig(model="m"), vllm=True)["runtime_env"]["env_vars"]
    # Engine processes: vLLM binds its Worker's threads itself (VLLM_CPU_OMP_THREADS_BIND).
    assert "runtime_env" not in pool_args(EngineConfig(model="m", cpu_threads=2, in_process=False), vllm=True)

    @ray.remote(num_cpus=0.25)
    class Probe:
        def threads(self):
            import torch
            return torch.get_num_threads()

    assert ray.get(Probe.options(runtime_env=pool["runtime_env"]).remote().threads.remote()) == 2
    assert ray.get(Probe.remote().threads.remote()) == 1


def test_the_command_takes_arrow_buffers_from_malloc_unless_the_user_chose_a_pool():
    """Arrow's bundled mimalloc kept the pages of blocks one thread made and another freed (the
    driver's pre-pass and export, Ray's workers). Arrow reads its pool's variable once, as pyarrow
    loads, so `labeler` must set it before anything imports pyarrow; a pool the user named stays."""
    import os
    import subprocess
    import sys

    # the real `main`, with the command itself replaced by a report of the pool it runs with
    code = ("import sys, labeler.cli as c\n"
            "assert 'pyarrow' not in sys.modules, 'loading the command loaded Arrow'\n"
            "def report(argv):\n"
            "    import pyarrow as pa\n"
            "    print(pa.default_memory_pool().backend_name, flush=True)\n"
            "    return 0\n"
            "c._main = report\n"
            "sys.argv = ['labeler', 'models', 'list']\n"
            "c.main()\n")

    def pool(**env):
        e = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
        out = subprocess.run([sys.executable, "-c", code], env={**e, **env}, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.strip()

    assert pool() == "system"
    assert pool(ARROW_DEFAULT_MEMORY_POOL="mimalloc") == "mimalloc"
    assert allocator.arrow_pool_env() == {"ARROW_DEFAULT_MEMORY_POOL": os.environ.get("ARROW_DEFAULT_MEMORY_POOL", "system")}
