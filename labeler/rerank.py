"""The cross-encoder student (the reranker paper): a BERT-style encoder with a one-logit head, trained
on the teacher's judgments through Ray Train (DDP), used as a reranker of BM25 results and, through a
monotone calibration of its score to the teacher's grades, as a labeler.

Training groups follow the LCE recipe: per query the teacher's best pair (if it is relevant enough)
first, then hard negatives from the same query's BM25 results that the teacher graded lower;
the loss is softmax cross-entropy over each group with the positive at index 0. A pointwise mode
regresses the teacher's expected grade instead. Queries that cannot form a group are reported with
a reason, never dropped silently.
"""
from __future__ import annotations

import json
import random
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import models
from .config import CrossEncoderConfig, DistillConfig, EngineConfig
from .schema import rejected_row

# The marker of an exported cross-encoder: its settings and the score -> grade calibration.
META_FILE = "labeler_cross_encoder.json"

GROUPS = pa.schema([
    ("query_id", pa.string()), ("query", pa.string()),
    ("doc_ids", pa.list_(pa.string())), ("docs", pa.list_(pa.string())),      # positive first
    ("grades", pa.list_(pa.int8())), ("expected", pa.list_(pa.float32())),
])
POINTS = pa.schema([
    ("query_id", pa.string()), ("query", pa.string()), ("doc_id", pa.string()), ("doc", pa.string()),
    ("grade", pa.int8()), ("expected", pa.float32()),
])


def is_cross_encoder(path) -> bool:
    """A folder exported by this module (so `label` and `make_engine` can pick the right engine)."""
    try:
        return (Path(path).expanduser() / META_FILE).is_file()
    except (OSError, TypeError):
        return False


def pair_text(row: dict) -> str:
    """The document side of a pair: title and text, as in training and at labeling time."""
    title, text = row.get("title") or "", row.get("text") or ""
    return f"{title}\n{text}" if title else text


def encode_pairs(tokenizer, queries: list[str], docs: list[str], max_len: int):
    """Tokenised (query, document) pairs cut to `max_len` tokens; which ones were cut, and their lengths."""
    full = tokenizer(queries, docs, truncation=False, verbose=False)["input_ids"]
    truncated = [len(ids) > max_len for ids in full]
    enc = tokenizer(queries, docs, truncation="longest_first", max_length=max_len, padding=True,
                    return_tensors="pt")
    return enc, truncated, enc["attention_mask"].sum(1).tolist()


def _expected(row: dict) -> float:
    e = row.get("expected_grade")
    return float(row["grade"]) if e is None or e != e else float(e)


