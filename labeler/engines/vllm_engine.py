"""vLLM offline engine: the throughput path, one instance per Ray actor (one per GPU on a cluster)."""
from __future__ import annotations

import math
import os
from functools import cached_property
from typing import Sequence

from .. import models
from ..config import EngineConfig
from ..hardware import gpu_available as _on_gpu
from ..hardware import resolve_dtype, thread_count
from ..reasons import NO_GRADE_TOKEN, PROMPT_TOO_LONG
from .base import GRADE_STRINGS, Completion, Engine, EngineWatch, GradeResult, grade_from_top_logprobs

# Tokens per engine step on a CPU: few enough that even on the slowest CPU path (float32 on AVX2)
# one step stays well inside vLLM's execute-model timeout (docs/benchmarks.md).
CPU_MAX_BATCHED_TOKENS = 2048
# The smallest block vLLM's CPU attention takes (a multiple of 32): finer prefix-cache reuse.
CPU_BLOCK_SIZE = 32


def _engine_processes() -> list:
    """vLLM's EngineCore process(es): the children of this process that run the model."""
    from ..reaper import descendants

    procs = []
    for p in descendants():
        try:
            if "EngineCore" in p.name() or any("EngineCore" in c for c in p.cmdline()[:2]):
                procs.append(p)
        except Exception:
            continue
    return procs


def _watch_steps(llm, model_id: str) -> EngineWatch:
    """In process there is no EngineCore to watch and no executor timeout: every engine step stamps
    the watch instead, and a step that runs past vLLM's own execute-model limit
    (VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS, 300 s by default) ends the actor like a dead engine."""
    import vllm.envs as envs

    watch = EngineWatch([], model_id, stall_s=float(envs.VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS))
    step = llm.llm_engine.step

    def stamped_step():
        out = step()
        watch.tick()
        return out

    llm.llm_engine.step = stamped_step  # LLM's run loop calls self.llm_engine.step() once per engine step
    return watch


