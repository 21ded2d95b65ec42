"""Distillation on MedQuAD, measured against the LiveQA-Med dev human grades.

    .venv/bin/python bench/distill.py                        # 30 seed documents, defaults below
    .venv/bin/python bench/distill.py --seed-docs 200 --teacher-sample 120 --out /tmp/bench-distill

The project's own stages run on MedQuAD: Qwen2.5-Coder-1.5B writes queries from sampled seed
documents (synthesize), BM25 mines hard negatives (mine), the same Qwen grades every pair (judge);
then both students are trained from those judgments: the generative one (SmolLM2-135M, Ray Train +
DeepSpeed) and the cross-encoder (all-MiniLM-L6-v2 weights with a new head, LCE, Ray Train DDP).

Then, against the human grades of LiveQA-Med dev (every judged pair; the teacher on a stratified
sample only, it grades ~0.3 pairs/s here), with the baselines the students must beat:
- agreement: Krippendorff's alpha and weighted kappa (grade sources), Spearman, pairwise
  accuracy and NDCG@10 (every source) for the teacher, both students, BM25 over the judged
  documents and the untrained MiniLM bi-encoder's cosine similarity;
- reranking: MAP@10, MRR@10 and NDCG@10 of BM25 alone against BM25 + cross-encoder, on LiveQA dev
  (the judged documents of each query) and on the held-out synthetic queries (their mined pairs,
  graded by the teacher).
Wall times per step. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from judge_liveqa import DATA, sample_pairs  # noqa: E402

from labeler.config import EngineConfig, GradeConfig, dotted_override, merge_dicts, parse_config  # noqa: E402
from labeler.evaluate.metrics import _mean_metric, agreement, json_safe  # noqa: E402
from labeler.stages.grade_stream import grade as grade_pairs  # noqa: E402
from labeler.pipeline import Pipeline  # noqa: E402
from labeler.qrels import qrels_dict, read_qrels  # noqa: E402
from labeler.schema import LABELS, PAIRS  # noqa: E402
from labeler.store import RunStore  # noqa: E402

MEDQUAD = ROOT.parent / "shared" / "data" / "medquad" / "corpus.jsonl.gz"
TEACHER = "offline:qwen2.5-coder-1.5b-instruct"
AGREEMENT_KEYS = ("n_labeled", "krippendorff_alpha", "weighted_kappa", "cohen_kappa", "spearman",
                  "pairwise_accuracy", "ndcg@10")
STAGES_BEFORE_DISTILL = ("corpus", "synthesize", "mine", "judge")


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def config(args, kind: str):
    grading = {"prompt": args.prompt, "max_doc_tokens": args.doc_tokens}
    engine = {"backend": "vllm", "model": args.teacher, "max_model_len": 2048, "max_num_seqs": 32, "batch_size": 16}
    data = {
        "name": f"bench-distill-{kind}", "seed": args.seed, "ray": {"num_cpus": 2},
        "corpus": {"path": str(MEDQUAD), "max_chars": 200_000},
        "synthesize": {"engine": engine, "seed_docs": args.seed_docs, "stratify_by": "space",
                       "kinds": {"question": 1, "keyword": 1}, "max_doc_tokens": 256, "max_new_tokens": 40},
        "mine": {"depth": 30, "negatives_per_query": args.negatives, "heldout_fraction": args.heldout_fraction},
        "judge": {"engine": engine, "grading": grading},
        "distill": {"kind": kind, "base_model": args.student, "num_workers": 2,
                    "epochs": args.epochs, "micro_batch_size": 4, "lr": 5e-4, "bf16": "auto", "zero_stage": 1,
                    "train_last_layers": 4, "max_seq_len": 640, "balance": args.balance,
                    **({"kl_weight": args.kl_weight} if kind == "generative" else {}),
                    "cross_encoder": {"loss": "lce", "group_size": args.group_size, "epochs": args.ce_epochs,
                                      "lr": args.ce_lr, "batch_groups": 4, "max_seq_len": 256,
                                      "positive_min_grade": args.positive_min_grade,
                                      **({"base_model": args.cross_encoder} if args.cross_encoder else {}),
                                      # only in the cross-encoder's config: the generative run stays reusable
                                      **({"title_groups": args.title_groups} if kind == "cross_encoder" else {})}},
        "label": {}, "evaluate": {"k": 10},
    }
    for expr in args.set:
        data = merge_dicts(data, dotted_override(expr))
    return parse_config(data, "bench/distill.py", str(ROOT))


# ---------------------------------------------------------------------------------- LiveQA dev
def liveqa_pairs() -> tuple[pa.Table, pa.Table]:
    """Every judged pair as PAIRS rows, and the human qrels (conflicting grades: the max)."""
    queries = {q["qid"]: q for q in map(json.loads, (DATA / "queries.jsonl").read_text().splitlines())}
    docs = {d["doc_id"]: d for d in map(json.loads, (DATA / "docs.jsonl").read_text().splitlines())}
    qrels = read_qrels(DATA / "qrels.txt")
    rows = [{"query_id": r["query_id"], "query": queries[r["query_id"]]["query"], "doc_id": r["doc_id"],
             "title": docs[r["doc_id"]]["title"], "text": docs[r["doc_id"]]["text"], "doc_meta": None,
             "source": "qrels", "bm25_rank": None, "bm25_score": None, "split": "heldout"}
            for r in qrels.to_pylist()]
    return pa.Table.from_pylist(rows, schema=PAIRS), qrels


def bm25_scores(pairs: pa.Table) -> pa.Table:
    """BM25 (bm25s, the pipeline's default) over the judged documents: each query's score for each
    of its judged documents; a document sharing no term with the query scores 0, as in BM25."""
    from labeler.bm25 import build_index, open_index

    docs = pa.Table.from_pylist(list({r["doc_id"]: {"doc_id": r["doc_id"], "title": r["title"], "text": r["text"]}
                                      for r in pairs.to_pylist()}.values()))
    folder = Path(tempfile.mkdtemp(prefix="liveqa-bm25-")) / "ix"
    build_index(docs.append_column("parent_id", docs.column("doc_id")), folder, "bm25s")
    ix = open_index(folder)
    ids = docs.column("doc_id").to_pylist()
    qs = {r["query_id"]: r["query"] for r in pairs.to_pylist()}
    hits = dict(zip(qs, ix.search(list(qs.values()), len(ids))))
    score = {(q, ids[row]): s for q, h in hits.items() for row, s in h}
    q, d = pairs.column("query_id").to_pylist(), pairs.column("doc_id").to_pylist()
    return pa.table({"query_id": q, "doc_id": d, "score": [score.get(k, 0.0) for k in zip(q, d)]})


def minilm_cosine(pairs: pa.Table) -> pa.Table:
    """The untrained all-MiniLM-L6-v2 bi-encoder as sentence-transformers uses it (mean pooling,
    normalised): cosine of query and title + text."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from labeler import models

    path = models.resolve("offline:all-minilm-l6-v2")
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

    def embed(texts):
        out = []
        for i in range(0, len(texts), 64):
            enc = tok(texts[i:i + 64], padding=True, truncation=True, max_length=256, return_tensors="pt")
            with torch.no_grad():
                h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1))
        return torch.cat(out)

    rows = pairs.to_pylist()
    qv = embed([r["query"] for r in rows])
    dv = embed([f"{r['title']}\n{r['text']}" if r["title"] else r["text"] for r in rows])
    return pa.table({"query_id": [r["query_id"] for r in rows], "doc_id": [r["doc_id"] for r in rows],
                     "score": (qv * dv).sum(-1).tolist()})


