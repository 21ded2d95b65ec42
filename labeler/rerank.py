"""Reranking with a distilled cross-encoder: each query's candidates (BM25's top results) ordered
by the student's score, written as a TREC run (`labeler rerank`)."""
from __future__ import annotations

from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc

from .config import EngineConfig
from .engines.cross_encoder_engine import CrossEncoderEngine
from .engines.encoder_export import pair_text


def rerank(pairs: pa.Table, model_dir, run_path, *, tag: str = "cross_encoder", depth: Optional[int] = None,
           batch_size: int = 32) -> dict[str, dict[str, float]]:
    """Rerank each query's BM25 results by cross-encoder score and write them as a TREC run.

    `depth` keeps only BM25 ranks <= depth (the usual rerank-the-top-k setting); pairs BM25 did not
    retrieve (null rank) are then left out. Returns the run as {query_id: {doc_id: score}}.
    """
    from .qrels import write_run

    if depth is not None:
        pairs = pairs.filter(pc.fill_null(pc.less_equal(pairs.column("bm25_rank"), depth), False))
    rows = pairs.select([c for c in ("query_id", "query", "doc_id", "title", "text") if c in pairs.column_names]).to_pylist()
    engine = CrossEncoderEngine(EngineConfig(backend="cross_encoder", model=str(model_dir), batch_size=batch_size))
    scores, _, _ = engine.score([(r["query"], pair_text(r)) for r in rows])
    run: dict[str, dict[str, float]] = {}
    for r, s in zip(rows, scores):
        run.setdefault(str(r["query_id"]), {})[str(r["doc_id"])] = float(s)
    write_run(run, run_path, tag)
    return run
