"""The evaluate stage: the student's labels against the teacher's grades of the held-out pairs, beside
two free baselines on the same pairs (BM25's score, and MiniLM's cosine: what a student has to beat
to be worth its training), with the HTML report."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from .base import Stage

EMPTY = pa.schema([("key", pa.string())])
# The free dense baseline: an offline sentence-transformers model, no training.
COSINE_BASELINE = "offline:all-minilm-l6-v2"
COSINE_MAX_SEQ_LEN = 256


def cosine_scores(pairs: pa.Table, model_spec: str = COSINE_BASELINE) -> pa.Table:
    """(query_id, doc_id, score): the base encoder's cosine of each pair, read as a student reads it."""
    from ..engines.encoder_export import pair_cosines, pair_text, sentence_model
    from ..models import resolve

    rows = pairs.select(["query_id", "query", "doc_id", "title", "text"]).to_pylist()
    model = sentence_model(resolve(model_spec), COSINE_MAX_SEQ_LEN)
    scores = pair_cosines(model, [(r["query"], pair_text(r)) for r in rows], batch_size=32)
    return pa.table({"query_id": [r["query_id"] for r in rows], "doc_id": [r["doc_id"] for r in rows],
                     "score": pa.array(scores, pa.float64())})


def _section(cfg) -> dict:
    from ..config import identity

    return {"evaluate": identity(cfg.evaluate)}


def _run(ctx) -> dict:
    from ..evaluate.metrics import agreement, json_safe
    from ..evaluate.report import stage_costs_from_run, write_report

    j = ctx.store.table("judge")
    reference = j.filter(pc.and_(pc.equal(j.column("split"), "heldout"), pc.equal(j.column("status"), "ok")))
    reference = reference.select(["query_id", "doc_id", "grade"])
    student = ctx.store.table("label")
    pairs = ctx.store.table("mine")
    heldout = pairs.filter(pc.equal(pairs.column("split"), "heldout"))
    bm25 = heldout.select(["query_id", "doc_id", "bm25_score"])
    bm25 = bm25.rename_columns(["query_id", "doc_id", "score"]).filter(pc.is_valid(bm25.column("bm25_score")))
    k = ctx.cfg.evaluate.k
    w = ctx.writer("evaluate", fresh=True)
    metrics = agreement(reference, student, k=k)
    sources = {"student": student}
    by_source = {"student": metrics}
    if bm25.num_rows:
        sources["bm25"] = bm25
        by_source["bm25"] = agreement(reference, bm25, k=k)
    if heldout.num_rows:
        sources["minilm_cosine"] = cosine_scores(heldout)
        by_source["minilm_cosine"] = agreement(reference, sources["minilm_cosine"], k=k)
    write_report(w.artifacts, by_source, reference, sources, stage_costs=stage_costs_from_run(ctx.store.root),
                 title="Student vs teacher on held-out pairs")
    return ctx.publish(w, "evaluate", 0, one_to_one=False,
                       extra={"metrics": json_safe(metrics), "bm25": json_safe(by_source.get("bm25")),
                              "minilm_cosine": json_safe(by_source.get("minilm_cosine")),
                              "reference": "teacher grades of the held-out pairs",
                              "report": str(ctx.store.path("evaluate") / "artifacts" / "report.html")})


STAGE = Stage("evaluate", ("label", "judge"), EMPTY, _section, _run, uses_ray=False,
              help="agreement of the student with the teacher on the held-out pairs, beside BM25 and MiniLM; a report")