# --------------------------------------------------------------------------- training data

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
            rejected.append(rejected_row(qid, "no_graded_pairs", f"all {len(rows)} pairs of the query failed to be graded"))
            continue
        pos = min(ok, key=lambda r: (-r["grade"], -_expected(r), r["bm25_rank"] or 1 << 30, r["doc_id"]))
        if pos["grade"] < cfg.positive_min_grade:
            rejected.append(rejected_row(qid, "no_positive", f"best teacher grade {pos['grade']} of {len(ok)} graded "
                                         f"pairs is below positive_min_grade={cfg.positive_min_grade}"))
            continue
        cands = sorted((r for r in ok if r is not pos and r["grade"] < pos["grade"] and r.get("bm25_rank") is not None
                        and lo <= r["bm25_rank"] <= hi), key=lambda r: (r["bm25_rank"], r["doc_id"]))
        if len(cands) < need:
            rejected.append(rejected_row(qid, "too_few_negatives",
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
    from .config import MineConfig
    from .mine import MineWorker

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
                rejected.append(rejected_row(qid, "too_few_negatives",
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
             "grade": int(r["grade"]), "expected": _expected(r)}
            for r in ok.to_pylist() if r["grade"] is not None]
    return pa.Table.from_pylist(rows, schema=POINTS)


# --------------------------------------------------------------------------- losses and calibration

def lce_loss(scores, temperature: float = 1.0):
    """Localized contrastive estimation: cross-entropy over each group (rows), positive at index 0."""
    import torch
    import torch.nn.functional as F

    target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores / temperature, target)


def pointwise_loss(scores, expected, kind: str = "mse"):
    """Regress the teacher's expected grade: MSE on the grade scale, or BCE against expected/3."""
    import torch.nn.functional as F

    if kind == "bce":
        return F.binary_cross_entropy_with_logits(scores, expected / 3.0)
    return F.mse_loss(scores, expected)


def fit_calibration(scores, expected) -> dict:
    """Isotonic (monotone) map from the cross-encoder's score to the teacher's expected grade, as breakpoints."""
    from sklearn.isotonic import IsotonicRegression

    scores, expected = np.asarray(scores, float), np.asarray(expected, float)
    if scores.size < 2:
        raise ValueError(f"calibration needs at least 2 graded training pairs, got {scores.size}")
    iso = IsotonicRegression(y_min=0.0, y_max=3.0, increasing=True, out_of_bounds="clip").fit(scores, expected)
    return {"method": "isotonic", "x": [float(v) for v in iso.X_thresholds_],
            "y": [float(v) for v in iso.y_thresholds_], "n_pairs": int(scores.size)}


def apply_calibration(scores, calibration: dict) -> np.ndarray:
    """Breakpoints -> expected grades in [0, 3]; linear between breakpoints, clipped outside (as sklearn)."""
    return np.interp(np.asarray(scores, float), calibration["x"], calibration["y"])


# --------------------------------------------------------------------------- Ray Train loop

def _train_loop(config: dict) -> None:
    """Runs on every Ray Train worker: DDP over the workers, a checkpoint and validation each epoch."""
    import ray.train
    import torch
    from ray.train import Checkpoint
    from ray.train.torch import prepare_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    d = DistillConfig.model_validate(config["distill"])
    c = d.cross_encoder
    torch.set_num_threads(max(1, int(d.cpus_per_worker)))
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(config["seed"])

    start_epoch, source, history, opt_state = 0, config["base_path"], [], None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:  # a killed or extended run: weights, optimizer and epoch from the latest checkpoint
        with ckpt.as_directory() as cd:
            state = json.loads((Path(cd) / "train_state.json").read_text())
            start_epoch, history = state["epoch"] + 1, state.get("history", [])
            source = tempfile.mkdtemp(prefix="labeler-ce-resume-")
            shutil.copytree(cd, source, dirs_exist_ok=True)
        if (Path(source) / "optimizer.pt").is_file():
            opt_state = torch.load(Path(source) / "optimizer.pt", weights_only=True)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype=torch.float32)
    model = prepare_model(model)  # DDP when world > 1; moves to the worker's device
    device = next(model.parameters()).device
    opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    core = getattr(model, "module", model)
    lce = c.loss == "lce"

    def scores_of(m, queries, docs):
        enc, _, _ = encode_pairs(tokenizer, queries, docs, c.max_seq_len)
        return m(**{k: v.to(device) for k, v in enc.items()}).logits.squeeze(-1).float()

    def batch_loss(m, rows):
        if lce:
            s = scores_of(m, [r["query"] for r in rows for _ in r["docs"]], [x for r in rows for x in r["docs"]])
            return lce_loss(s.view(len(rows), -1), c.temperature)
        s = scores_of(m, [r["query"] for r in rows], [r["doc"] for r in rows])
        return pointwise_loss(s, torch.tensor([r["expected"] for r in rows], device=device), c.pointwise_loss)

    # Every rank must take the same number of steps, or DDP's all-reduce hangs (the split is equal).
    rows_per_step = c.batch_groups if lce else c.batch_groups * c.group_size
    steps = -(-(config["n_train"] // world) // rows_per_step)
    if c.max_steps:
        steps = min(steps, c.max_steps)
    shard = ray.train.get_dataset_shard("train")

    for epoch in range(start_epoch, c.epochs):
        model.train()
        total, n = 0.0, 0
        for step, batch in enumerate(shard.iter_batches(batch_size=rows_per_step, batch_format="pyarrow")):
            if step >= steps:
                break
            loss = batch_loss(model, batch.to_pylist())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total, n = total + float(loss.detach()), n + 1
        metrics = {"epoch": epoch, "train_loss": total / max(n, 1), "steps": n,
                   **_validate(core, batch_loss, scores_of, config, rank, world, c.score_batch_size)}
        history.append(metrics)
        with tempfile.TemporaryDirectory(prefix="labeler-ce-ckpt-") as cd:
            checkpoint = None
            if rank == 0:
                core.save_pretrained(cd, safe_serialization=True)
                tokenizer.save_pretrained(cd)
                torch.save(opt.state_dict(), Path(cd) / "optimizer.pt")
                (Path(cd) / "train_state.json").write_text(json.dumps({**metrics, "history": history}))
                checkpoint = Checkpoint.from_directory(cd)
            ray.train.report({**metrics, "history": history}, checkpoint=checkpoint)


def _stripe(name: str, rank: int, world: int, batch_size: int):
    """This rank's share (every world-th row) of an unsplit validation dataset, in batches of rows."""
    import ray.train

    it = ray.train.get_dataset_shard(name)
    if it is None:
        return
    i, buf = 0, []
    for batch in it.iter_batches(batch_size=batch_size, batch_format="pyarrow"):
        for r in batch.to_pylist():
            if i % world == rank:
                buf.append(r)
            i += 1
            if len(buf) == batch_size:
                yield buf
                buf = []
    if buf:
        yield buf


def _gather(obj, world: int) -> list:
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _validate(core, batch_loss, scores_of, config: dict, rank: int, world: int, batch_size: int) -> dict:
    """Held-out loss and the ranking agreement of raw scores with the teacher (grades need calibration,
    which is fitted once at export)."""
    import torch

    if not config["n_val_pairs"]:
        return {"val_loss": None, "val_agreement": None}
    from .distill import validation_agreement

    core.eval()
    loss_sum, loss_n, preds = 0.0, 0, []
    with torch.no_grad():
        if config["n_val_groups"]:
            for rows in _stripe("val_groups", rank, world, max(1, batch_size // config["group_size"])):
                loss_sum += float(batch_loss(core, rows)) * len(rows)
                loss_n += len(rows)
        for rows in _stripe("val_pairs", rank, world, batch_size):
            s = scores_of(core, [r["query"] for r in rows], [r["doc"] for r in rows])
            if not config["lce"]:
                target = torch.tensor([r["expected"] for r in rows], device=s.device)
                loss_sum += float(pointwise_loss(s, target, config["pointwise_loss"])) * len(rows)
                loss_n += len(rows)
            preds += [(r["query_id"], r["doc_id"], float(v), r["grade"]) for r, v in zip(rows, s.tolist())]
    core.train()
    parts = _gather((loss_sum, loss_n, preds), world)
    loss_sum, loss_n = sum(p[0] for p in parts), sum(p[1] for p in parts)
    preds = [x for p in parts for x in p[2]]
    out = {"val_loss": loss_sum / loss_n if loss_n else None, "val_pairs": len(preds), "val_agreement": None}
    if rank == 0 and preds:
        ref = pa.table({"query_id": [p[0] for p in preds], "doc_id": [p[1] for p in preds],
                        "grade": pa.array([p[3] for p in preds], pa.int8())})
        pred = pa.table({"query_id": ref.column("query_id"), "doc_id": ref.column("doc_id"),
                         "score": pa.array([p[2] for p in preds], pa.float64())})
        out["val_agreement"] = validation_agreement(ref, pred, config["k"])
    return out


# --------------------------------------------------------------------------- driver

def train_cross_encoder(cfg: DistillConfig, train_rows: pa.Table, heldout_rows: Optional[pa.Table],
                        storage: Path, export: Path, *, seed: int = 0, k: int = 10,
                        extra_groups: Optional[GroupSet] = None) -> dict:
    """Fit the cross-encoder on the train split's judgments, export it with its calibration.

    `train_rows`/`heldout_rows` are judge rows (failed ones included: the group builder counts
    them). Returns the training data actually used (`groups` or `points`), the group counts and
    rejections, the per-epoch history and the held-out agreement of the calibrated labeler.
    `extra_groups` (title_groups) are trained on beside the teacher's groups.
    """
    import ray
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    c = cfg.cross_encoder
    lce = c.loss == "lce"
    points = graded_points(train_rows)
    groups = build_groups(train_rows, c, seed) if lce else None
    train_data = groups.groups if lce else points
    if lce and extra_groups is not None and extra_groups.groups.num_rows:
        train_data = pa.concat_tables([train_data, extra_groups.groups])
    if train_data.num_rows < cfg.num_workers:
        detail = f" (groups: {groups.counts})" if lce else ""
        raise ValueError(f"distill (cross_encoder, {c.loss}): {train_data.num_rows} training rows for "
                         f"{cfg.num_workers} workers{detail}")
    train_data = train_data.take(np.random.default_rng(seed).permutation(train_data.num_rows))
    datasets = {"train": ray.data.from_arrow(train_data)}
    val_points = graded_points(heldout_rows) if heldout_rows is not None else POINTS.empty_table()
    val_groups = build_groups(heldout_rows, c, seed).groups if (lce and heldout_rows is not None) else GROUPS.empty_table()
    if val_points.num_rows:
        datasets["val_pairs"] = ray.data.from_arrow(val_points)
    if val_groups.num_rows:
        datasets["val_groups"] = ray.data.from_arrow(val_groups)
    base = models.resolve(c.base_model)
    loop_cfg = {"distill": cfg.model_dump(mode="json"), "base_path": base, "seed": seed, "k": k, "lce": lce,
                "group_size": c.group_size, "pointwise_loss": c.pointwise_loss, "n_train": train_data.num_rows,
                "n_val_pairs": val_points.num_rows, "n_val_groups": val_groups.num_rows}
    trainer = TorchTrainer(
        _train_loop, train_loop_config=loop_cfg,
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cfg.cpus_per_worker,
                                                           **({"GPU": 1} if cfg.use_gpu else {})}),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        dataset_config=DataConfig(datasets_to_split=["train"]),
        run_config=RunConfig(name="cross_encoder", storage_path=str(Path(storage).resolve()),
                             checkpoint_config=CheckpointConfig(num_to_keep=2),
                             failure_config=FailureConfig(max_failures=1)),
        datasets=datasets,
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"cross-encoder training finished without a checkpoint (error: {result.error})")
    export = Path(export)
    with result.checkpoint.as_directory() as d:
        if export.exists():
            shutil.rmtree(export)
        shutil.copytree(d, export)
    (export / "optimizer.pt").unlink(missing_ok=True)  # training state, not part of the model
    state = json.loads((export / "train_state.json").read_text())
    meta = {"kind": "cross_encoder", "base_model": c.base_model, "loss": c.loss, "max_seq_len": c.max_seq_len,
            "calibration": None}
    (export / META_FILE).write_text(json.dumps(meta, indent=2))
    stats = {"history": state.get("history", []), "epochs": c.epochs, "train_rows": train_data.num_rows,
             "groups": groups.counts if lce else None, "train_pairs": points.num_rows,
             "title_groups": extra_groups.counts if extra_groups is not None else None}
    engine = load_engine(export, batch_size=c.score_batch_size)

    def scores_of(t: pa.Table) -> np.ndarray:
        return np.asarray(engine.score(list(zip(t.column("query").to_pylist(), t.column("doc").to_pylist())))[0], float)

    val_q = val_points.column("query_id").to_pylist()
    folds = _query_folds(val_q)
    # On its own training pairs the model scores more extremely than on new ones, so a map fitted
    # there mislabels new pairs: calibrate on the held-out teacher pairs when there are enough.
    if folds is not None:
        source, cal_points = "heldout", val_points
    else:
        source, cal_points = "train", points
    cal_scores = scores_of(cal_points)
    cal_expected = np.asarray(cal_points.column("expected").to_pylist(), float)
    meta["calibration"] = {**fit_calibration(cal_scores, cal_expected), "fitted_on": source}
    (export / META_FILE).write_text(json.dumps(meta, indent=2))
    stats["calibration_pairs"], stats["calibration_source"] = meta["calibration"]["n_pairs"], source
    if val_points.num_rows:
        from .distill import validation_agreement

        if folds is not None:
            # Cross-fitted: each held-out query's grades come from a map fitted on the other half's
            # queries, so the agreement reported is on pairs the map never saw.
            expected = np.empty(len(val_q))
            for f in (0, 1):
                expected[folds == f] = apply_calibration(cal_scores[folds == f],
                                                         fit_calibration(cal_scores[folds != f], cal_expected[folds != f]))
        else:
            expected = apply_calibration(scores_of(val_points), meta["calibration"])
        pred = pa.table({"query_id": val_points.column("query_id"), "doc_id": val_points.column("doc_id"),
                         "grade": pa.array(np.floor(expected + 0.5).astype(np.int8)),
                         "expected_grade": pa.array(expected, pa.float64())})
        stats["heldout_agreement"] = validation_agreement(val_points.select(["query_id", "doc_id", "grade"]), pred, k)
    rejected = (groups.rejected + (extra_groups.rejected if extra_groups is not None else [])) if lce else []
    return {**stats, "train_data": train_data, "rejected": rejected,
            "metrics": result.metrics}


def _query_folds(query_ids: list) -> Optional[np.ndarray]:
    """Two folds by query (alternating over the sorted ids), or None when a fold would have fewer
    than 2 pairs (too few held-out pairs to calibrate on and cross-fit)."""
    order = {q: i % 2 for i, q in enumerate(sorted(set(query_ids)))}
    folds = np.array([order[q] for q in query_ids], dtype=np.int8)
    if len(order) < 2 or min(int((folds == 0).sum()), int((folds == 1).sum())) < 2:
        return None
    return folds


def load_engine(model_dir, *, batch_size: int = 32):
    """The cross-encoder engine of an exported folder (the one `label` uses)."""
    from .engines.cross_encoder_engine import CrossEncoderEngine

    return CrossEncoderEngine(EngineConfig(backend="cross_encoder", model=str(model_dir), batch_size=batch_size))


# --------------------------------------------------------------------------- reranking

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
    engine = load_engine(model_dir, batch_size=batch_size)
    scores, _, _ = engine.score([(r["query"], pair_text(r)) for r in rows])
    run: dict[str, dict[str, float]] = {}
    for r, s in zip(rows, scores):
        run.setdefault(str(r["query_id"]), {})[str(r["doc_id"])] = float(s)
    write_run(run, run_path, tag)
    return run
