"""Students trained from the teacher-judgment fixture, measured against human judgments beside the
free baselines (BM25, MiniLM cosine) and the teacher itself.

    .venv/bin/python bench/students.py                                  # bi- and cross-encoder, LiveQA-Med dev
    .venv/bin/python bench/students.py --kinds bi_encoder --set distill.bi_encoder.loss=both   # with CoSENT
    .venv/bin/python bench/students.py --calibrate-on ../shared/data/liveqa-med-dev   # cross-fitted by query
    .venv/bin/python bench/students.py --eval OTHER_DIR --teacher-sample 200
    .venv/bin/python bench/students.py --kinds generative     # labels through vLLM (`labeler label`)

No teacher is called by default: the students train on bench/data/medquad-teacher (fixture.
read_judgments joins the MedQuAD text) and the teacher's grades of the evaluation pairs come from the
fixture (LiveQA-Med dev) or, with --teacher-sample N, from grading N pairs drawn at random.
Evaluation pairs (--eval: queries.jsonl, docs.jsonl, qrels.txt) are never trained on: the fixture
has no LiveQA documents, and a fixture pair whose doc_id is an evaluation document is refused.

Calibration (scores -> 0-3 grades, for alpha and kappa): on held-out teacher grades by default
(each student's export carries its own; MiniLM cosine is fitted the same way), or on the human
judgments of --calibrate-on; when those are the evaluation pairs, the map of each query comes from
the other folds' queries (5 folds by query), so no pair is graded by a map fitted on it.

Prints one table (alpha, weighted kappa, Spearman, pairwise accuracy, NDCG@10, pairs/s) and, last,
one JSON object. Each student is exported under --out DIR/<kind>/model (`labeler label --model`).
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fixture import read_judgments  # noqa: E402
from labeler.config import dotted_override, load_config, merge_dicts, parse_config  # noqa: E402
from labeler.engines.encoder_export import apply_calibration, pair_text  # noqa: E402
from labeler.evaluate.metrics import agreement, json_safe  # noqa: E402
from labeler.hardware import machine_info  # noqa: E402
from labeler.students.calibration import fit_calibration  # noqa: E402

log = logging.getLogger("bench.students")
FIXTURE = ROOT / "bench" / "data" / "medquad-teacher"
EVAL = ROOT.parent / "shared" / "data" / "liveqa-med-dev"
KEYS = ("krippendorff_alpha", "weighted_kappa", "spearman", "pairwise_accuracy", "ndcg@10")
DEFAULT_KINDS = ("bi_encoder", "cross_encoder")


# ------------------------------------------------------------------------------------ data
def eval_pairs(folder: Path) -> pa.Table:
    """Every distinct judged pair of the evaluation set with its human grade (a pair judged twice
    keeps its max grade, as `labeler evaluate` does); pairs without query text are status failed."""
    return read_judgments(str(folder), strict=False)


def usable(t: pa.Table) -> pa.Table:
    return t.filter(pc.equal(t.column("status"), "ok"))


def reference(ev: pa.Table) -> pa.Table:
    return usable(ev).select(["query_id", "doc_id", "grade"])


def folds_by_query(query_ids: list, k: int = 5, seed: int = 13) -> np.ndarray:
    qs = sorted(set(query_ids))
    random.Random(seed).shuffle(qs)
    fold = {q: i % k for i, q in enumerate(qs)}
    return np.array([fold[q] for q in query_ids])


def cross_fitted(scores: np.ndarray, grades: np.ndarray, query_ids: list) -> np.ndarray:
    """Expected grades of each query from a map fitted on the other folds' queries."""
    f = folds_by_query(query_ids)
    out = np.empty(len(scores))
    for i in np.unique(f):
        out[f == i] = apply_calibration(scores[f == i], fit_calibration(scores[f != i], grades[f != i]))
    return out


def labels_table(ev: pa.Table, scores: np.ndarray, expected=None, keep=None) -> pa.Table:
    """A source for `agreement`: the score (ranking) and, when calibrated, the grades; `keep`: the
    pairs this source labeled (the others count as missing, not as labels)."""
    u = usable(ev)
    cols = {"query_id": u.column("query_id"), "doc_id": u.column("doc_id"),
            "score": pa.array(np.asarray(scores, float), pa.float64())}
    if expected is not None:
        e = np.clip(np.asarray(expected, float), 0, 3)
        cols["expected_grade"] = pa.array(e, pa.float64())
        cols["grade"] = pa.array(np.floor(e + 0.5).astype(np.int8))
    t = pa.table(cols)
    return t if keep is None else t.filter(pa.array(keep))