class VLLMEngine(Engine):
    def __init__(self, cfg: EngineConfig, seed: int = 0):
        # Read by vLLM's CPU backend when the engine starts (GiB of KV cache). These are the
        # engine actor's own process environment, which the engine processes it starts inherit.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, int(round(cfg.kv_cache_gib)))))
        gpu = _on_gpu()
        self.in_process = cfg.runs_in_process(gpu)
        # Read when the LLM is built: the in-process client, or an EngineCore process. vLLM caches
        # its environment once an engine core has started in this process: uncached, so that one
        # process can hold engines of both kinds.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if self.in_process else "1"
        import vllm.envs

        vllm.envs.disable_envs_cache()
        # vLLM binds OMP threads only for a Worker process it starts: in process the model runs on
        # this process's OMP threads, set when it started (raycluster.pool_args gives an engine
        # actor cpu_threads as OMP_NUM_THREADS; Ray's default is the actor's CPUs).
        n = thread_count(cfg.cpu_threads)
        if n is not None and not self.in_process:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{n - 1}"
            os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
        from vllm import LLM

        self.cfg = cfg
        path = models.resolve(cfg.model)
        self.model_id = cfg.model
        self.model_version = models.model_version(path)
        dtype = resolve_dtype(cfg.dtype, gpu=gpu, what=f"vLLM {cfg.model}")
        kwargs = dict(model=path, dtype=dtype, max_model_len=cfg.max_model_len,
                      max_num_seqs=cfg.max_num_seqs, seed=seed,
                      tensor_parallel_size=cfg.tensor_parallel_size,
                      enable_prefix_caching=cfg.enable_prefix_caching)
        if gpu:
            kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
        else:
            kwargs["enforce_eager"] = True  # no CUDA graphs on CPU
        if self.in_process:
            kwargs["distributed_executor_backend"] = "uni"
        if cfg.block_size or not gpu:
            kwargs["block_size"] = cfg.block_size or CPU_BLOCK_SIZE
        batched = cfg.max_num_batched_tokens or (None if gpu else CPU_MAX_BATCHED_TOKENS)
        if batched:
            # A bound on one step's work: a CPU step must stay far below vLLM's execute-model timeout.
            # Whole prompts only (no chunked prefill): on a CPU, vLLM 0.32 fails a partly prefilled
            # request that has its own seed ("CPU Generator does not use offset"), and synthesis
            # seeds every request. So a step holds whole prompts up to the budget.
            kwargs["max_num_batched_tokens"] = max(batched, cfg.max_model_len, cfg.max_num_seqs)
            kwargs["enable_chunked_prefill"] = False
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        if self.in_process:
            self.watch = _watch_steps(self.llm, cfg.model)
        else:
            self.watch = EngineWatch(_engine_processes(), cfg.model)

    def is_dead(self, exc: BaseException) -> bool:
        from vllm.v1.engine.exceptions import EngineDeadError

        return isinstance(exc, EngineDeadError)

    def encode(self, prompts: Sequence) -> list[list[int]]:
        """Token ids of each prompt; lists of ids (already tokenized prompts) pass through."""
        out = [None] * len(prompts)
        text = [i for i, p in enumerate(prompts) if isinstance(p, str)]
        if text:
            # One batched call into the Rust tokenizer instead of one Python call per prompt.
            ids = self.tokenizer([prompts[i] for i in text], add_special_tokens=False)["input_ids"]
            for i, x in zip(text, ids):
                out[i] = x
        for i, p in enumerate(prompts):
            if out[i] is None:
                out[i] = list(p)
        return out

    def _fits(self, ids: list[list[int]]) -> list[bool]:
        """Prompts vLLM can take (a too-long prompt fails its whole batch in vLLM)."""
        return [len(x) < self.cfg.max_model_len for x in ids]

    @cached_property
    def grade_of_token(self) -> dict[int, str]:
        """Every vocabulary id that decodes to a grade digit (' 2', '2', ...) -> that digit.

        Logprobs are then read by id, so vLLM need not detokenize the top candidates of every
        pair (detokenize=False), which is a large part of its per-request work for 1-token outputs.
        """
        size = len(self.tokenizer)
        texts = self.tokenizer.batch_decode([[i] for i in range(size)])
        return {i: t.strip() for i, t in enumerate(texts) if t.strip() in GRADE_STRINGS}

    def generate(self, prompts, *, max_tokens, temperature, seeds=None):
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        ids = self.encode(prompts)
        ok = [i for i, fits in enumerate(self._fits(ids)) if fits]
        results: list[Completion] = [
            Completion(None, error=PROMPT_TOO_LONG,
                       detail=f"prompt exceeds max_model_len={self.cfg.max_model_len} tokens")
            for _ in prompts]
        if ok:
            params = [SamplingParams(max_tokens=max_tokens, temperature=temperature,
                                     seed=None if seeds is None else seeds[i]) for i in ok]
            outs = self.llm.generate([TokensPrompt(prompt_token_ids=ids[i]) for i in ok], params, use_tqdm=False)
            for i, o in zip(ok, outs):
                c = o.outputs[0]
                results[i] = Completion(c.text, len(o.prompt_token_ids), len(c.token_ids))
        return results

    def grade(self, prompts, *, top_logprobs=20):
        """One forward pass per prompt (text or token ids), read as a grade distribution.

        Prompts are tokenized once here and handed to vLLM as token ids (vLLM would otherwise
        tokenize them again), and the top logprobs are matched to the grade tokens by id.
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        ids = self.encode(prompts)
        ok = [i for i, fits in enumerate(self._fits(ids)) if fits]
        results = [GradeResult(error=PROMPT_TOO_LONG, prompt_tokens=len(ids[i]),
                               detail=f"prompt exceeds max_model_len={self.cfg.max_model_len} tokens")
                   for i in range(len(prompts))]
        if ok:
            params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=top_logprobs, detokenize=False)
            outs = self.llm.generate([TokensPrompt(prompt_token_ids=ids[i]) for i in ok], params, use_tqdm=False)
            grade_of = self.grade_of_token
            for i, o in zip(ok, outs):
                c = o.outputs[0]
                top = {}
                if c.logprobs:
                    for tok_id, lp in c.logprobs[0].items():
                        g = grade_of.get(tok_id)
                        if g is not None:  # ' 2' and '2' add up (logsumexp) per grade
                            top[g] = math.log(math.exp(top[g]) + math.exp(lp.logprob)) if g in top else lp.logprob
                probs, mass = grade_from_top_logprobs(top)
                r = GradeResult(probs=probs, mass=mass, prompt_tokens=len(ids[i]))
                if probs is None:
                    raw = self.tokenizer.decode(list(c.token_ids))
                    r.raw, r.error = raw, NO_GRADE_TOKEN
                    r.detail = f"none of the top-{top_logprobs} next tokens is a grade 0-3 (model wrote {raw!r})"
                results[i] = r
        return results
