"""What this machine's processor can do fast, and the dtype that follows from it.

bf16 is only fast where the CPU has native bf16 instructions (AVX512_BF16 or AMX). On an AVX2-only
CPU vLLM's bf16 path is an order of magnitude slower than float32 (docs/benchmarks.md), slow
enough for one engine step to pass vLLM's execute-model timeout. So `auto`, the default
everywhere, resolves from the CPU flags (or the GPU), and the choice is logged.

`LABELER_NO_BF16=1` makes this machine behave as one without bf16 (to test the AVX2 path on an
AVX-512 machine).
"""
from __future__ import annotations

import logging
import os
from functools import lru_cache

log = logging.getLogger(__name__)

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The flags of the first processor in /proc/cpuinfo (empty where there is no such file)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def cpu_has_bf16() -> bool:
    if os.environ.get("LABELER_NO_BF16", "") not in ("", "0"):
        return False
    return any(f in cpu_flags() for f in BF16_FLAGS)


def gpu_available() -> bool:
    try:
        import torch
        return bool(torch.cuda.is_available())
    except Exception:
        return False


def resolve_dtype(requested: str, *, gpu: bool | None = None, what: str = "engine") -> str:
    """`auto` -> bfloat16 on a GPU or a CPU with native bf16, float32 otherwise; others unchanged
    (a forced bfloat16 on a CPU without bf16 is kept, with a warning)."""
    gpu = gpu_available() if gpu is None else gpu
    fast_bf16 = gpu or cpu_has_bf16()
    if requested == "auto":
        dtype = "bfloat16" if fast_bf16 else "float32"
        log.info("%s dtype: auto -> %s (%s)", what, dtype, describe(gpu))
        return dtype
    if requested in ("bfloat16", "bf16") and not fast_bf16:
        log.warning("%s dtype bfloat16 on a CPU without native bf16 (%s): expect it to be many times "
                    "slower than float32; `dtype: auto` picks float32 here", what, describe(gpu))
    return requested


def resolve_bf16(requested: bool | str, *, gpu: bool | None = None, what: str = "distill") -> bool:
    """DeepSpeed's bf16 switch: `auto` follows resolve_dtype."""
    if requested == "auto":
        return resolve_dtype("auto", gpu=gpu, what=what) == "bfloat16"
    if requested:
        resolve_dtype("bfloat16", gpu=gpu, what=what)  # warns where it is slow
    return bool(requested)


def describe(gpu: bool | None = None) -> str:
    """One line for logs and benchmark output: the processor and its bf16 support."""
    gpu = gpu_available() if gpu is None else gpu
    if gpu:
        return "GPU"
    flags = cpu_flags()
    have = [f for f in ("avx2", "avx512f", *BF16_FLAGS) if f in flags]
    forced = " (bf16 switched off by LABELER_NO_BF16)" if os.environ.get("LABELER_NO_BF16", "") not in ("", "0") else ""
    return f"CPU {cpu_model()}, flags {' '.join(have) or 'none of avx2/avx512'}{forced}"


def machine_info() -> dict:
    """For benchmark output, so figures from different machines can be compared."""
    flags = cpu_flags()
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "gpu": gpu_available(),
            "flags": [f for f in ("avx2", "avx512f", "avx512_vnni", *BF16_FLAGS) if f in flags],
            "bf16": cpu_has_bf16(), "auto_dtype": "bfloat16" if (gpu_available() or cpu_has_bf16()) else "float32"}


def thread_count(setting) -> "int | None":
    """engine.cpu_threads as a number of cores: None (leave the default: Ray sets a worker's
    OMP threads to its CPUs), "all" (every core of the machine) or N (at most the cores there are)."""
    if setting is None:
        return None
    cores = os.cpu_count() or 1
    return cores if setting == "all" else max(1, min(int(setting), cores))
