"""What an encoder student's export folder holds, beside the Hugging Face weights: a meta file
(the backend's marker, labeler.engines.BACKENDS) with its settings and the monotone map from the
model's score to the teacher's 0-3 scale. The students write it; the engines read it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..hardware import thread_count
from .base import Engine, GradeResult


def pair_text(row: dict) -> str:
    """The document side of a pair: title and text, as in training and at labeling time."""
    title, text = row.get("title") or "", row.get("text") or ""
    return f"{title}\n{text}" if title else text


def sentence_model(path, max_seq_len: int):
    """A sentence-transformers folder (a bi-encoder export, or a cross-encoder's prior) reading
    `max_seq_len` tokens of a document, on the GPU when there is one."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device="cuda" if torch.cuda.is_available() else "cpu")
    model.max_seq_length = int(max_seq_len)
    return model


def pair_cosines(model, pairs: Sequence[tuple[str, str]], batch_size: int) -> np.ndarray:
    """Cosine of each (query, document text) pair under `model` (a SentenceTransformer), each
    distinct query embedded once: the bi-encoder's score and the cross-encoder's prior."""
    if not pairs:
        return np.zeros(0)
    queries = sorted({q for q, _ in pairs})
    q_index = {q: i for i, q in enumerate(queries)}
    kw = dict(batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    qv = model.encode(queries, **kw)
    dv = model.encode([d for _, d in pairs], **kw)
    return np.einsum("ij,ij->i", qv[[q_index[q] for q, _ in pairs]], dv).astype(float)


def doc_lengths(tokenizer, docs: Sequence[str]) -> list[int]:
    """Token counts of documents as a bi-encoder reads them (special tokens included, uncut)."""
    return [len(x) for x in tokenizer(list(docs), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]]


def apply_calibration(scores, calibration: dict) -> np.ndarray:
    """Breakpoints -> expected grades in [0, 3]; linear between breakpoints, clipped outside (as
    sklearn's IsotonicRegression predicts)."""
    return np.interp(np.asarray(scores, float), calibration["x"], calibration["y"])


def read_meta(path, marker: str) -> dict:
    meta = Path(path) / marker
    if not meta.is_file():
        raise FileNotFoundError(f"{path} is not a labeler export of this kind (no {marker})")
    return json.loads(meta.read_text())


def write_meta(path, marker: str, meta: dict) -> None:
    (Path(path) / marker).write_text(json.dumps(meta, indent=2))


def calibrated(meta: dict, model_id: str) -> dict:
    cal: Optional[dict] = meta.get("calibration")
    if not cal:
        raise ValueError(f"{model_id}: the export has no calibration, so its scores cannot be grades")
    return cal


class ScoringEngine(Engine):
    """An encoder student behind the Engine interface: it reads (query, document) pairs, not
    prompts, and its score becomes an expected grade through the export's calibration (the grade
    is that rounded). It has no grade distribution, so `grade_probs` and `grade_mass` stay null
    rather than being made up. Subclasses set `meta`, `model_id` and implement `score`."""

    reads_pairs = True
    score_name = "score"
    meta: dict = {}

    @staticmethod
    def use_threads(cfg) -> None:
        """engine.cpu_threads for torch: inside a Ray actor torch otherwise runs on the actor's
        OMP_NUM_THREADS (its CPUs, 1 by default), far below the encoder's single-process rate
        when the actor is the machine's only engine."""
        n = thread_count(cfg.cpu_threads)
        if n is not None:
            import torch

            torch.set_num_threads(n)

    def score(self, pairs: Sequence[tuple[str, str]]) -> tuple[list[float], list[bool], list[int]]:
        """Raw scores of (query, document text) pairs; which were cut to the model's length; token counts."""
        raise NotImplementedError

    def grade(self, prompts, *, top_logprobs: int = 20) -> list[GradeResult]:
        """`prompts` are (query, document text) pairs here."""
        return self._grade(list(prompts))[0]

    def grade_pairs(self, rows: list[dict]) -> tuple[list[GradeResult], list[bool]]:
        """Grade pair rows (query, title, text); also says which inputs were cut to the model's length."""
        return self._grade([(r["query"], pair_text(r)) for r in rows])

    def _grade(self, pairs) -> tuple[list[GradeResult], list[bool]]:
        cal = calibrated(self.meta, self.model_id)
        scores, truncated, n_tokens = self.score(pairs)
        expected = apply_calibration(scores, cal)
        return [GradeResult(calibrated=float(e), prompt_tokens=int(n), raw=f"{self.score_name}={s:.6g}")
                for s, e, n in zip(scores, expected, n_tokens)], truncated

    def generate(self, prompts, *, max_tokens, temperature, seeds=None):
        raise NotImplementedError(f"{type(self).__name__} scores pairs; it cannot generate text")
