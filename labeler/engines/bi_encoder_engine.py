"""A distilled bi-encoder (labeler.students.bi_encoder) behind the Engine interface: the cosine of
the query's and the document's sentence-transformers embeddings, mapped to an expected grade by the
monotone calibration stored with the export. Queries are embedded once per batch, so the cost per
pair is one document embedding."""
from __future__ import annotations

from typing import Sequence

from .. import models
from ..config import EngineConfig
from .encoder_export import ScoringEngine, read_meta

META_FILE = "labeler_bi_encoder.json"


class BiEncoderEngine(ScoringEngine):
    score_name = "cosine"

    def __init__(self, cfg: EngineConfig, seed: int = 0):
        import torch
        from sentence_transformers import SentenceTransformer

        self.cfg = cfg
        self.use_threads(cfg)
        path = models.resolve(cfg.model)
        self.meta = read_meta(path, META_FILE)
        self.model_id = cfg.model
        self.model_version = models.model_version(path)
        torch.manual_seed(seed)
        self.model = SentenceTransformer(path, device="cuda" if torch.cuda.is_available() else "cpu")
        self.model.max_seq_length = int(self.meta.get("max_seq_len", self.model.max_seq_length))
        self.tokenizer = self.model.tokenizer

    def score(self, pairs: Sequence[tuple[str, str]]) -> tuple[list[float], list[bool], list[int]]:
        """Cosines of (query, document text) pairs; which documents were cut to max_seq_len; token counts."""
        import numpy as np

        if not pairs:
            return [], [], []
        queries = sorted({q for q, _ in pairs})
        qv = self.model.encode(queries, batch_size=self.cfg.batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
        q_index = {q: i for i, q in enumerate(queries)}
        docs = [d for _, d in pairs]
        dv = self.model.encode(docs, batch_size=self.cfg.batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
        cos = np.einsum("ij,ij->i", qv[[q_index[q] for q, _ in pairs]], dv)
        lens = [len(x) for x in self.tokenizer(docs, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]]
        limit = self.model.max_seq_length
        return cos.astype(float).tolist(), [n > limit for n in lens], [min(n, limit) for n in lens]