# ------------------------------------------------------------------------------------ scorers
def bm25(ev: pa.Table) -> tuple[np.ndarray, float]:
    """BM25 (bm25s, the pipeline's default) over the evaluation documents."""
    import tempfile

    from labeler.bm25 import build_index, open_index

    u = usable(ev).to_pylist()
    docs = pa.Table.from_pylist(list({r["doc_id"]: {"doc_id": r["doc_id"], "title": r["title"], "text": r["text"]}
                                      for r in u}.values()))
    t0 = time.time()
    folder = Path(tempfile.mkdtemp(prefix="bench-bm25-")) / "ix"
    build_index(docs.append_column("parent_id", docs.column("doc_id")), folder, "bm25s")
    ix = open_index(folder)
    ids = docs.column("doc_id").to_pylist()
    qs = {r["query_id"]: r["query"] for r in u}
    hits = dict(zip(qs, ix.search(list(qs.values()), len(ids))))
    score = {(q, ids[row]): s for q, h in hits.items() for row, s in h}
    out = np.array([score.get((r["query_id"], r["doc_id"]), 0.0) for r in u])
    return out, len(u) / (time.time() - t0)


def cosine(rows: list[dict], model: str = "offline:all-minilm-l6-v2", max_seq_len: int = 256) -> tuple[np.ndarray, float]:
    from sentence_transformers import SentenceTransformer

    from labeler import models
    from labeler.students.bi_encoder import cosines

    m = SentenceTransformer(models.resolve(model), device="cpu")
    m.max_seq_length = max_seq_len
    t0 = time.time()
    out = cosines(m, [{"query": r["query"], "doc": pair_text(r)} for r in rows], 64)
    return out, len(rows) / max(time.time() - t0, 1e-9)


def engine_scores(model_dir: Path, rows: list[dict], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, float]:
    """Raw scores and the export's own calibrated expected grades, through the student's engine."""
    from labeler.config import EngineConfig
    from labeler.engines import make_engine

    engine = make_engine(EngineConfig(model=str(model_dir), batch_size=batch_size))
    t0 = time.time()
    results, _ = engine.grade_pairs(rows)
    rate = len(rows) / max(time.time() - t0, 1e-9)
    scores = np.array([float(r.raw.split("=", 1)[1]) for r in results])
    return scores, np.array([r.expected for r in results]), rate


# ------------------------------------------------------------------------------------ main
def student_config(base_cfg, kind: str, sets: list[str]):
    data = base_cfg.model_dump(mode="json", exclude={"base_dir"})
    # Sized for the budget, both kinds within 60 minutes on 2 cores: 2 epochs at 256 tokens
    # took over 12 minutes an epoch for the bi-encoder alone; 1 epoch at 128 takes 12 in all.
    d = {"num_workers": 2, "cpus_per_worker": 1.0, "kind": kind}
    if kind == "cross_encoder":
        # Pointwise on every graded pair, as a residual on MiniLM's own cosine (prior: cosine): from
        # a new head alone, LCE (276 groups of 1,251 queries here) and pointwise both stayed near
        # chance; LCE with the prior barely moves off it (18 steps).
        d["cross_encoder"] = {"loss": "pointwise", "prior": "cosine", "group_size": 4, "negative_rank_window": [2, 30],
                              "epochs": 1, "max_seq_len": 128, "lr": 3e-5, "batch_groups": 8, "positive_min_grade": 2}
    elif kind == "bi_encoder":
        # MarginMSE alone (within a query, where the teacher adds to cosine) and not with CoSENT
        # across queries: blended at base_weight 0.5, alpha 0.702 / 0.713 against "both"'s 0.671.
        d["bi_encoder"] = {"epochs": 1, "batch_size": 16, "max_seq_len": 128, "lr": 2e-5, "loss": "margin_mse",
                          "target": "committee"}
    elif kind == "generative":
        # The labeler paper's student on soft labels (KL to the teacher's grade distribution beside
        # the hard-label CE), sized for 2 cores: one epoch, backward through the top 4 layers only.
        d.update({"epochs": 1, "kl_weight": 1.0, "train_last_layers": 4, "micro_batch_size": 4})
    data["distill"] = d
    for s in sets:
        data = merge_dicts(data, dotted_override(s))
    return parse_config(data, "bench/students.py", str(ROOT))


