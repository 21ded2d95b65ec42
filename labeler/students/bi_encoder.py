"""The bi-encoder student: a sentence-transformers model (all-MiniLM-L6-v2 by default) fine-tuned so
that the cosine of a query and a document follows the teacher's grades, without losing what the
pretrained encoder already knows.

- Targets per pair: the teacher's expected grade, or a committee of it with BM25's score and the
  base model's own cosine (bi_encoder.target), so that a weak teacher is one voice among three.
- Losses from sentence-transformers: MarginMSE within a query (the cosine margin between two of its
  documents regresses their target margin, as GPL does) and/or CoSENT across the batch (only the
  order of the targets counts, so no scale has to be guessed).
- Kept from drifting: the held-out teacher pairs are scored before training (epoch 0, the base
  model) and after every epoch; the export is the best of them by `select_by`, the base model
  itself when no epoch beat it. Then the export's weights are averaged with the base model's
  (bi_encoder.base_weight, WiSE-FT): one encoder that keeps more of what MiniLM knew.
- Calibrated: an isotonic map from cosine to the teacher's 0-3 scale, fitted on held-out teacher
  pairs (or on human judgments, `--calibrate-on`), stored in the export (engines.encoder_export).

Training runs on Ray Train workers (DDP); each epoch is a checkpoint, and a killed run resumes.
"""
from __future__ import annotations

import logging
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa

from .. import models
from ..engines.bi_encoder_engine import META_FILE
from ..engines.encoder_export import apply_calibration, pair_cosines, pair_text, write_meta
from ..reasons import NOT_GRADED
from ..schema import TRAIN_EXAMPLES, rejected_row
from . import raytrain
from .base import Student, Trained, TrainingData
from .calibration import fit_calibration, query_folds

log = logging.getLogger(__name__)

PAIRS_SCHEMA = pa.schema([("query_id", pa.string()), ("query", pa.string()), ("doc_id", pa.string()),
                          ("doc", pa.string()), ("grade", pa.int8()), ("expected", pa.float32()),
                          ("bm25", pa.float32()), ("cosine", pa.float32()), ("target", pa.float32())])
TRIPLETS = pa.schema([("query", pa.string()), ("a", pa.string()), ("b", pa.string()), ("margin", pa.float32())])


def graded_pairs(judgments: pa.Table) -> tuple[list[dict], list[dict]]:
    """Ok pairs with the teacher's expected grade; failed ones are rejected with their reason."""
    rows, rejected = [], []
    for r in judgments.to_pylist():
        if r.get("status", "ok") != "ok" or r.get("grade") is None:
            rejected.append(rejected_row(f"{r['query_id']}\t{r['doc_id']}", NOT_GRADED,
                                         f"the teacher gave no grade ({r.get('error')})"))
            continue
        e = r.get("expected_grade")
        rows.append({"query_id": r["query_id"], "query": r["query"], "doc_id": r["doc_id"], "doc": pair_text(r),
                     "grade": int(r["grade"]), "expected": float(r["grade"] if e is None or e != e else e),
                     "bm25": float(r.get("bm25_score") or 0.0), "seed": float(r.get("source") == "seed")})
    return rows, rejected


def cosines(model, rows: list[dict], batch_size: int) -> np.ndarray:
    """Cosine of each pair row (query, doc) under `model` (a SentenceTransformer)."""
    return pair_cosines(model, [(r["query"], r["doc"]) for r in rows], batch_size)


def targets(rows: list[dict], how: str, weights: dict) -> np.ndarray:
    """teacher: expected grade / 3. committee: a weighted sum of that, BM25 min-max scaled within
    the query (its scale is per query), the base model's cosine and 1 for the query's seed document."""
    teacher = np.array([r["expected"] / 3.0 for r in rows])
    if how == "teacher":
        return teacher
    by_q: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_q[r["query_id"]].append(i)
    bm25 = np.zeros(len(rows))
    for idx in by_q.values():
        v = np.array([rows[i]["bm25"] for i in idx])
        span = v.max() - v.min()
        bm25[idx] = (v - v.min()) / span if span > 0 else 0.5
    cos = np.array([r["cosine"] for r in rows])
    seed = np.array([r.get("seed", 0.0) for r in rows])
    w = {"teacher": 0.0, "bm25": 0.0, "cosine": 0.0, "seed": 0.0, **weights}
    total = sum(w.values()) or 1.0
    return (w["teacher"] * teacher + w["bm25"] * bm25 + w["cosine"] * cos + w["seed"] * seed) / total


