"""A distilled cross-encoder (labeler.students.cross_encoder) behind the Engine interface, so
`labeler label` and the label stage grade pairs with it exactly as with a generative student
(engines.encoder_export.ScoringEngine: its score, calibrated to the teacher's scale). An export
trained with a prior (cross_encoder.prior) holds the prior's bi-encoder in `prior/`: the score
is then a + b * that cosine + the cross-encoder's output, as in training."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .. import models
from ..config import EngineConfig
from .encoder_export import ScoringEngine, doc_lengths, pair_cosines, read_meta, sentence_model

# The marker of an exported cross-encoder: its settings and the score -> grade calibration.
META_FILE = "labeler_cross_encoder.json"


def encode_pairs(tokenizer, queries: list[str], docs: list[str], max_len: int):
    """Tokenised (query, document) pairs cut to `max_len` tokens; which ones were cut, and their lengths."""
    full = tokenizer(queries, docs, truncation=False, verbose=False)["input_ids"]
    truncated = [len(ids) > max_len for ids in full]
    enc = tokenizer(queries, docs, truncation="longest_first", max_length=max_len, padding=True,
                    return_tensors="pt")
    return enc, truncated, enc["attention_mask"].sum(1).tolist()


class CrossEncoderEngine(ScoringEngine):

    def __init__(self, cfg: EngineConfig, seed: int = 0):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.cfg = cfg
        self.use_threads(cfg)
        self.torch = torch
        path = models.resolve(cfg.model)
        self.meta = read_meta(path, META_FILE)
        self.max_len = int(self.meta["max_seq_len"])
        self.model_id = cfg.model
        self.model_version = models.model_version(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32).eval()
        self.prior = None
        if self.meta.get("prior"):
            p = self.meta["prior"]
            self.prior = sentence_model(Path(path) / p["path"], p["max_seq_len"])
            self.prior_ab = float(p["a"]), float(p["b"])
        torch.manual_seed(seed)

    def prior_scores(self, pairs: Sequence[tuple[str, str]]) -> tuple[list[float], list[bool]]:
        """a + b * the prior's cosine of each pair, and which documents the prior cut (zeros without a prior)."""
        if self.prior is None or not pairs:
            return [0.0] * len(pairs), [False] * len(pairs)
        a, b = self.prior_ab
        cos = pair_cosines(self.prior, pairs, self.cfg.batch_size)
        lens = doc_lengths(self.prior.tokenizer, [d for _, d in pairs])
        return (a + b * cos).tolist(), [n > self.prior.max_seq_length for n in lens]

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
        base, prior_cut = self.prior_scores(list(pairs))
        return [s + p for s, p in zip(scores, base)], [x or y for x, y in zip(truncated, prior_cut)], n_tokens
