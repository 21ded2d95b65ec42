"""Any OpenAI-compatible endpoint (GPT-4o, a `vllm serve`): bounded concurrency, retries with
backoff (the client's own, on 429/5xx/timeouts), timeouts, and a persistent request cache.
With `mode: batch` the same requests go through the OpenAI Batch API instead (openai_batch): one
batch JSONL file per engine batch, `custom_id` the pair key, at half the price and a day's
latency; the answers take the same way to grades and failure reasons as the request path's.

Grades come from `top_logprobs` when the server returns them, otherwise from a strict parse of
the reply; a reply that parses as no grade is an error with the raw text, never a grade.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from ..config import EngineConfig
from ..reasons import CONNECTION_ERROR, REQUEST_ERROR, SERVER_ERROR, TIMEOUT, UNPARSEABLE_OUTPUT
from .base import Completion, Engine, GradeResult, grade_from_text, grade_from_top_logprobs
from .cache import RequestCache


class OpenAIEngine(Engine):
    takes_keys = True  # a batch line's custom_id is the pair key

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
        self.batches = None
        if cfg.mode == "batch":
            from .openai_batch import BatchRunner, Ledger

            where = Path(cfg.batch_dir) if cfg.batch_dir else (
                Path(cfg.request_cache_path).parent if cfg.request_cache_path else Path(cache_dir()))
            self.batches = BatchRunner(self.client, openai, Ledger(where / "batches.sqlite"), poll_s=cfg.batch_poll_s,
                                       window=cfg.batch_window, answer=self._answer_of_body, keep=self._keep,
                                       base_url=cfg.base_url)

    def prompt(self, messages, assistant_prefix=""):
        return messages  # chat endpoints take messages

    def count_tokens(self, prompt) -> int:
        return 0

    def _key(self, messages, params: dict) -> str:
        return RequestCache.key(self.cfg.model, messages, {**params, "base_url": self.cfg.base_url})

    def _call(self, messages, **params) -> tuple[Optional[dict], Optional[tuple[str, str]]]:
        """A plain-dict answer (content, first tokens' logprobs, usage), from the cache when possible."""
        key = None
        if self.cache is not None:
            key = self._key(messages, params)
            hit = self.cache.get(key)
            if hit is not None:
                return hit, None
        try:
            resp = self.client.chat.completions.create(model=self.cfg.model, messages=messages, **params)
        except self._openai.APITimeoutError as e:
            return None, (TIMEOUT, f"no answer within {self.cfg.timeout_s}s after {self.cfg.max_retries} retries: {e}")
        except self._openai.APIConnectionError as e:
            return None, (CONNECTION_ERROR, f"cannot reach {self.cfg.base_url} after {self.cfg.max_retries} retries: {e}")
        except self._openai.APIStatusError as e:
            from .openai_batch import status_reason

            reason = status_reason(e.status_code)
            tried = f" after {self.cfg.max_retries} retries" if reason != REQUEST_ERROR else ""
            return None, (reason, f"HTTP {e.status_code}{tried}: {str(e)[:300]}")
        answer, err = _answer(resp)
        if err is None and self.cache is not None:
            self.cache.put(key, answer)
        return answer, err

    def _answer_of_body(self, body: dict):
        """A batch output line's response body (a chat completion as JSON) -> the request path's answer."""
        from openai.types.chat import ChatCompletion

        try:
            return _answer(ChatCompletion.model_validate(body))
        except ValueError as e:
            return None, (SERVER_ERROR, f"the batch answered with no chat completion: {str(e)[:300]}")

    def _keep(self, key: str, answer: dict) -> bool:
        if self.cache is not None:
            self.cache.put(key, answer)
        return True

    def _calls(self, requests: list[tuple[list, dict]], names: Optional[list]) -> list:
        """`_call` of each (messages, params), in one Batch API job in batch mode; the request
        cache first either way. `names`: the batch lines' custom_ids (pair keys)."""
        if self.batches is None:
            return self._map(lambda r: self._call(r[0], **r[1]), requests)
        out: list = [None] * len(requests)
        todo, seen = [], set()
        for i, (messages, params) in enumerate(requests):
            key = self._key(messages, params)
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                out[i] = (hit, None)
                continue
            cid = str(names[i]) if names is not None and names[i] is not None else key
            while cid in seen:  # custom_ids are unique in a batch file
                cid = f"{cid}#{i}"
            seen.add(cid)
            body = {"model": self.cfg.model, "messages": messages, **{k: v for k, v in params.items() if v is not None}}
            todo.append((i, key, cid, body))
        if todo:
            got = self.batches.run([(key, cid, body) for _, key, cid, body in todo])
            for i, key, _, _ in todo:
                out[i] = got.get(key) or (None, (SERVER_ERROR, "the batch gave no answer for this request"))
        return out

    def _map(self, fn, items):
        with ThreadPoolExecutor(self.cfg.concurrency) as pool:
            return list(pool.map(fn, items))

    def generate(self, prompts, *, max_tokens, temperature, seeds=None, keys=None):
        answers = self._calls([(m, {"max_tokens": max_tokens, "temperature": temperature, "seed": seed})
                               for m, seed in zip(prompts, seeds or [None] * len(prompts))], keys)
        return [Completion(None, error=err[0], detail=err[1]) if err else
                Completion(ans["content"], ans["prompt_tokens"], ans["completion_tokens"]) for ans, err in answers]

    def grade(self, prompts, *, top_logprobs=20, keys=None):
        """A reply that is not a grade is asked again (parse_retries times, at temperature 0.3):
        request by request, or in batch mode all such prompts of a batch in one more batch."""
        results: list = [None] * len(prompts)
        todo = list(range(len(prompts)))
        for attempt in range(self.cfg.parse_retries + 1):
            params = self._grade_params(top_logprobs, attempt)
            answers = self._calls([(prompts[i], params) for i in todo], [keys[i] for i in todo] if keys else None)
            for i, (ans, err) in zip(todo, answers):
                results[i] = self._grade_of(ans, err)
            todo = [i for i in todo if results[i].error == UNPARSEABLE_OUTPUT]
            if not todo:
                break
        for i in todo:
            results[i].detail = f"{results[i].detail} (asked {self.cfg.parse_retries + 1} times)"
        return results

    def _grade_params(self, top_logprobs: int, attempt: int) -> dict:
        return {"max_tokens": 4, "temperature": 0.0 if attempt == 0 else 0.3, "logprobs": True,
                "top_logprobs": min(top_logprobs, 20), "seed": self.seed + attempt}

    def _grade_of(self, ans: Optional[dict], err) -> GradeResult:
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
            return GradeResult(raw=text, prompt_tokens=ptoks, error=UNPARSEABLE_OUTPUT,
                               detail=f"reply is not a grade 0-3: {text[:200]!r}")
        # No logprobs from this server: the parsed grade, with its distribution unknown-but-certain.
        return GradeResult(probs=[1.0 if i == g else 0.0 for i in range(4)], mass=None,
                           prompt_tokens=ptoks, raw=text)


def _answer(resp) -> tuple[Optional[dict], Optional[tuple[str, str]]]:
    """A chat completion -> the plain-dict answer the cache keeps (content, first tokens' logprobs, usage)."""
    if not resp.choices:
        return None, (SERVER_ERROR, "the server answered with no choices")
    choice = resp.choices[0]
    lp = getattr(choice, "logprobs", None)
    tokens = []
    if lp is not None and lp.content:
        for t in lp.content[:8]:
            tokens.append({"token": t.token, "logprob": t.logprob,
                           "top": [{"token": x.token, "logprob": x.logprob} for x in (t.top_logprobs or [])]})
    u = resp.usage
    return {"content": choice.message.content or "", "tokens": tokens,
            "prompt_tokens": u.prompt_tokens if u else 0, "completion_tokens": u.completion_tokens if u else 0}, None