def label_with(pairs: pa.Table, engine: EngineConfig, grading: GradeConfig, out: Path, seed: int,
               model_fp: str) -> pa.Table:
    """The project's label stage (same code as `labeler label`): one row per pair, ok or failed.
    A rerun of the benchmark reuses finished labels of the same model (`model_fp`: its distill
    fingerprint) and grading."""
    import hashlib

    fp = hashlib.sha256(json.dumps([model_fp, engine.model_dump(mode="json"),
                                    grading.model_dump(mode="json")]).encode()).hexdigest()[:16]
    store = RunStore(out)
    if not store.is_done("label", fp):
        w = store.writer("label", fp, LABELS)
        n = grade_pairs(w, pairs, engine, grading, seed)
        w.publish(n, config={}, upstream={})
    t = store.table("label", columns=["query_id", "doc_id", "status", "grade", "expected_grade"])
    return t.filter(pc.equal(t.column("status"), "ok"))


# ---------------------------------------------------------------------------------- reranking
def ranking_metrics(run: dict, qrels: dict, relevance_level: int = 2) -> dict:
    """MAP@10, MRR@10 (reciprocal rank within the top 10) and NDCG@10 over the queries of `qrels`."""
    topics = sorted(qrels)
    top10 = {q: dict(sorted(d.items(), key=lambda kv: -kv[1])[:10]) for q, d in run.items()}
    return {"map@10": _mean_metric(run, qrels, topics, "map_cut.10", "map_cut_10", relevance_level),
            "mrr@10": _mean_metric(top10, qrels, topics, "recip_rank", "recip_rank", relevance_level),
            "ndcg@10": _mean_metric(run, qrels, topics, "ndcg_cut.10", "ndcg_cut_10", relevance_level),
            "queries": len(topics)}


