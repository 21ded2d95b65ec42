"""vLLM offline engine: the throughput path, one instance per Ray actor (one per GPU on a cluster)."""
from __future__ import annotations

import os
from typing import Optional, Sequence

from .. import models
from ..config import EngineConfig
from .base import Completion, Engine, GradeResult, grade_from_top_logprobs


def _on_gpu() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:
        return False


class VLLMEngine(Engine):
    def __init__(self, cfg: EngineConfig, seed: int = 0):
        # Read by vLLM's CPU backend when the engine starts (GiB of KV cache).
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, int(round(cfg.kv_cache_gib)))))
        from vllm import LLM

        self.cfg = cfg
        path = models.resolve(cfg.model)
        self.model_id = cfg.model
        self.model_version = models.model_version(path)
        gpu = _on_gpu()
        kwargs = dict(model=path, dtype=cfg.dtype, max_model_len=cfg.max_model_len,
                      max_num_seqs=cfg.max_num_seqs, seed=seed,
                      tensor_parallel_size=cfg.tensor_parallel_size,
                      enable_prefix_caching=cfg.enable_prefix_caching)
        if gpu:
            kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
        else:
            kwargs["enforce_eager"] = True  # no CUDA graphs on CPU
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def _fits(self, prompts: Sequence[str]) -> list[Optional[int]]:
        """Token counts, or None for prompts too long for the engine (vLLM would fail the batch)."""
        out = []
        for p in prompts:
            n = len(self.tokenizer.encode(p, add_special_tokens=False))
            out.append(n if n < self.cfg.max_model_len else None)
        return out

    def generate(self, prompts, *, max_tokens, temperature, seeds=None):
        from vllm import SamplingParams

        sizes = self._fits(prompts)
        ok = [i for i, n in enumerate(sizes) if n is not None]
        results: list[Completion] = [
            Completion(None, error="prompt_too_long",
                       detail=f"prompt exceeds max_model_len={self.cfg.max_model_len} tokens")
            for _ in prompts]
        if ok:
            params = [SamplingParams(max_tokens=max_tokens, temperature=temperature,
                                     seed=None if seeds is None else seeds[i]) for i in ok]
            outs = self.llm.generate([prompts[i] for i in ok], params, use_tqdm=False)
            for i, o in zip(ok, outs):
                c = o.outputs[0]
                results[i] = Completion(c.text, len(o.prompt_token_ids), len(c.token_ids))
        return results

    def grade(self, prompts, *, top_logprobs=20):
        from vllm import SamplingParams

        sizes = self._fits(prompts)
        ok = [i for i, n in enumerate(sizes) if n is not None]
        results = [GradeResult(error="prompt_too_long",
                               detail=f"prompt exceeds max_model_len={self.cfg.max_model_len} tokens")
                   for _ in prompts]
        if ok:
            params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=top_logprobs)
            outs = self.llm.generate([prompts[i] for i in ok], params, use_tqdm=False)
            for i, o in zip(ok, outs):
                c = o.outputs[0]
                top = {}
                if c.logprobs:
                    for tok_id, lp in c.logprobs[0].items():
                        token = lp.decoded_token if lp.decoded_token is not None else self.tokenizer.decode([tok_id])
                        # Several ids can decode alike; keep them all (probabilities add up per grade).
                        top[f"{token}\x00{tok_id}"] = lp.logprob
                probs, mass = grade_from_top_logprobs(_merge_same(top))
                r = GradeResult(probs=probs, mass=mass, prompt_tokens=len(o.prompt_token_ids), raw=c.text)
                if probs is None:
                    r.error = "no_grade_token"
                    r.detail = f"none of the top-{top_logprobs} next tokens is a grade 0-3 (model wrote {c.text!r})"
                results[i] = r
        return results


def _merge_same(top: dict[str, float]) -> dict[str, float]:
    """Keys are 'token\\0id'; grade aggregation needs token strings, summing same-string tokens."""
    import math
    merged: dict[str, float] = {}
    for k, lp in top.items():
        tok = k.split("\x00")[0]
        merged[tok] = math.log(math.exp(merged[tok]) + math.exp(lp)) if tok in merged else lp
    return merged
