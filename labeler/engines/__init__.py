"""LLM backends behind one interface (see base.Engine)."""
from __future__ import annotations

from ..config import EngineConfig
from .base import Completion, Engine, GradeResult, grade_from_text, grade_from_top_logprobs


def make_engine(cfg: EngineConfig, seed: int = 0) -> Engine:
    from ..rerank import is_cross_encoder

    # A cross-encoder export is graded by its own engine whatever backend the config names, so
    # `labeler label --model DIR` works with either kind of student.
    if cfg.backend == "cross_encoder" or is_cross_encoder(cfg.model):
        from .cross_encoder_engine import CrossEncoderEngine
        return CrossEncoderEngine(cfg, seed)
    if cfg.backend == "vllm":
        from .vllm_engine import VLLMEngine
        return VLLMEngine(cfg, seed)
    if cfg.backend == "openai":
        from .openai_engine import OpenAIEngine
        return OpenAIEngine(cfg, seed)
    if cfg.backend == "transformers":
        from .transformers_engine import TransformersEngine
        return TransformersEngine(cfg, seed)
    raise ValueError(f"unknown engine backend {cfg.backend!r}")


__all__ = ["Completion", "Engine", "GradeResult", "grade_from_text", "grade_from_top_logprobs", "make_engine"]