def as_run(table: pa.Table, score_col: str) -> dict:
    run: dict = {}
    for q, d, s in zip(table.column("query_id").to_pylist(), table.column("doc_id").to_pylist(),
                       table.column(score_col).to_pylist()):
        if s is not None:
            run.setdefault(str(q), {})[str(d)] = float(s)
    return run


def summary(ag: dict) -> dict:
    return {k: ag.get(k) for k in AGREEMENT_KEYS}


# ---------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed-docs", type=int, default=30, help="MedQuAD seed documents (2 queries each)")
    ap.add_argument("--negatives", type=int, default=4, help="BM25 negatives mined per query")
    ap.add_argument("--group-size", type=int, default=4,
                    help="LCE group: the positive and group-size - 1 of the negatives the teacher graded lower")
    ap.add_argument("--heldout-fraction", type=float, default=0.2)
    ap.add_argument("--teacher", default=TEACHER, help="query writer and judge")
    ap.add_argument("--student", default="offline:smollm2-135m-instruct", help="the generative student's base")
    ap.add_argument("--cross-encoder", default=None, help="the cross-encoder's base (default: the config's, MiniLM)")
    ap.add_argument("--positive-min-grade", type=int, default=2)
    ap.add_argument("--prompt", default="grade_plain")
    ap.add_argument("--doc-tokens", type=int, default=192)
    ap.add_argument("--epochs", type=int, default=2, help="generative student")
    ap.add_argument("--balance", default="none", choices=["none", "reweight", "oversample"])
    ap.add_argument("--kl-weight", type=float, default=0.0,
                    help="generative student: weight of the KL term to the teacher's grade distribution")
    ap.add_argument("--ce-epochs", type=int, default=3)
    ap.add_argument("--ce-lr", type=float, default=3e-5)
    ap.add_argument("--title-groups", type=int, default=0,
                    help="cross-encoder: extra LCE groups from MedQuAD titles (no teacher call)")
    ap.add_argument("--teacher-sample", type=int, default=60, help="LiveQA pairs the teacher grades (stratified)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override the pipeline config, as `labeler run --set`")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    for p in (MEDQUAD, DATA):
        if not p.exists():
            log(f"{p} is absent: this benchmark needs ../shared/data")
            return 2
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-distill-"))
    walls: dict[str, float] = {}
    t0 = time.time()

    # 1. Synthetic training data and the generative student, through the pipeline's own stages.
    gen = Pipeline(config(args, "generative"), out / "generative", log=log)
    t = time.time()
    gen_summary = gen.run(until="judge")
    walls["synthesize_mine_judge_s"] = round(time.time() - t, 1)
    stages = {s: gen_summary["stages"][s] for s in STAGES_BEFORE_DISTILL}
    t = time.time()
    gen.run(only=["distill"])
    walls["distill_generative_s"] = round(time.time() - t, 1)

    # 2. The cross-encoder from the same judgments (a second run folder sharing the finished stages).
    ce = Pipeline(config(args, "cross_encoder"), out / "cross_encoder", log=log)
    for s in (*STAGES_BEFORE_DISTILL, ".index"):
        src, dst = gen.store.root / s, ce.store.root / s
        if src.exists() and not dst.exists():
            shutil.copytree(src, dst)
    t = time.time()
    ce.run(only=["distill"])
    walls["distill_cross_encoder_s"] = round(time.time() - t, 1)
    gen_dir, ce_dir = gen.student_dir(), ce.student_dir()
    gen_manifest, ce_manifest = gen.store.manifest("distill"), ce.store.manifest("distill")

    # 3. LiveQA-Med dev: every source against the human grades.
    grading = gen.cfg.judge.grading
    pairs, human = liveqa_pairs()
    log(f"LiveQA-Med dev: {pairs.num_rows} judged pairs, {len(set(human.column('query_id').to_pylist()))} queries")
    sources: dict[str, pa.Table] = {}
    t = time.time()
    sources["bm25"] = bm25_scores(pairs)
    sources["minilm_cosine"] = minilm_cosine(pairs)
    walls["baselines_s"] = round(time.time() - t, 1)
    t = time.time()
    sources["cross_encoder"] = label_with(pairs, EngineConfig(backend="cross_encoder", model=str(ce_dir), batch_size=64),
                                          grading, out / "liveqa-cross_encoder", args.seed, ce_manifest["fingerprint"])
    walls["label_cross_encoder_s"] = round(time.time() - t, 1)
    t = time.time()
    sources["generative"] = label_with(pairs, EngineConfig(backend="vllm", model=str(gen_dir), max_model_len=2048,
                                                           max_num_seqs=64, batch_size=64),
                                       grading, out / "liveqa-generative", args.seed, gen_manifest["fingerprint"])
    walls["label_generative_s"] = round(time.time() - t, 1)
    sample, _ = sample_pairs(args.teacher_sample, args.seed)
    t = time.time()
    sources["teacher"] = label_with(sample, gen.cfg.judge.engine, grading, out / "liveqa-teacher", args.seed, "teacher")
    walls["label_teacher_sample_s"] = round(time.time() - t, 1)

    sample_keys = pa.table({"query_id": sample.column("query_id"), "doc_id": sample.column("doc_id")})
    agreement_all, agreement_sample = {}, {}
    for name, table in sources.items():
        if name != "teacher":
            agreement_all[name] = summary(agreement(human, table))
        on_sample = table.join(sample_keys, ["query_id", "doc_id"], join_type="inner")
        agreement_sample[name] = summary(agreement(human, on_sample))

    # 4. Reranking: BM25 alone against BM25 + cross-encoder.
    # The cross-encoder's raw score orders the documents (its calibrated grade has isotonic ties).
    from labeler.rerank import rerank

    human_qrels = qrels_dict(human)
    rerank_liveqa = {"bm25": ranking_metrics(as_run(sources["bm25"], "score"), human_qrels),
                     "bm25+cross_encoder": ranking_metrics(rerank(pairs, ce_dir, out / "liveqa-cross_encoder.run"),
                                                           human_qrels)}

    mined = gen.store.table("mine")
    held = mined.filter(pc.equal(mined.column("split"), "heldout"))
    judged = gen.store.table("judge")
    judged = judged.filter(pc.and_(pc.equal(judged.column("split"), "heldout"), pc.equal(judged.column("status"), "ok")))
    teacher_qrels = qrels_dict(judged.select(["query_id", "doc_id", "grade"]))
    depth = gen.cfg.mine.depth
    ce_run = rerank(held, ce_dir, out / "heldout-cross_encoder.run", depth=depth)
    bm25_run = as_run(held.filter(pc.is_valid(held.column("bm25_rank"))), "bm25_score")
    rerank_synthetic = {"bm25": ranking_metrics(bm25_run, teacher_qrels),
                        "bm25+cross_encoder": ranking_metrics(ce_run, teacher_qrels),
                        "heldout_queries": len(set(held.column("query_id").to_pylist()))}

    result = {
        "seed_docs": args.seed_docs, "queries": stages["synthesize"]["rows_out"], "pairs": stages["mine"]["rows_out"],
        "judged": stages["judge"]["rows_out"], "judge_failed": stages["judge"]["rows_rejected"],
        "teacher_grades": gen.store.manifest("judge").get("grade_counts"),
        "generative": {k: gen_manifest.get(k) for k in ("grade_counts", "train")},
        "cross_encoder": {k: ce_manifest.get(k) for k in ("grade_counts", "train")},
        "liveqa_pairs": pairs.num_rows, "teacher_sample": sample.num_rows,
        "agreement_liveqa_all": agreement_all, "agreement_liveqa_teacher_sample": agreement_sample,
        "rerank_liveqa": rerank_liveqa, "rerank_synthetic_heldout": rerank_synthetic,
        "wall_s": walls, "total_wall_s": round(time.time() - t0, 1), "out": str(out),
    }
    print(json.dumps(json_safe(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
