"""The memory one engine actor holds, declared to Ray as its `memory` request.

Without it Ray counts an engine actor as using no memory: it places engines where they cannot fit
and its memory monitor then kills them. With it an actor starts only on a node with that much
unreserved memory, the pool is no larger than the memory holds (raycluster.pool_args), and a
machine that cannot hold one engine is said before the run (labeler.preflight).

An estimate is the model's weights (parameters x dtype bytes) plus, for vLLM on a CPU, the KV
cache it allocates whole at start (VLLM_CPU_KVCACHE_SPACE), plus the runtime: what the process
holds besides (torch, vLLM, the tokenizer, load-time copies and step buffers). `engine.memory_gb`
replaces the estimate.
"""
from __future__ import annotations

import json
import logging
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..config import EngineConfig

log = logging.getLogger(__name__)
GB = 1e9
GIB = 1 << 30
DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}

# vLLM on a CPU, besides weights and KV cache: a fixed part (torch, vLLM and their kernels, Python,
# the tokenizer) and a part that grows with the model (load-time copies, per-step buffers), fitted
# to the resident memory of engine actors running the tiny test model and SmolLM2-135M in bf16 and float32.
VLLM_RUNTIME = 1.1 * GB
VLLM_RUNTIME_PER_WEIGHT = 0.5
# With vLLM's EngineCore and Worker processes (engine.in_process false) each holds torch again.
VLLM_PROCESSES_RUNTIME = 1.8 * GB
# transformers and the encoder students: torch and transformers alone, measured the same way
# (their activations grow with each batch's prompt lengths, which no setting bounds: memory_gb covers them).
TORCH_RUNTIME = 0.7 * GB

# Offline models whose GGUF is not converted yet (labeler.models) have no folder to read: their
# parameter counts as converted (Qwen's output head untied from its embeddings), so that a first
# run's checks need no conversion.
OFFLINE_PARAMS = {"qwen2.5-coder-1.5b-instruct": 1_777_088_000, "smollm2-135m-instruct": 134_515_008}


@dataclass(frozen=True)
class EngineMemory:
    """Bytes one engine actor needs, and what they are."""

    total: int
    weights: int = 0
    kv_cache: int = 0
    runtime: int = 0
    configured: bool = False  # engine.memory_gb, not an estimate

    @property
    def gb(self) -> float:
        return self.total / GB

    def parts(self) -> str:
        if self.configured:
            return "engine.memory_gb"
        kv = f" + KV cache {self.kv_cache / GB:.1f}" if self.kv_cache else ""
        return f"weights {self.weights / GB:.1f}{kv} + runtime {self.runtime / GB:.1f} GB"


def engine_memory(cfg: EngineConfig, gpu: Optional[bool] = None) -> Optional[EngineMemory]:
    """What one actor running `cfg` needs; None where nothing is declared: a remote endpoint, a GPU
    engine (its weights and cache are in GPU memory) without memory_gb, a model of unknown size."""
    from . import backend_of

    if cfg.memory_gb is not None:
        return EngineMemory(int(cfg.memory_gb * GB), configured=True)
    backend = backend_of(cfg)
    gpu = cfg.gpus_per_actor > 0 if gpu is None else gpu
    if backend == "openai" or gpu:
        return None
    params = model_params(cfg.model)
    if params is None:
        return None
    if backend == "vllm":
        weights = params * DTYPE_BYTES[_dtype(cfg.dtype)]
        kv = kv_cache_bytes(cfg)
        fixed = VLLM_RUNTIME if cfg.runs_in_process(gpu=False) else VLLM_PROCESSES_RUNTIME
        runtime = int(fixed + VLLM_RUNTIME_PER_WEIGHT * weights)
    else:
        dtype = _dtype(cfg.dtype) if backend == "transformers" else "float32"  # the encoders load float32
        weights, kv, runtime = params * DTYPE_BYTES[dtype], 0, int(TORCH_RUNTIME)
    total = weights + kv + runtime
    return EngineMemory(int(math.ceil(total / 1e8) * 1e8), weights, kv, runtime)


def _dtype(requested: str) -> str:
    """The dtype `auto` resolves to on this machine's CPU (hardware.resolve_dtype, without its log line)."""
    from ..hardware import cpu_has_bf16

    if requested == "auto":
        return "bfloat16" if cpu_has_bf16() else "float32"
    return requested


