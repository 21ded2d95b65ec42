"""Any OpenAI-compatible endpoint (GPT-4o, a `vllm serve`): bounded concurrency, retries, timeouts.

Grades come from `top_logprobs` when the server returns them, otherwise from a strict parse of
the reply; a reply that parses as no grade is an error with the raw text, never a grade.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from ..config import EngineConfig
from .base import Completion, Engine, GradeResult, grade_from_text, grade_from_top_logprobs


class OpenAIEngine(Engine):
    def __init__(self, cfg: EngineConfig, seed: int = 0):
        import openai

        self.cfg = cfg
        self.seed = seed
        self.model_id = cfg.model
        self.model_version = cfg.model
        self._openai = openai
        self.client = openai.OpenAI(base_url=cfg.base_url, api_key=os.environ.get(cfg.api_key_env) or "EMPTY",
                                    timeout=cfg.timeout_s, max_retries=cfg.max_retries)

    def prompt(self, messages, assistant_prefix=""):
        # Chat endpoints take messages; the assistant prefix is a hint in the user turn instead.
        return messages

    def count_tokens(self, prompt) -> int:
        return 0

    def _call(self, messages, **kw):
        try:
            return self.client.chat.completions.create(model=self.cfg.model, messages=messages, **kw), None
        except self._openai.APITimeoutError as e:
            return None, ("timeout", f"no answer within {self.cfg.timeout_s}s after {self.cfg.max_retries} retries: {e}")
        except self._openai.APIConnectionError as e:
            return None, ("connection_error", f"cannot reach {self.cfg.base_url}: {e}")
        except self._openai.APIStatusError as e:
            return None, ("server_error", f"HTTP {e.status_code} after {self.cfg.max_retries} retries: {str(e)[:300]}")

    def _map(self, fn, items):
        with ThreadPoolExecutor(self.cfg.concurrency) as pool:
            return list(pool.map(fn, items))

    def generate(self, prompts, *, max_tokens, temperature, seeds=None):
        def one(item):
            messages, seed = item
            resp, err = self._call(messages, max_tokens=max_tokens, temperature=temperature, seed=seed)
            if err:
                return Completion(None, error=err[0], detail=err[1])
            u = resp.usage
            return Completion(resp.choices[0].message.content or "", u.prompt_tokens if u else 0,
                              u.completion_tokens if u else 0)
        return self._map(one, list(zip(prompts, seeds or [None] * len(prompts))))

    def grade(self, prompts, *, top_logprobs=20):
        def one(messages) -> GradeResult:
            resp, err = self._call(messages, max_tokens=4, temperature=0.0, logprobs=True,
                                   top_logprobs=min(top_logprobs, 20), seed=self.seed)
            if err:
                return GradeResult(error=err[0], detail=err[1])
            choice = resp.choices[0]
            text = choice.message.content or ""
            ptoks = resp.usage.prompt_tokens if resp.usage else 0
            lp = getattr(choice, "logprobs", None)
            if lp is not None and lp.content:
                # The first token that is not whitespace/punctuation carries the grade.
                for tok in lp.content:
                    if tok.token.strip(" :*#\n"):
                        top = {t.token: t.logprob for t in (tok.top_logprobs or [])} or {tok.token: tok.logprob}
                        probs, mass = grade_from_top_logprobs(top)
                        if probs is not None:
                            return GradeResult(probs=probs, mass=mass, prompt_tokens=ptoks, raw=text)
                        break
            g = grade_from_text(text)
            if g is None:
                return GradeResult(raw=text, prompt_tokens=ptoks, error="unparseable_output",
                                   detail=f"reply is not a grade 0-3: {text[:200]!r}")
            probs = [1.0 if i == g else 0.0 for i in range(4)]
            return GradeResult(probs=probs, mass=None, prompt_tokens=ptoks, raw=text)
        return self._map(one, prompts)