def student_length(d):
    """Document tokens of a student's cosine (the bi-encoder's, or the cross-encoder's prior); None: no cosine."""
    if d.kind == "bi_encoder":
        return d.bi_encoder.max_seq_len
    if d.kind == "cross_encoder" and d.cross_encoder.prior == "cosine":
        return d.cross_encoder.prior_max_seq_len
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", nargs="+", default=list(DEFAULT_KINDS), choices=["bi_encoder", "cross_encoder", "generative"])
    ap.add_argument("--fixture", default=str(FIXTURE))
    ap.add_argument("--eval", default=str(EVAL), help="human judgments: queries.jsonl, docs.jsonl, qrels.txt")
    ap.add_argument("--config", default=str(ROOT / "configs" / "medquad.yaml"))
    ap.add_argument("--calibrate-on", help="human judgments to fit score -> grade maps on (cross-fitted when they "
                                           "are the evaluation pairs)")
    ap.add_argument("--teacher-sample", type=int, default=0, help="grade N evaluation pairs drawn at random with "
                                                                  "the teacher instead of reading the fixture's")
    ap.add_argument("--out", default=str(ROOT / "out" / "bench-students"))
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="student config override")
    ap.add_argument("--reuse", action="store_true", help="reuse a student already exported under --out")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    eval_dir, out = Path(a.eval), Path(a.out)
    if not eval_dir.is_dir():
        print(f"{eval_dir} is absent", file=sys.stderr)
        return 2
    t_start = time.time()
    base_cfg = load_config(a.config)
    ev = eval_pairs(eval_dir)
    ref = reference(ev)
    rows = usable(ev).to_pylist()
    qids = [r["query_id"] for r in rows]
    human = np.array([r["grade"] for r in rows], float)
    cal_on = Path(a.calibrate_on).resolve() if a.calibrate_on else None
    cross = cal_on is not None and cal_on == eval_dir.resolve()
    cal_set = None if cal_on is None or cross else usable(read_judgments(str(cal_on), strict=False)).to_pylist()

    judged = read_judgments(a.fixture, default_corpus=base_cfg.resolve_path(base_cfg.corpus.path))
    leak = set(judged.column("doc_id").to_pylist()) & set(ev.column("doc_id").to_pylist())
    if leak:
        raise SystemExit(f"the fixture has {len(leak)} evaluation documents (e.g. {sorted(leak)[:3]}): refusing to "
                         f"train on evaluation pairs")
    heldout = judged.filter(pc.equal(judged.column("split"), "heldout"))
    held_rows = usable(heldout).to_pylist()
    log.info("fixture: %d judged pairs (%d held out); eval: %d usable pairs of %d", judged.num_rows,
             heldout.num_rows, len(rows), ev.num_rows)

    results, timings = [], {}

    def add(name: str, scores, expected=None, rate=None, note="", keep=None):
        m = agreement(ref, labels_table(ev, scores, expected, keep), k=10)
        row = {"source": name, **{k: m.get(k) for k in KEYS}, "pairs_per_s": None if rate is None else round(rate, 1),
               "n": m.get("n_labeled"), "note": note}
        results.append(row)
        log.info("%s: %s", name, {k: row[k] for k in (*KEYS, "pairs_per_s")})

    def add_cross_fitted(name: str, scores, rate, keep):
        """A source that graded only the `keep` pairs, its grades cross-fitted on dev by query."""
        k = np.asarray(keep, bool)
        ce = np.zeros(len(rows))
        ce[k] = cross_fitted(np.asarray(scores)[k], human[k], [q for q, m in zip(qids, k) if m])
        add(name, scores, ce, rate, "human, cross-fitted by query", keep)

    def calibrate(scores, fit_scores=None, fit_targets=None, score_fn=None):
        """Expected grades of the eval pairs: cross-fitted on eval (--calibrate-on EVAL), fitted on
        another human set, or on held-out teacher pairs (fit_scores/fit_targets)."""
        if cross:
            return cross_fitted(scores, human, qids), "human, cross-fitted by query"
        if cal_set is not None:
            s = score_fn(cal_set)
            return apply_calibration(scores, fit_calibration(s, [r["grade"] for r in cal_set])), f"human ({cal_on.name})"
        return apply_calibration(scores, fit_calibration(fit_scores, fit_targets)), "held-out teacher"

    t = time.time()
    s, rate = bm25(ev)
    add("BM25", s, rate=rate)
    s, rate = cosine(rows)
    add("MiniLM cosine", s, rate=rate)
    held_cos, _ = cosine(held_rows)
    held_targets = [r["expected_grade"] for r in held_rows]
    e, how = calibrate(s, held_cos, held_targets, lambda r: cosine(r)[0])
    add("MiniLM cosine, calibrated", s, e, rate, how)
    if cross or cal_set is not None:  # the teacher-calibrated figure too: what a user without human grades gets
        add("MiniLM cosine, calibrated", s, apply_calibration(s, fit_calibration(held_cos, held_targets)), rate,
            "held-out teacher")
    # The free baseline at the students' own document length too (they read 128 tokens by
    # default): like against like, and a cue to what truncation alone does.
    for n in sorted({student_length(student_config(base_cfg, k, a.set).distill) for k in a.kinds} - {None, 256}):
        s, rate = cosine(rows, max_seq_len=n)
        add(f"MiniLM cosine, {n} tokens", s, rate=rate)
        hc, _ = cosine(held_rows, max_seq_len=n)
        e, how = calibrate(s, hc, held_targets, lambda r, n=n: cosine(r, max_seq_len=n)[0])
        add(f"MiniLM cosine, {n} tokens, calibrated", s, e, rate, how)
    timings["baselines_s"] = round(time.time() - t, 1)

    teacher_row = teacher(a, base_cfg, ev, rows)
    if teacher_row is not None:
        ts, te, rate, note, keep = teacher_row
        name = "teacher " + base_cfg.judge.engine.model.replace("offline:", "")
        add(name, ts, te, rate, note, keep)
        if cross:  # its expected grades through the same cross-fitted map as every other source
            add_cross_fitted(name + ", calibrated", ts, rate, keep)

    students = {}
    for kind in a.kinds:
        cfg = student_config(base_cfg, kind, a.set)
        model_dir = out / kind / "model"
        t = time.time()
        if not (a.reuse and model_dir.is_dir()):
            train(cfg, judged, out / kind)
        timings[f"{kind}_train_s"] = round(time.time() - t, 1)
        if kind == "generative":
            # Through vLLM and the label stage, as `labeler label --model` runs it: its expected
            # grade is its score (from its grade-token distribution, no calibration of its own).
            s, keep, rate = grade_with_cli(a, rows, list(range(len(rows))), ["label", "--model", str(model_dir)],
                                           out / kind / "labels", "labels.parquet")
            add(f"student: {kind}", s, s, rate, f"its own grades, {int(keep.sum())} pairs", keep)
            if cross:
                add_cross_fitted(f"student: {kind}, calibrated", s, rate, keep)
            students[kind] = str(model_dir)
            continue
        s, e_own, rate = engine_scores(model_dir, rows)
        # Its raw score ranks like MiniLM cosine's raw row: like against like, since the isotonic
        # map's plateaus tie pairs and so cost any calibrated source some Spearman and NDCG.
        add(f"student: {kind}, raw score", s, rate=rate, note="ranking metrics only")
        if cross or cal_set is not None:
            e, how = calibrate(s, score_fn=lambda r, d=model_dir: engine_scores(d, r)[0])
            add(f"student: {kind}", s, e_own, rate, "held-out teacher (the export's own)")
        else:
            e, how = e_own, "held-out teacher (the export's own)"
        add(f"student: {kind}", s, e, rate, how)
        students[kind] = str(model_dir)
    timings["total_s"] = round(time.time() - t_start, 1)

    print_table(results)
    # By agreement on grades first: with --calibrate-on a student has a human- and a teacher-calibrated
    # row, and only α tells them apart (the teacher-fitted map is the weaker labeler).
    best = max((r for r in results if r["source"].startswith("student") and r["krippendorff_alpha"] is not None),
               key=lambda r: (r["krippendorff_alpha"], r["spearman"] or -1), default=None)
    print(json.dumps(json_safe({"eval": str(eval_dir), "fixture": a.fixture, "calibration": (
        "cross-fitted on eval" if cross else str(cal_on) if cal_on else "held-out teacher"), "results": results,
        "best_student": best, "students": students, "timings": timings, "machine": machine_info()})))
    return 0


