"""Plain Hugging Face transformers: the fallback where vLLM is unavailable, and the naive baseline."""
from __future__ import annotations

from .. import models
from ..config import EngineConfig
from ..hardware import resolve_dtype
from ..reasons import NO_GRADE_TOKEN
from .base import Completion, Engine, GradeResult, grade_from_top_logprobs


class TransformersEngine(Engine):
    def __init__(self, cfg: EngineConfig, seed: int = 0):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        self.torch = torch
        path = models.resolve(cfg.model)
        self.model_id = cfg.model
        self.model_version = models.model_version(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        name = resolve_dtype(cfg.dtype, what=f"transformers {cfg.model}")
        dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(name, torch.float32)
        # A GPU when there is one (the fixture's teacher grades thousands of pairs a minute there).
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        torch.manual_seed(seed)

    def _batch(self, prompts):
        return self.tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)

    def generate(self, prompts, *, max_tokens, temperature, seeds=None):
        enc = self._batch(prompts)
        with self.torch.no_grad():
            out = self.model.generate(**enc, max_new_tokens=max_tokens, do_sample=temperature > 0,
                                      temperature=temperature if temperature > 0 else None,
                                      pad_token_id=self.tokenizer.pad_token_id)
        n = enc["input_ids"].shape[1]
        res = []
        for i, row in enumerate(out):
            new = row[n:]
            res.append(Completion(self.tokenizer.decode(new, skip_special_tokens=True),
                                  int(enc["attention_mask"][i].sum()), int(len(new))))
        return res

    def grade(self, prompts, *, top_logprobs=20):
        enc = self._batch(prompts)
        with self.torch.no_grad():
            logits = self.model(**enc).logits[:, -1, :].float()
        logp = self.torch.log_softmax(logits, dim=-1)
        vals, ids = logp.topk(top_logprobs, dim=-1)
        res = []
        for i in range(len(prompts)):
            top: dict[str, float] = {}
            for v, t in zip(vals[i].tolist(), ids[i].tolist()):
                tok = self.tokenizer.decode([t])
                top[tok] = float(self.torch.logaddexp(self.torch.tensor(top[tok]), self.torch.tensor(v))) if tok in top else v
            probs, mass = grade_from_top_logprobs(top)
            r = GradeResult(probs=probs, mass=mass, prompt_tokens=int(enc["attention_mask"][i].sum()),
                            raw=self.tokenizer.decode([ids[i][0].item()]))
            if probs is None:
                r.error, r.detail = NO_GRADE_TOKEN, f"none of the top-{top_logprobs} next tokens is a grade 0-3"
            res.append(r)
        return res
