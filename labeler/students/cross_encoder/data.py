"""The cross-encoder's training data, from teacher judgments: LCE groups (a teacher-positive and BM25
negatives the teacher graded lower), title groups that cost no teacher call, and graded points
(pointwise training, validation and calibration). Every query ends as a group or a rejection
with its reason, never dropped silently."""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ...config import CrossEncoderConfig
from ...engines.encoder_export import pair_text
from ...reasons import NO_GRADED_PAIRS, NO_POSITIVE, TOO_FEW_NEGATIVES
from ...schema import rejected_row

GROUPS = pa.schema([
    ("query_id", pa.string()), ("query", pa.string()),
    ("doc_ids", pa.list_(pa.string())), ("docs", pa.list_(pa.string())),      # positive first
    ("grades", pa.list_(pa.int8())), ("expected", pa.list_(pa.float32())),
])
POINTS = pa.schema([
    ("query_id", pa.string()), ("query", pa.string()), ("doc_id", pa.string()), ("doc", pa.string()),
    ("grade", pa.int8()), ("expected", pa.float32()),
    ("bm25", pa.float32()), ("seed", pa.float32()),   # BM25's score; 1 for the query's seed document
])


def _expected(row: dict) -> float:
    e = row.get("expected_grade")
    return float(row["grade"]) if e is None or e != e else float(e)


@dataclass
class GroupSet:
    groups: pa.Table                       # GROUPS rows, one per query that formed a group
    rejected: list[dict]                   # REJECTED rows keyed by query_id, with a reason
    counts: dict = field(default_factory=dict)


def build_groups(judgments: pa.Table, cfg: CrossEncoderConfig, seed: int = 0) -> GroupSet:
    """One LCE group per query: the teacher-positive, then group_size-1 BM25 negatives graded lower.

    Only rows with status ok count (a failed pair has no grade, so it is neither a positive nor a
    safe negative). Every query in `judgments` ends up as a group or a rejection with its reason.
    """
    by_query: dict[str, list[dict]] = defaultdict(list)
    for r in judgments.select([c for c in ("query_id", "query", "doc_id", "title", "text", "bm25_rank", "status",
                                           "grade", "expected_grade") if c in judgments.column_names]).to_pylist():
        by_query[r["query_id"]].append(r)
    lo, hi = cfg.negative_rank_window or (1, 1 << 30)
    need = cfg.group_size - 1
    groups, rejected, failed = [], [], 0
    for qid in sorted(by_query):
        rows = by_query[qid]
        ok = [r for r in rows if r.get("status", "ok") == "ok" and r["grade"] is not None]
        failed += len(rows) - len(ok)
        if not ok:
            rejected.append(rejected_row(qid, NO_GRADED_PAIRS, f"all {len(rows)} pairs of the query failed to be graded"))
            continue
        pos = min(ok, key=lambda r: (-r["grade"], -_expected(r), r["bm25_rank"] or 1 << 30, r["doc_id"]))
        if pos["grade"] < cfg.positive_min_grade:
            rejected.append(rejected_row(qid, NO_POSITIVE, f"best teacher grade {pos['grade']} of {len(ok)} graded "
                                         f"pairs is below positive_min_grade={cfg.positive_min_grade}"))
            continue
        cands = sorted((r for r in ok if r is not pos and r["grade"] < pos["grade"] and r.get("bm25_rank") is not None
                        and lo <= r["bm25_rank"] <= hi), key=lambda r: (r["bm25_rank"], r["doc_id"]))
        if len(cands) < need:
            rejected.append(rejected_row(qid, TOO_FEW_NEGATIVES,
                                         f"{len(cands)} BM25 pairs in ranks {lo}-{hi} graded below the positive's "
                                         f"{pos['grade']}; group_size={cfg.group_size} needs {need}"))
            continue
        negs = random.Random(f"{seed}:{qid}").sample(cands, need)
        members = [pos, *negs]
        groups.append({"query_id": qid, "query": pos["query"], "doc_ids": [m["doc_id"] for m in members],
                       "docs": [pair_text(m) for m in members], "grades": [int(m["grade"]) for m in members],
                       "expected": [_expected(m) for m in members]})
    reasons: dict[str, int] = {}
    for r in rejected:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    counts = {"queries_in": len(by_query), "groups": len(groups), "queries_rejected": len(rejected),
              "rejected_by_reason": dict(sorted(reasons.items())), "failed_rows_skipped": failed,
              "pairs_in_groups": len(groups) * cfg.group_size}
    return GroupSet(pa.Table.from_pylist(groups, schema=GROUPS), rejected, counts)