def train(cfg, judged: pa.Table, out: Path) -> None:
    """The student of `cfg.distill` on the fixture, exported to out/model (labeler distill --judgments)."""
    import shutil

    from labeler.raycluster import init_ray
    from labeler.students import TrainingData, make_student

    init_ray(cfg.ray)
    part = lambda s: judged.filter(pc.equal(judged.column("split"), s))  # noqa: E731
    student = make_student(cfg.distill, cfg.judge.grading, seed=cfg.seed, k=10)
    out.mkdir(parents=True, exist_ok=True)
    trained = student.train(TrainingData(train=part("train"), heldout=part("heldout")), out / "ray_train", out / "model")
    shutil.rmtree(out / "ray_train", ignore_errors=True)
    (out / "train.json").write_text(json.dumps(json_safe(trained.extra), indent=2, default=str))


def teacher(a, cfg, ev: pa.Table, rows: list[dict]):
    """(scores, expected grades, pairs/s, note, graded mask) of the teacher on the eval pairs: the
    fixture's grades of LiveQA-Med dev, or N pairs graded now (--teacher-sample)."""
    import pyarrow.parquet as pq

    fx = Path(a.fixture) / "liveqa_dev.parquet"
    man = json.loads((Path(a.fixture) / "manifest.json").read_text()) if (Path(a.fixture) / "manifest.json").is_file() else {}
    if not a.teacher_sample and fx.is_file() and Path(a.eval).resolve() == EVAL.resolve():
        t = pq.read_table(fx).to_pylist()
        g = {(r["query_id"], r["doc_id"]): r for r in t if r["status"] == "ok"}
        keep = [i for i, r in enumerate(rows) if (r["query_id"], r["doc_id"]) in g]
        if len(keep) < len(rows):
            log.info("teacher: %d of %d eval pairs graded in the fixture", len(keep), len(rows))
        e = np.zeros(len(rows))
        for i in keep:
            e[i] = g[(rows[i]["query_id"], rows[i]["doc_id"])]["expected_grade"]
        mask = np.zeros(len(rows), bool)
        mask[keep] = True
        return e, e, man.get("teacher_pairs_per_s"), f"its own grades (fixture), {len(keep)} pairs", mask
    if not a.teacher_sample:
        return None
    return teacher_sample(a, rows)