def triplets(rows: list[dict], seed: int, per_query: int = 6) -> pa.Table:
    """MarginMSE examples: within each query, pairs of its documents with different targets, the
    margin of their targets the label (up to `per_query` pairs, the widest margins first)."""
    by_q: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_q[r["query_id"]].append(r)
    out = []
    rng = random.Random(seed)
    for qid in sorted(by_q):
        docs = by_q[qid]
        cand = [(a, b) for i, a in enumerate(docs) for b in docs[i + 1:] if abs(a["target"] - b["target"]) > 1e-3]
        cand.sort(key=lambda p: -abs(p[0]["target"] - p[1]["target"]))
        for a, b in cand[:per_query]:
            if rng.random() < 0.5:
                a, b = b, a
            out.append({"query": a["query"], "a": a["doc"], "b": b["doc"], "margin": a["target"] - b["target"]})
    rng.shuffle(out)
    return pa.Table.from_pylist(out, schema=TRIPLETS)


def _train_loop(config: dict) -> None:
    """Runs on every Ray Train worker: DDP over the workers, a checkpoint and validation each epoch."""
    import ray.train
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss, MarginMSELoss
    from sentence_transformers.util import pairwise_cos_sim

    from ..config import BiEncoderStudentConfig

    d = BiEncoderStudentConfig.model_validate(config["distill"])
    c = d.bi_encoder
    rank, world = raytrain.worker(d, config["seed"])
    start = raytrain.resume("labeler-bi-resume-")
    model = SentenceTransformer(start.source or config["base_path"], device="cpu")
    model.max_seq_length = c.max_seq_len
    device = next(model.parameters()).device
    # No DDP wrapper: a step embeds queries and documents in separate forward passes, so the
    # gradients are averaged over the ranks by hand after backward (raytrain.average_gradients).
    margin_loss = MarginMSELoss(model, similarity_fct=pairwise_cos_sim)
    cosent = CoSENTLoss(model)
    opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    raytrain.load_optimizer(opt, start)
    history = start.history
    scale = config["margin_scale"]

    encode = getattr(model, "preprocess", None) or model.tokenize  # sentence-transformers 6 renamed it

    def feats(texts):
        return {k: v.to(device) if hasattr(v, "to") else v for k, v in encode(texts).items()}

    # Every rank takes the same number of full batches (the gradients are all-reduced each step,
    # so a rank that stopped early would leave the others waiting forever).
    sizes = ([config["n_triplets"]] if c.loss != "cosent" else []) + ([config["n_pairs"]] if c.loss != "margin_mse" else [])
    steps = max(1, min(n // world for n in sizes) // c.batch_size)
    if c.max_steps:
        steps = min(steps, c.max_steps)
    train = ray.train.get_dataset_shard("train")
    points = ray.train.get_dataset_shard("points")
    for epoch in range(start.epoch, c.epochs):
        model.train()
        total, k = 0.0, 0
        trip_it = iter(train.iter_batches(batch_size=c.batch_size, batch_format="pyarrow")) if c.loss != "cosent" else None
        point_it = (iter(points.iter_batches(batch_size=c.batch_size, batch_format="pyarrow", local_shuffle_buffer_size=512))
                    if c.loss != "margin_mse" else None)
        for step in range(steps):
            loss = torch.zeros((), device=device)
            if trip_it is not None:
                b = next(trip_it)
                r = b.to_pydict()
                labels = torch.tensor(r["margin"], device=device).float() * scale
                loss = loss + margin_loss([feats(r["query"]), feats(r["a"]), feats(r["b"])], labels)
            if point_it is not None:
                b = next(point_it)
                r = b.to_pydict()
                loss = loss + cosent([feats(r["query"]), feats(r["doc"])], torch.tensor(r["target"], device=device).float())
            opt.zero_grad()
            loss.backward()
            raytrain.average_gradients(model.parameters(), world)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total, k = total + float(loss.detach()), k + 1
        metrics = {"epoch": epoch + 1, "train_loss": total / max(k, 1), "steps": k,
                   "val_agreement": _validate(model, config, rank, world, c.score_batch_size)}
        history.append(metrics)

        def save(cd: Path) -> None:
            model.save(str(cd))
            torch.save(opt.state_dict(), cd / "optimizer.pt")

        raytrain.report({**metrics, "history": history}, save, rank, "labeler-bi-ckpt-")


def _validate(model, config: dict, rank: int, world: int, batch_size: int):
    """Agreement of raw cosines with the held-out teacher grades (ranking measures; grades need the
    calibration, fitted once at export)."""
    from ..evaluate.metrics import validation_agreement

    rows = [r for b in raytrain.stripe("val", rank, world, 256) for r in b] if config["n_val"] else []
    cos = cosines(model, rows, batch_size).tolist()
    parts = raytrain.gather([(r["query_id"], r["doc_id"], r["grade"], v) for r, v in zip(rows, cos)], world)
    preds = [x for p in parts for x in p]
    if rank != 0 or not preds:
        return None
    ref = pa.table({"query_id": [p[0] for p in preds], "doc_id": [p[1] for p in preds],
                    "grade": pa.array([p[2] for p in preds], pa.int8())})
    return validation_agreement(ref, ref.select(["query_id", "doc_id"]).append_column(
        "score", pa.array([p[3] for p in preds], pa.float64())), config["k"])


def _selection_value(agreement, key: str):
    return agreement.get(key) if agreement else None


class BiEncoderStudent(Student):
    kind = "bi_encoder"

    def train(self, data: TrainingData, workdir: Path, export: Path) -> Trained:
        import ray
        from sentence_transformers import SentenceTransformer

        from ..evaluate.metrics import validation_agreement

        c = self.cfg.bi_encoder
        base = models.resolve(c.base_model)
        train_rows, rejected = graded_pairs(data.train)
        val_rows, _ = graded_pairs(data.heldout) if data.heldout is not None else ([], [])
        if len({r["query_id"] for r in train_rows}) < self.cfg.num_workers:
            raise ValueError(f"distill (bi_encoder): {len(train_rows)} graded training pairs, too few for "
                             f"{self.cfg.num_workers} workers")
        base_model = SentenceTransformer(base, device="cpu")
        base_model.max_seq_length = c.max_seq_len
        for r, v in zip(train_rows, cosines(base_model, train_rows, c.score_batch_size)):
            r["cosine"] = float(v)
        for r, t in zip(train_rows, targets(train_rows, c.target, c.committee_weights)):
            r["target"] = float(t)
        trips = triplets(train_rows, self.seed)
        # Cosine margins of the base model are far smaller than target margins on the 0-1 scale:
        # scale the labels so MarginMSE asks for margins of the size the model produces.
        cos = np.array([r["cosine"] for r in train_rows])
        tgt = np.array([r["target"] for r in train_rows])
        margin_scale = float(np.std(cos) / np.std(tgt)) if np.std(tgt) > 0 else 1.0
        # Epoch 0: the base model on the held-out pairs, the bar every epoch must clear.
        base_val = None
        if val_rows:
            vc = cosines(base_model, val_rows, c.score_batch_size)
            ref = pa.table({"query_id": [r["query_id"] for r in val_rows], "doc_id": [r["doc_id"] for r in val_rows],
                            "grade": pa.array([r["grade"] for r in val_rows], pa.int8())})
            base_val = validation_agreement(ref, ref.select(["query_id", "doc_id"]).append_column(
                "score", pa.array(vc, pa.float64())), self.k)
        del base_model
        points = pa.Table.from_pylist([{f.name: r.get(f.name) for f in PAIRS_SCHEMA} for r in train_rows],
                                      schema=PAIRS_SCHEMA)
        points = points.take(np.random.default_rng(self.seed).permutation(points.num_rows))
        datasets = {"train": ray.data.from_arrow(trips if trips.num_rows else TRIPLETS.empty_table()),
                    "points": ray.data.from_arrow(points)}
        if val_rows:
            datasets["val"] = ray.data.from_arrow(pa.Table.from_pylist(
                [{k: r[k] for k in ("query_id", "query", "doc_id", "doc", "grade")} for r in val_rows]))
        loop_cfg = {"distill": self.cfg.model_dump(mode="json"), "base_path": base, "seed": self.seed, "k": self.k,
                    "n_triplets": trips.num_rows, "n_pairs": points.num_rows, "n_val": len(val_rows),
                    "margin_scale": margin_scale}
        result = raytrain.fit(_train_loop, loop_cfg, self.cfg, workdir, "bi_encoder", datasets,
                              split=("train", "points"))
        state = raytrain.export(result, export, drop=("optimizer.pt",))
        history = [{"epoch": 0, "val_agreement": base_val}, *state.get("history", [])]
        chosen = self._choose(history, result, export, base)
        blend = c.base_weight if chosen else None  # epoch 0 is the base model: nothing to blend
        model = (blend_with_base(export, base, blend) if blend
                 else SentenceTransformer(str(export), device="cpu"))
        model.max_seq_length = c.max_seq_len
        meta = {"kind": "bi_encoder", "base_model": c.base_model, "max_seq_len": c.max_seq_len,
                "target": c.target, "loss": c.loss, "epoch": chosen, "base_weight": blend, "calibration": None}
        stats = {"history": history, "epoch_exported": chosen, "select_by": c.select_by,
                 "train_pairs": len(train_rows), "triplets": trips.num_rows, "margin_scale": round(margin_scale, 5)}
        if val_rows:
            vc = cosines(model, val_rows, c.score_batch_size)
            expected = np.array([r["expected"] for r in val_rows])
            meta["calibration"] = {**fit_calibration(vc, expected), "fitted_on": "heldout"}
            stats["heldout_agreement"] = _cross_fitted(val_rows, vc, expected, self.k)
        else:  # no held-out pairs: calibrated on the training pairs (optimistic), and said so
            tc = cosines(model, train_rows, c.score_batch_size)
            meta["calibration"] = {**fit_calibration(tc, np.array([r["expected"] for r in train_rows])),
                                   "fitted_on": "train"}
        write_meta(export, META_FILE, meta)
        record = pa.table({"query_id": [r["query_id"] for r in train_rows], "doc_id": [r["doc_id"] for r in train_rows],
                           "grade": pa.array([r["grade"] for r in train_rows], pa.int8()),
                           "n_tokens": pa.nulls(len(train_rows), pa.int32())}, schema=TRAIN_EXAMPLES)
        counts: dict = {}
        for r in train_rows:
            counts[str(r["grade"])] = counts.get(str(r["grade"]), 0) + 1
        return Trained(len(train_rows) + len(rejected), record, rejected,
                       {"kind": "bi_encoder", "grade_counts": dict(sorted(counts.items())), "train": stats})

    def _choose(self, history: list[dict], result, export: Path, base: str) -> int:
        """The epoch to export by `select_by` (0: the base model); the export folder is made to hold it."""
        import shutil

        key = self.cfg.bi_encoder.select_by
        if key == "last" or len(history) < 2:
            return history[-1]["epoch"]
        scored = [(h["epoch"], _selection_value(h.get("val_agreement"), key)) for h in history]
        scored = [(e, v) for e, v in scored if v is not None]
        if not scored:
            return history[-1]["epoch"]
        best = max(scored, key=lambda x: (x[1], -x[0]))[0]
        if best == history[-1]["epoch"]:
            return best
        if best == 0:
            log.info("[distill] no epoch beat the base model on held-out %s: exporting the base model", key)
            shutil.rmtree(export)
            shutil.copytree(base, export)
            return 0
        # An earlier epoch: its checkpoint is kept by Ray Train (num_to_keep=2) when it is recent.
        for ckpt, metrics in result.best_checkpoints:
            if metrics.get("epoch") == best:
                raytrain.export(ckpt, export, drop=("optimizer.pt",))
                return best
        log.warning("[distill] the checkpoint of epoch %d is gone; exporting the last epoch", best)
        return history[-1]["epoch"]


def blend_with_base(export: Path, base: str, base_weight: float):
    """WiSE-FT: rewrite the fine-tuned model in `export` as (1 - w) * fine-tuned + w * base, tensor by
    tensor (integer buffers such as position ids are kept as they are); returns the blended model,
    so the caller need not load it again."""
    import torch
    from sentence_transformers import SentenceTransformer

    tuned = SentenceTransformer(str(export), device="cpu")
    start = SentenceTransformer(base, device="cpu").state_dict()
    state = tuned.state_dict()
    if state.keys() != start.keys() or any(state[k].shape != start[k].shape for k in state):
        raise ValueError(f"distill (bi_encoder): {export} and its base {base} differ in architecture; "
                         f"base_weight needs the same parameters in both")
    with torch.no_grad():
        for name, t in state.items():
            if t.is_floating_point():
                t.mul_(1.0 - base_weight).add_(start[name].to(t.dtype), alpha=base_weight)
    tuned.save(str(export))
    log.info("[distill] exported weights: %.2f of the base model, %.2f fine-tuned", base_weight, 1 - base_weight)
    return tuned


def _cross_fitted(rows: list[dict], scores: np.ndarray, expected: np.ndarray, k: int) -> dict:
    """Agreement on held-out pairs of grades from a calibration fitted on the other half's queries."""
    from ..evaluate.metrics import validation_agreement

    folds = query_folds([r["query_id"] for r in rows])
    if folds is None:
        pred = apply_calibration(scores, fit_calibration(scores, expected))
    else:
        pred = np.empty(len(rows))
        for f in (0, 1):
            pred[folds == f] = apply_calibration(scores[folds == f],
                                                 fit_calibration(scores[folds != f], expected[folds != f]))
    ref = pa.table({"query_id": [r["query_id"] for r in rows], "doc_id": [r["doc_id"] for r in rows],
                    "grade": pa.array([r["grade"] for r in rows], pa.int8())})
    out = pa.table({"query_id": ref.column("query_id"), "doc_id": ref.column("doc_id"),
                    "grade": pa.array(np.floor(pred + 0.5).astype(np.int8)),
                    "expected_grade": pa.array(pred, pa.float64())})
    return validation_agreement(ref, out, k)

