"""Model backends behind one interface (engines.base.Engine), found by name in one registry.

Adding a backend is one module with its Engine class and one line in BACKENDS. A backend whose
models are labeler exports (a distilled cross-encoder or bi-encoder) names the marker file its
export folders hold, so `labeler label --model DIR` picks it whatever backend the config names.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import NamedTuple, Optional

from ..config import EngineConfig
from .base import Engine


class Backend(NamedTuple):
    cls: str                              # "module:Class" inside labeler.engines
    export_marker: Optional[str] = None   # a file in the model folders this backend alone reads
    reads_token_ids: bool = False         # takes prompt token ids from the grading stream


BACKENDS: dict[str, Backend] = {
    "vllm": Backend("vllm_engine:VLLMEngine", reads_token_ids=True),
    "openai": Backend("openai_engine:OpenAIEngine"),
    "transformers": Backend("transformers_engine:TransformersEngine"),
    "cross_encoder": Backend("cross_encoder_engine:CrossEncoderEngine", "labeler_cross_encoder.json"),
    "bi_encoder": Backend("bi_encoder_engine:BiEncoderEngine", "labeler_bi_encoder.json"),
}


def export_backend(model) -> Optional[str]:
    """The backend of a labeler export folder (by its marker file), or None for any other model."""
    try:
        p = Path(model).expanduser()
        for name, b in BACKENDS.items():
            if b.export_marker and (p / b.export_marker).is_file():
                return name
    except (OSError, TypeError):
        pass
    return None


def backend_of(cfg: EngineConfig) -> str:
    """The backend that runs `cfg`: an export's own one, else the configured one."""
    return export_backend(cfg.model) or cfg.backend


def engine_class(backend: str) -> type[Engine]:
    if backend not in BACKENDS:
        raise ValueError(f"unknown engine backend {backend!r} (known: {', '.join(BACKENDS)})")
    module, cls = BACKENDS[backend].cls.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def make_engine(cfg: EngineConfig, seed: int = 0) -> Engine:
    return engine_class(backend_of(cfg))(cfg, seed)


def reads_token_ids(cfg: EngineConfig) -> bool:
    """Engines that take prompt token ids (vLLM's generative models); others build their inputs."""
    return BACKENDS[backend_of(cfg)].reads_token_ids


__all__ = ["BACKENDS", "Backend", "Engine", "backend_of", "engine_class", "export_backend", "make_engine",
           "reads_token_ids"]