def kv_cache_bytes(cfg: EngineConfig) -> int:
    """The KV cache vLLM allocates on a CPU: VLLM_CPU_KVCACHE_SPACE GiB where set (it wins over
    the config, as in engines.vllm_engine), else kv_cache_gib rounded to whole GiB."""
    env = os.environ.get("VLLM_CPU_KVCACHE_SPACE")
    try:
        gib = float(env) if env else max(1, int(round(cfg.kv_cache_gib)))
    except ValueError:
        gib = max(1, int(round(cfg.kv_cache_gib)))
    return int(gib * GIB)


def model_params(spec: str) -> Optional[int]:
    """The parameter count of a model spec, read without loading it; None when unknown."""
    folder = model_folder(spec)
    if folder is not None:
        return folder_params(folder)
    from .. import models

    if spec.startswith(models.OFFLINE_PREFIX):
        return OFFLINE_PARAMS.get(spec[len(models.OFFLINE_PREFIX):])
    return None


def model_folder(spec: str) -> Optional[Path]:
    """The folder holding the model's files where one is on this machine: a local folder, a
    converted offline model, or a hub id's snapshot in the Hugging Face cache."""
    from .. import models

    if spec.startswith(models.OFFLINE_PREFIX):
        name = spec[len(models.OFFLINE_PREFIX):]
        m = models.OFFLINE.get(name)
        if m is None:
            return None
        try:
            p = Path(m.locate()) if m.kind == "hf" else models.cache_dir() / "models" / name
        except Exception:
            return None
        return p if (p / "config.json").is_file() else None
    p = Path(spec).expanduser()
    if p.is_dir():
        return p
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(spec, "config.json")
        return Path(hit).parent if isinstance(hit, str) else None
    except Exception:
        return None


def folder_params(folder: Path) -> Optional[int]:
    """Parameters of a checkpoint folder: from the safetensors headers (exact), else from the
    size of its .bin files, else from config.json's shape."""
    config = _config(folder)
    files = sorted(folder.glob("*.safetensors"))
    if files:
        try:
            shapes = {k: v for f in files for k, v in _safetensors_header(f).items() if k != "__metadata__"}
        except (OSError, ValueError, KeyError):
            shapes = None
        if shapes:
            if config.get("tie_word_embeddings") and "lm_head.weight" in shapes and len(shapes) > 1:
                shapes.pop("lm_head.weight")  # loaded as the embeddings themselves
            return sum(math.prod(v["shape"]) for v in shapes.values())
    bins = sorted(folder.glob("*.bin"))
    if bins:
        width = DTYPE_BYTES.get(str(config.get("torch_dtype") or config.get("dtype") or "float32"), 4)
        return sum(f.stat().st_size for f in bins) // width
    return config_params(config)


def _safetensors_header(path: Path) -> dict:
    """A safetensors file's tensor names, dtypes and shapes: its JSON header (after its 8-byte length)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > 100 << 20:
            raise ValueError(f"{path}: implausible safetensors header of {n} bytes")
        return json.loads(f.read(n))


def _config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def config_params(c: dict) -> Optional[int]:
    """A decoder's parameters from its shape (embeddings, attention with grouped KV heads, a gated
    MLP, norms); None without the fields it needs."""
    c = c.get("text_config", c)
    try:
        h, layers, vocab = int(c["hidden_size"]), int(c["num_hidden_layers"]), int(c["vocab_size"])
    except (KeyError, TypeError, ValueError):
        return None
    inter = int(c.get("intermediate_size") or 4 * h)
    heads = int(c.get("num_attention_heads") or 1)
    kv_heads = int(c.get("num_key_value_heads") or heads)
    head_dim = int(c.get("head_dim") or h // heads)
    attn = 2 * h * heads * head_dim + 2 * h * kv_heads * head_dim
    per_layer = attn + 3 * h * inter + 2 * h
    embed = vocab * h * (1 if c.get("tie_word_embeddings", True) else 2)
    return embed + layers * per_layer + h


def declare(cfg: EngineConfig, stage: str) -> Optional[int]:
    """The bytes each engine actor of `stage` asks Ray for (None: nothing declared), said in one line."""
    m = engine_memory(cfg)
    if m is not None:
        log.info("[%s] each engine asks Ray for %.1f GB (%s)", stage, m.gb, m.parts())
    return None if m is None else m.total