def title_groups(index_dir, cfg: CrossEncoderConfig, *, seed: int = 0, exclude: frozenset = frozenset()) -> GroupSet:
    """Up to `cfg.title_groups` weakly supervised groups: a document's title as the query, the
    document as the positive, BM25 results for the title (mine's rules: the rank window, never the
    document itself, its passages or a near-duplicate) as the negatives.

    A title is the query its author wrote for the document, so the pair costs no teacher call;
    the negatives are assumed less relevant than the positive, as LCE assumes of BM25 negatives.
    Titles shared by several documents are left out (no single positive), as are documents in
    `exclude` (those of held-out queries, so evaluation stays unseen) and titles under
    `title_min_words` words. Every sampled title ends as a group or a rejection with its reason.
    """
    from ...config import MineConfig
    from ...mining import MineWorker

    need = cfg.group_size - 1
    lo, hi = cfg.negative_rank_window or (2, 30)
    hi = min(hi, 100)
    lo = min(lo, hi)
    mine_cfg = MineConfig(depth=hi, rank_window=(lo, hi), negatives_per_query=need, heldout_fraction=0.0)
    worker = MineWorker(mine_cfg, {"path": str(index_dir), "name": Path(index_dir).name}, seed)
    docs = worker.docs.select(["doc_id", "parent_id", "title"]).to_pylist()  # the index's passages, already read
    # A held-out pair may name one passage of a document: all of that document's passages are out.
    excluded = {d["parent_id"] for d in docs if d["doc_id"] in exclude or d["parent_id"] in exclude}
    by_title: dict[str, list[dict]] = defaultdict(list)
    for d in docs:
        t = (d["title"] or "").strip()
        if len(t.split()) >= cfg.title_min_words and d["parent_id"] not in excluded:
            by_title[" ".join(t.lower().split())].append(d)
    # One passage per document (its first), and only titles that name one document.
    unique = [ds[0] for ds in by_title.values() if len({d["parent_id"] for d in ds}) == 1]
    unique.sort(key=lambda d: d["doc_id"])
    sample = random.Random(f"{seed}:titles").sample(unique, min(cfg.title_groups, len(unique)))
    groups, rejected = [], []
    for i in range(0, len(sample), 256):
        chunk = sample[i:i + 256]
        queries = pa.table({"query_id": [f"title:{d['doc_id']}" for d in chunk],
                            "query": [d["title"].strip() for d in chunk],
                            "seed_doc_id": [d["doc_id"] for d in chunk]})
        by_query: dict[str, list[dict]] = defaultdict(list)
        for r in worker(queries).to_pylist():
            by_query[r["query_id"]].append(r)
        for qid in queries.column("query_id").to_pylist():
            rows = by_query[qid]
            pos = [r for r in rows if r["source"] == "seed"]
            negs = [r for r in rows if r["source"] == "bm25"]
            if not pos or len(negs) < need:
                rejected.append(rejected_row(qid, TOO_FEW_NEGATIVES,
                                             f"BM25 found {len(negs)} usable negatives in ranks {lo}-{hi} for the "
                                             f"title; group_size={cfg.group_size} needs {need}"))
                continue
            members = [pos[0], *negs[:need]]
            groups.append({"query_id": qid, "query": pos[0]["query"], "doc_ids": [m["doc_id"] for m in members],
                           "docs": [pair_text(m) for m in members], "grades": [None] * len(members),
                           "expected": [None] * len(members)})
    counts = {"titles_eligible": len(unique), "titles_sampled": len(sample), "groups": len(groups),
              "rejected": len(rejected)}
    return GroupSet(pa.Table.from_pylist(groups, schema=GROUPS), rejected, counts)


def graded_points(judgments: pa.Table) -> pa.Table:
    """Every ok pair with the teacher's grade and expected grade (pointwise training, validation, calibration)."""
    ok = judgments.filter(pc.equal(judgments.column("status"), "ok")) if "status" in judgments.column_names else judgments
    rows = [{"query_id": r["query_id"], "query": r["query"], "doc_id": r["doc_id"], "doc": pair_text(r),
             "grade": int(r["grade"]), "expected": _expected(r), "bm25": float(r.get("bm25_score") or 0.0),
             "seed": float(r.get("source") == "seed")}
            for r in ok.to_pylist() if r["grade"] is not None]
    return pa.Table.from_pylist(rows, schema=POINTS)


def with_target(points: pa.Table, cfg: CrossEncoderConfig, cosines_of) -> pa.Table:
    """`points` with the `target` that pointwise and margin_mse regress (grade scale): the teacher's
    expected grade, or the committee of it with BM25 and the base model's cosine (the bi-encoder's
    rule, students.bi_encoder.targets). `cosines_of(points)` gives the cosines when the points carry
    no prior."""
    if cfg.target == "teacher":
        return points.append_column("target", points.column("expected"))
    from ..bi_encoder import targets

    cos = points.column("prior").to_pylist() if "prior" in points.column_names else list(cosines_of(points))
    rows = [{**r, "cosine": c} for r, c in zip(points.select(["query_id", "expected", "bm25", "seed"]).to_pylist(), cos)]
    return points.append_column("target", pa.array(3.0 * targets(rows, "committee", cfg.committee_weights), pa.float32()))
