"""A distilled cross-encoder (labeler.students.cross_encoder) behind the Engine interface, so
`labeler label` and the label stage grade pairs with it exactly as with a generative student.

It reads (query, document) pairs, not prompts: its score is mapped to an expected grade by the
monotone calibration stored with the export, and the grade is that rounded. It has no grade
distribution, so `grade_probs` and `grade_mass` stay null rather than being made up.
"""
from __future__ import annotations

from typing import Sequence

from .. import models
from ..config import EngineConfig
from .base import Engine, GradeResult
from .encoder_export import apply_calibration, calibrated, pair_text, read_meta

# The marker of an exported cross-encoder: its settings and the score -> grade calibration.
META_FILE = "labeler_cross_encoder.json"


def encode_pairs(tokenizer, queries: list[str], docs: list[str], max_len: int):
    """Tokenised (query, document) pairs cut to `max_len` tokens; which ones were cut, and their lengths."""
    full = tokenizer(queries, docs, truncation=False, verbose=False)["input_ids"]
    truncated = [len(ids) > max_len for ids in full]
    enc = tokenizer(queries, docs, truncation="longest_first", max_length=max_len, padding=True,
                    return_tensors="pt")
    return enc, truncated, enc["attention_mask"].sum(1).tolist()


class CrossEncoderEngine(Engine):
    reads_pairs = True

    def __init__(self, cfg: EngineConfig, seed: int = 0):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.cfg = cfg
        self.torch = torch
        path = models.resolve(cfg.model)
        self.meta = read_meta(path, META_FILE)
        self.max_len = int(self.meta["max_seq_len"])
        self.model_id = cfg.model
        self.model_version = models.model_version(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32).eval()
        torch.manual_seed(seed)

    def score(self, pairs: Sequence[tuple[str, str]]) -> tuple[list[float], list[bool], list[int]]:
        """Raw scores of (query, document text) pairs, in batches; which were truncated; token counts."""
        scores, truncated, n_tokens = [], [], []
        step = self.cfg.batch_size
        for i in range(0, len(pairs), step):
            chunk = pairs[i:i + step]
            enc, cut, lens = encode_pairs(self.tokenizer, [q for q, _ in chunk], [d for _, d in chunk], self.max_len)
            with self.torch.no_grad():
                scores += self.model(**enc).logits.squeeze(-1).float().tolist()
            truncated += cut
            n_tokens += lens
        return scores, truncated, n_tokens

    def grade(self, prompts, *, top_logprobs: int = 20) -> list[GradeResult]:
        """`prompts` are (query, document text) pairs here."""
        return self._grade(list(prompts))[0]

    def grade_pairs(self, rows: list[dict]) -> tuple[list[GradeResult], list[bool]]:
        """Grade pair rows (query, title, text); also says which inputs were cut to max_seq_len tokens."""
        return self._grade([(r["query"], pair_text(r)) for r in rows])

    def _grade(self, pairs) -> tuple[list[GradeResult], list[bool]]:
        cal = calibrated(self.meta, self.model_id)
        scores, truncated, n_tokens = self.score(pairs)
        expected = apply_calibration(scores, cal)
        return [GradeResult(calibrated=float(e), prompt_tokens=int(n), raw=f"score={s:.6g}")
                for s, e, n in zip(scores, expected, n_tokens)], truncated

    def generate(self, prompts, *, max_tokens, temperature, seeds=None):
        raise NotImplementedError("a cross-encoder scores pairs; it cannot generate text")
