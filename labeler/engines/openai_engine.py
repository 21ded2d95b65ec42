"""Any OpenAI-compatible endpoint (GPT-4o, a `vllm serve`): bounded concurrency, retries with
backoff (the client's own, on 429/5xx/timeouts), timeouts, and a persistent request cache.

Grades come from `top_logprobs` when the server returns them, otherwise from a strict parse of
the reply; a reply that parses as no grade is an error with the raw text, never a grade.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from ..config import EngineConfig
from .base import Completion, Engine, GradeResult, grade_from_text, grade_from_top_logprobs
from .cache import RequestCache


class OpenAIEngine(Engine):
    def __init__(self, cfg: EngineConfig, seed: int = 0):
        import openai

        from ..models import cache_dir

        self.cfg = cfg
        self.seed = seed
        self.model_id = cfg.model
        self.model_version = cfg.model
        self._openai = openai
        self.client = openai.OpenAI(base_url=cfg.base_url, api_key=os.environ.get(cfg.api_key_env) or "EMPTY",
                                    timeout=cfg.timeout_s, max_retries=cfg.max_retries)
        self.cache = None
        if cfg.request_cache:
            self.cache = RequestCache(cfg.request_cache_path or Path(cache_dir()) / "requests.sqlite")

    def prompt(self, messages, assistant_prefix=""):
        return messages  # chat endpoints take messages

    def count_tokens(self, prompt) -> int:
        return 0

    def _call(self, messages, **params) -> tuple[Optional[dict], Optional[tuple[str, str]]]:
        """A plain-dict answer (content, first tokens' logprobs, usage), from the cache when possible."""
        key = None
        if self.cache is not None:
            key = RequestCache.key(self.cfg.model, messages, {**params, "base_url": self.cfg.base_url})
            hit = self.cache.get(key)
            if hit is not None:
                return hit, None
        try:
            resp = self.client.chat.completions.create(model=self.cfg.model, messages=messages, **params)
        except self._openai.APITimeoutError as e:
            return None, ("timeout", f"no answer within {self.cfg.timeout_s}s after {self.cfg.max_retries} retries: {e}")
        except self._openai.APIConnectionError as e:
            return None, ("connection_error", f"cannot reach {self.cfg.base_url} after {self.cfg.max_retries} retries: {e}")
        except self._openai.APIStatusError as e:
            code = e.status_code
            reason = "rate_limited" if code == 429 else "server_error" if code >= 500 or code in (408, 409) else "request_error"
            tried = f" after {self.cfg.max_retries} retries" if reason != "request_error" else ""
            return None, (reason, f"HTTP {code}{tried}: {str(e)[:300]}")
        if not resp.choices:
            return None, ("server_error", "the server answered with no choices")
        choice = resp.choices[0]
        lp = getattr(choice, "logprobs", None)
        tokens = []
        if lp is not None and lp.content:
            for t in lp.content[:8]:
                tokens.append({"token": t.token, "logprob": t.logprob,
                               "top": [{"token": x.token, "logprob": x.logprob} for x in (t.top_logprobs or [])]})
        u = resp.usage
        answer = {"content": choice.message.content or "", "tokens": tokens,
                  "prompt_tokens": u.prompt_tokens if u else 0, "completion_tokens": u.completion_tokens if u else 0}
        if self.cache is not None:
            self.cache.put(key, answer)
        return answer, None

    def _map(self, fn, items):
        with ThreadPoolExecutor(self.cfg.concurrency) as pool:
            return list(pool.map(fn, items))

    def generate(self, prompts, *, max_tokens, temperature, seeds=None):
        def one(item):
            messages, seed = item
            ans, err = self._call(messages, max_tokens=max_tokens, temperature=temperature, seed=seed)
            if err:
                return Completion(None, error=err[0], detail=err[1])
            return Completion(ans["content"], ans["prompt_tokens"], ans["completion_tokens"])
        return self._map(one, list(zip(prompts, seeds or [None] * len(prompts))))

    def grade(self, prompts, *, top_logprobs=20):
        def one(messages) -> GradeResult:
            for attempt in range(self.cfg.parse_retries + 1):
                r = self._grade_once(messages, top_logprobs, attempt)
                if r.error != "unparseable_output":
                    return r
            r.detail = f"{r.detail} (asked {self.cfg.parse_retries + 1} times)"
            return r
        return self._map(one, prompts)

    def _grade_once(self, messages, top_logprobs: int, attempt: int) -> GradeResult:
        ans, err = self._call(messages, max_tokens=4, temperature=0.0 if attempt == 0 else 0.3,
                              logprobs=True, top_logprobs=min(top_logprobs, 20), seed=self.seed + attempt)
        if err:
            return GradeResult(error=err[0], detail=err[1])
        text, ptoks = ans["content"], ans["prompt_tokens"]
        # The first token that is not whitespace or markup carries the grade.
        for tok in ans["tokens"]:
            if tok["token"].strip(" :*#\n"):
                top = {t["token"]: t["logprob"] for t in tok["top"]} or {tok["token"]: tok["logprob"]}
                probs, mass = grade_from_top_logprobs(top)
                if probs is not None:
                    return GradeResult(probs=probs, mass=mass, prompt_tokens=ptoks, raw=text)
                break
        g = grade_from_text(text)
        if g is None:
            return GradeResult(raw=text, prompt_tokens=ptoks, error="unparseable_output",
                               detail=f"reply is not a grade 0-3: {text[:200]!r}")
        # No logprobs from this server: the parsed grade, with its distribution unknown-but-certain.
        return GradeResult(probs=[1.0 if i == g else 0.0 for i in range(4)], mass=None,
                           prompt_tokens=ptoks, raw=text)
