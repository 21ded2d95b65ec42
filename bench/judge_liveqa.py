"""Agreement of an LLM judge with the LiveQA-Med dev human grades, per prompt variant and
document truncation: the measurement that picks the default grading prompt.

    .venv/bin/python bench/judge_liveqa.py --pairs 150 --variants grade_plain grade_umbrela --doc-tokens 192 384

Pairs are a seeded sample stratified by human grade (the dev set is 54% grade 0). Each variant
runs through the real judge stage (vLLM in a Ray Data actor); the last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labeler.config import EngineConfig, GradeConfig, RayConfig  # noqa: E402
from labeler.evaluate.metrics import agreement  # noqa: E402
from labeler.stages.grade_stream import grade as grade_pairs  # noqa: E402
from labeler.qrels import read_qrels  # noqa: E402
from labeler.raycluster import init_ray  # noqa: E402
from labeler.schema import JUDGMENTS, PAIRS  # noqa: E402
from labeler.store import RunStore  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "liveqa-med-dev"


def sample_pairs(n: int, seed: int) -> tuple[pa.Table, pa.Table]:
    queries = {q["qid"]: q for q in map(json.loads, (DATA / "queries.jsonl").read_text().splitlines())}
    docs = {d["doc_id"]: d for d in map(json.loads, (DATA / "docs.jsonl").read_text().splitlines())}
    qrels = read_qrels(DATA / "qrels.txt").to_pylist()
    by_grade: dict[int, list] = {}
    for r in qrels:
        by_grade.setdefault(r["grade"], []).append(r)
    rng = random.Random(seed)
    picked = []
    for g in sorted(by_grade):
        rng.shuffle(by_grade[g])
        picked += by_grade[g][: n // len(by_grade)]
    rows = [{"query_id": r["query_id"], "query": queries[r["query_id"]]["query"], "doc_id": r["doc_id"],
             "title": docs[r["doc_id"]]["title"], "text": docs[r["doc_id"]]["text"], "doc_meta": None,
             "source": "qrels", "bm25_rank": None, "bm25_score": None, "split": "heldout"} for r in picked]
    return pa.Table.from_pylist(rows, schema=PAIRS), pa.Table.from_pylist(picked)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="offline:qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--pairs", type=int, default=120)
    ap.add_argument("--variants", nargs="+", default=["grade_plain", "grade_umbrela"])
    ap.add_argument("--doc-tokens", nargs="+", type=int, default=[192])
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"{DATA} is absent", file=sys.stderr)
        return 2
    pairs, reference = sample_pairs(args.pairs, args.seed)
    init_ray(RayConfig())
    out = Path(args.out or tempfile.mkdtemp(prefix="judge-liveqa-"))
    results = []
    for variant in args.variants:
        for doc_tokens in args.doc_tokens:
            engine = EngineConfig(model=args.model, max_model_len=2048, max_num_seqs=32, batch_size=16)
            store = RunStore(out / f"{variant}-{doc_tokens}")
            w = store.writer("judge", "bench", JUDGMENTS)
            t = time.time()
            n = grade_pairs(w, pairs, engine, GradeConfig(prompt=variant, max_doc_tokens=doc_tokens), args.seed)
            m = w.publish(n, config={}, upstream={})
            wall = time.time() - t
            judged = store.table("judge")
            ag = agreement(reference, judged)
            row = {"variant": variant, "doc_tokens": doc_tokens, "pairs": n, "graded": m["rows_out"],
                   "failed": m["rows_rejected"], "wall_s": round(wall, 1), "pairs_per_s": round(n / wall, 3),
                   **{k: ag.get(k) for k in ("spearman", "kendall", "weighted_kappa", "cohen_kappa",
                                             "krippendorff_alpha", "accuracy", "mae", "ndcg@10", "pairwise_accuracy")}}
            results.append(row)
            print(json.dumps(row), flush=True)
    best = max(results, key=lambda r: (r["spearman"] or -1))
    print(json.dumps({"model": args.model, "pairs": args.pairs, "results": results,
                      "best": {"variant": best["variant"], "doc_tokens": best["doc_tokens"]}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
