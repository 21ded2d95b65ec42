"""A distilled bi-encoder (labeler.students.bi_encoder) behind the Engine interface: the cosine of
the query's and the document's sentence-transformers embeddings, mapped to an expected grade by the
monotone calibration stored with the export. Queries are embedded once per batch, so the cost per
pair is one document embedding."""
from __future__ import annotations

from typing import Sequence

from .. import models
from ..config import EngineConfig
from .encoder_export import ScoringEngine, doc_lengths, pair_cosines, read_meta, sentence_model

META_FILE = "labeler_bi_encoder.json"


class BiEncoderEngine(ScoringEngine):
    score_name = "cosine"

    def __init__(self, cfg: EngineConfig, seed: int = 0):
        import torch

        self.cfg = cfg
        self.use_threads(cfg)
        path = models.resolve(cfg.model)
        self.meta = read_meta(path, META_FILE)
        self.model_id = cfg.model
        self.model_version = models.model_version(path)
        torch.manual_seed(seed)
        self.model = sentence_model(path, self.meta.get("max_seq_len", 256))
        self.tokenizer = self.model.tokenizer

    def score(self, pairs: Sequence[tuple[str, str]]) -> tuple[list[float], list[bool], list[int]]:
        """Cosines of (query, document text) pairs; which documents were cut to max_seq_len; token counts."""
        if not pairs:
            return [], [], []
        cos = pair_cosines(self.model, pairs, self.cfg.batch_size)
        lens = doc_lengths(self.tokenizer, [d for _, d in pairs])
        limit = self.model.max_seq_length
        return cos.tolist(), [n > limit for n in lens], [min(n, limit) for n in lens]