def teacher_sample(a, rows: list[dict]):
    """N evaluation pairs drawn at random (seeded), graded by the config's teacher through
    `labeler judge CONFIG --pairs` (its request cache and resume apply)."""
    pick = sorted(random.Random(7).sample(range(len(rows)), min(a.teacher_sample, len(rows))))
    e, mask, rate = grade_with_cli(a, rows, pick, ["judge"], Path(a.out) / f"teacher-sample-{len(pick)}",
                                   "judgments.parquet")
    return e, e, rate, f"graded now, {int(mask.sum())} of {len(pick)} random pairs", mask


def grade_with_cli(a, rows: list[dict], pick: list[int], command: list[str], work: Path, table: str):
    """Expected grades of rows[pick] from `labeler <command> CONFIG --pairs` (the judge or label
    stage, as a user runs it: its cache and resume apply), the mask of pairs graded ok, and the
    rate: the stage's steady rate from its engines' counters (pairs over busy seconds for a sample
    too small for a steady rate), or rows over wall time without them."""
    import subprocess

    import pyarrow.parquet as pq

    work.mkdir(parents=True, exist_ok=True)
    src = work / "pairs.jsonl"
    src.write_text("".join(json.dumps({k: rows[i].get(k) for k in ("query_id", "query", "doc_id", "title", "text")})
                           + "\n" for i in pick))
    cmd = [sys.executable, "-m", "labeler.cli", command[0], a.config, *command[1:], "--pairs", str(src),
           "--out", str(work / "out")]
    log.info("%s: %s", command[0], " ".join(cmd))
    t = time.time()
    r = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True)
    if r.returncode != 0:
        raise SystemExit(f"labeler {command[0]} exited {r.returncode}: {r.stderr[-2000:]}")
    wall = time.time() - t
    got = {(x["query_id"], x["doc_id"]): x for x in pq.read_table(work / "out" / table).to_pylist()
           if x["status"] == "ok"}
    e = np.zeros(len(rows))
    mask = np.zeros(len(rows), bool)
    for i in pick:
        x = got.get((rows[i]["query_id"], rows[i]["doc_id"]))
        if x is not None:
            e[i], mask[i] = x["expected_grade"], True
    man = json.loads((work / "out" / "_manifest.json").read_text())
    eng = man.get("engine") or {}
    rate = eng.get("steady_pairs_per_s") or (eng["pairs_graded"] / eng["engine_busy_s"] if eng.get("engine_busy_s")
                                             else len(pick) / wall)
    return e, mask, rate


def print_table(results: list[dict]) -> None:
    w = max(len(r["source"]) for r in results)
    head = f"{'source':<{w}}  {'alpha':>7} {'w.kappa':>7} {'rho':>7} {'pairs':>7} {'ndcg10':>7} {'pairs/s':>9}  calibration"
    print(head)
    for r in results:
        f = lambda v: "      -" if v is None else f"{v:7.3f}"  # noqa: E731
        rate = "        -" if r["pairs_per_s"] is None else f"{r['pairs_per_s']:9.1f}"
        print(f"{r['source']:<{w}}  {f(r['krippendorff_alpha'])} {f(r['weighted_kappa'])} {f(r['spearman'])} "
              f"{f(r['pairwise_accuracy'])} {f(r['ndcg@10'])} {rate}  {r['note']}")


if __name__ == "__main__":
    sys.exit(main())
