"""The cross-encoder student (the reranker paper): a BERT-style encoder with a one-logit head,
trained on the teacher's judgments through Ray Train, used as a reranker of BM25 results and,
through a monotone calibration of its score to the teacher's grades, as a labeler.

Training groups follow the LCE recipe: per query the teacher's best pair (if it is relevant
enough) first, then hard negatives from the same query's BM25 results that the teacher graded
lower; softmax cross-entropy over each group with the positive at index 0. A pointwise mode
regresses the teacher's expected grade instead. (data, losses, training; calibration is shared
with the bi-encoder.)
"""
from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ...schema import TRAIN_EXAMPLES
from ..base import Student, Trained, TrainingData

log = logging.getLogger(__name__)


class CrossEncoderStudent(Student):
    kind = "cross_encoder"

    @property
    def needs_index(self) -> bool:
        return bool(self.cfg.cross_encoder.title_groups)

    def train(self, data: TrainingData, workdir: Path, export: Path) -> Trained:
        from .data import title_groups
        from .training import train_cross_encoder

        c = self.cfg.cross_encoder
        titles = None
        if c.title_groups:
            if data.index_dir is None:
                raise ValueError("distill.cross_encoder.title_groups needs the run's BM25 index")
            titles = title_groups(data.index_dir, c, seed=self.seed, exclude=data.heldout_docs)
            log.info("[distill] title groups: %s", titles.counts)
        stats = train_cross_encoder(self.cfg, data.train, data.heldout, workdir, export, seed=self.seed, k=self.k,
                                    extra_groups=titles)
        train_data, lce = stats.pop("train_data"), c.loss == "lce"
        if lce:  # the unit is a query: a group (its positive recorded) or a rejection with its reason
            rows_in = stats["groups"]["queries_in"] + (titles.counts["titles_sampled"] if titles else 0)
            record = pa.table({"query_id": train_data.column("query_id"),
                               "doc_id": pc.list_element(train_data.column("doc_ids"), 0),
                               "grade": pc.list_element(train_data.column("grades"), 0),
                               "n_tokens": pa.nulls(train_data.num_rows, pa.int32())}, schema=TRAIN_EXAMPLES)
        else:  # the unit is a graded training pair
            rows_in = train_data.num_rows
            record = pa.table({"query_id": train_data.column("query_id"), "doc_id": train_data.column("doc_id"),
                               "grade": train_data.column("grade"), "n_tokens": pa.nulls(train_data.num_rows, pa.int32())},
                              schema=TRAIN_EXAMPLES)
        rejected = stats.pop("rejected")
        stats.pop("metrics", None)
        grades = train_data.column("grades" if lce else "grade").to_pylist()
        counts: dict = {}
        for g in (g for x in grades for g in (x if lce else [x]) if g is not None):
            counts[str(g)] = counts.get(str(g), 0) + 1
        return Trained(rows_in, record, rejected, {"kind": "cross_encoder", "grade_counts": dict(sorted(counts.items())),
                                                   "train": stats})
