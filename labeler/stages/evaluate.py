"""The evaluate stage: the student's labels against the teacher's grades of the held-out pairs, beside
BM25's score (the baseline every labeler has to beat), with the HTML report."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from .base import Stage

EMPTY = pa.schema([("key", pa.string())])


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
    bm25 = pairs.filter(pc.equal(pairs.column("split"), "heldout")).select(["query_id", "doc_id", "bm25_score"])
    bm25 = bm25.rename_columns(["query_id", "doc_id", "score"]).filter(pc.is_valid(bm25.column("bm25_score")))
    k = ctx.cfg.evaluate.k
    w = ctx.writer("evaluate", fresh=True)
    metrics = agreement(reference, student, k=k)
    sources = {"student": student}
    by_source = {"student": metrics}
    if bm25.num_rows:
        sources["bm25"] = bm25
        by_source["bm25"] = agreement(reference, bm25, k=k)
    write_report(w.artifacts, by_source, reference, sources, stage_costs=stage_costs_from_run(ctx.store.root),
                 title="Student vs teacher on held-out pairs")
    return ctx.publish(w, "evaluate", 0, one_to_one=False,
                       extra={"metrics": json_safe(metrics), "bm25": json_safe(by_source.get("bm25")),
                              "reference": "teacher grades of the held-out pairs",
                              "report": str(ctx.store.path("evaluate") / "artifacts" / "report.html")})


STAGE = Stage("evaluate", ("label", "judge"), EMPTY, _section, _run, uses_ray=False,
              help="agreement of the student with the teacher on the held-out pairs, beside BM25; a report")
