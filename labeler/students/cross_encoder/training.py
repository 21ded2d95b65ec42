"""The cross-encoder's training through Ray Train (DDP over the workers): a checkpoint and
held-out validation each epoch, then the export with its score -> grade calibration."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa

from ... import models
from ...config import CrossEncoderStudentConfig, EngineConfig
from ...engines.cross_encoder_engine import META_FILE, encode_pairs
from ...engines.encoder_export import apply_calibration, pair_cosines, sentence_model, write_meta
from .. import raytrain
from ..calibration import fit_calibration, query_folds
from .data import GROUPS, POINTS, GroupSet, build_groups, graded_points, with_target
from .losses import lce_loss, margin_mse_loss, pointwise_loss
from .prior import add_priors, fit_prior, save_prior, zero_head

log = logging.getLogger(__name__)


def _train_loop(config: dict) -> None:
    """Runs on every Ray Train worker: DDP over the workers, a checkpoint and validation each epoch."""
    import ray.train
    import torch
    from ray.train.torch import prepare_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    d = CrossEncoderStudentConfig.model_validate(config["distill"])
    c = d.cross_encoder
    rank, world = raytrain.worker(d, config["seed"])
    # A killed or extended run: weights, optimizer and epoch from the latest checkpoint.
    start = raytrain.resume("labeler-ce-resume-")
    start_epoch, source, history = start.epoch, start.source or config["base_path"], start.history
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype=torch.float32)
    model = prepare_model(model)  # DDP when world > 1; moves to the worker's device
    device = next(model.parameters()).device
    opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    raytrain.load_optimizer(opt, start)
    core = getattr(model, "module", model)
    lce, margin = c.loss == "lce", c.loss == "margin_mse"
    prior = config["prior"]
    if prior is not None and start.source is None:
        zero_head(core)  # the first scores are the prior's own (a residual from there)

    def scores_of(m, queries, docs, priors=None):
        enc, _, _ = encode_pairs(tokenizer, queries, docs, c.max_seq_len)
        s = m(**{k: v.to(device) for k, v in enc.items()}).logits.squeeze(-1).float()
        if prior is not None:
            s = s + prior["a"] + prior["b"] * torch.tensor(priors, dtype=torch.float32, device=device)
        return s

    def batch_loss(m, rows):
        if lce:
            s = scores_of(m, [r["query"] for r in rows for _ in r["docs"]], [x for r in rows for x in r["docs"]],
                          [x for r in rows for x in r["priors"]] if prior is not None else None)
            return lce_loss(s.view(len(rows), -1), c.temperature)
        if margin:
            s = scores_of(m, [r["query"] for r in rows] * 2, [r["a"] for r in rows] + [r["b"] for r in rows],
                          [r["prior_a"] for r in rows] + [r["prior_b"] for r in rows] if prior is not None else None)
            return margin_mse_loss(s[:len(rows)], s[len(rows):], torch.tensor([r["margin"] for r in rows], device=device))
        s = scores_of(m, [r["query"] for r in rows], [r["doc"] for r in rows],
                      [r["prior"] for r in rows] if prior is not None else None)
        return pointwise_loss(s, torch.tensor([r["target"] for r in rows], device=device), c.pointwise_loss)

    # Every rank must take the same number of steps, or DDP's all-reduce hangs (the split is equal).
    # A MarginMSE row is two pairs: half as many rows, the same pairs a step as pointwise.
    rows_per_step = c.batch_groups if lce else c.batch_groups * c.group_size // (2 if margin else 1)
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

        def save(cd: Path) -> None:
            core.save_pretrained(cd, safe_serialization=True)
            tokenizer.save_pretrained(cd)
            torch.save(opt.state_dict(), cd / "optimizer.pt")

        raytrain.report({**metrics, "history": history}, save, rank, "labeler-ce-ckpt-")


def _validate(core, batch_loss, scores_of, config: dict, rank: int, world: int, batch_size: int) -> dict:
    """Held-out loss and the ranking agreement of raw scores with the teacher (grades need calibration,
    which is fitted once at export)."""
    import torch

    if not config["n_val_pairs"]:
        return {"val_loss": None, "val_agreement": None}
    from ...evaluate.metrics import validation_agreement

    core.eval()
    loss_sum, loss_n, preds = 0.0, 0, []
    with torch.no_grad():
        if config["n_val_groups"]:
            for rows in raytrain.stripe("val_groups", rank, world, max(1, batch_size // config["group_size"])):
                loss_sum += float(batch_loss(core, rows)) * len(rows)
                loss_n += len(rows)
        for rows in raytrain.stripe("val_pairs", rank, world, batch_size):
            s = scores_of(core, [r["query"] for r in rows], [r["doc"] for r in rows],
                          [r["prior"] for r in rows] if config["prior"] is not None else None)
            if config["loss"] == "pointwise":
                target = torch.tensor([r["expected"] for r in rows], device=s.device)
                loss_sum += float(pointwise_loss(s, target, config["pointwise_loss"])) * len(rows)
                loss_n += len(rows)
            preds += [(r["query_id"], r["doc_id"], float(v), r["grade"]) for r, v in zip(rows, s.tolist())]
    core.train()
    parts = raytrain.gather((loss_sum, loss_n, preds), world)
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


def train_cross_encoder(cfg: CrossEncoderStudentConfig, train_rows: pa.Table, heldout_rows: Optional[pa.Table],
                        storage: Path, export: Path, *, seed: int = 0, k: int = 10,
                        extra_groups: Optional[GroupSet] = None) -> dict:
    """Fit the cross-encoder on the train split's judgments, export it with its calibration.

    `train_rows`/`heldout_rows` are judge rows (failed ones included: the group builder counts
    them). Returns the training data actually used (`groups` or `points`), the group counts and
    rejections, the per-epoch history and the held-out agreement of the calibrated labeler.
    `extra_groups` (title_groups) are trained on beside the teacher's groups.
    """
    import ray

    c = cfg.cross_encoder
    lce, margin = c.loss == "lce", c.loss == "margin_mse"
    points = graded_points(train_rows)
    groups = build_groups(train_rows, c, seed) if lce else None
    train_data = groups.groups if lce else points
    if lce and extra_groups is not None and extra_groups.groups.num_rows:
        train_data = pa.concat_tables([train_data, extra_groups.groups])
    if train_data.num_rows < cfg.num_workers:
        detail = f" (groups: {groups.counts})" if lce else ""
        raise ValueError(f"distill (cross_encoder, {c.loss}): {train_data.num_rows} training rows for "
                         f"{cfg.num_workers} workers{detail}")
    val_points = graded_points(heldout_rows) if heldout_rows is not None else POINTS.empty_table()
    val_groups = build_groups(heldout_rows, c, seed).groups if (lce and heldout_rows is not None) else GROUPS.empty_table()
    base = models.resolve(c.base_model)
    prior, prior_model = None, None
    if c.prior == "cosine":
        prior_model = sentence_model(base, c.prior_max_seq_len)
        points, with_groups = add_priors(prior_model, points, train_data if lce else None, c.score_batch_size)
        train_data = with_groups if lce else points
        val_points, with_groups = add_priors(prior_model, val_points, val_groups if lce else None, c.score_batch_size)
        val_groups = with_groups if lce else val_groups

    def cosines_of(t: pa.Table):  # the committee's cosine, when there is no prior to take it from
        pairs = list(zip(t.column("query").to_pylist(), t.column("doc").to_pylist()))
        return pair_cosines(sentence_model(base, c.prior_max_seq_len), pairs, c.score_batch_size)

    points = with_target(points, c, cosines_of)
    if not lce:
        train_data = points
    if prior_model is not None:
        prior = fit_prior(points.column("prior").to_numpy(), points.column("target").to_numpy())
        log.info("cross_encoder prior: target ~ %.3f + %.3f x cosine (%d training pairs)",
                 prior["a"], prior["b"], prior["n_pairs"])
    if margin:
        train_data = margin_rows(points, seed)
        if train_data.num_rows < cfg.num_workers:
            raise ValueError(f"distill (cross_encoder, margin_mse): {train_data.num_rows} document pairs of one "
                             f"query with different teacher grades for {cfg.num_workers} workers")
    train_data = train_data.take(np.random.default_rng(seed).permutation(train_data.num_rows))
    datasets = {"train": ray.data.from_arrow(train_data)}
    if val_points.num_rows:
        datasets["val_pairs"] = ray.data.from_arrow(val_points)
    if val_groups.num_rows:
        datasets["val_groups"] = ray.data.from_arrow(val_groups)
    loop_cfg = {"distill": cfg.model_dump(mode="json"), "base_path": base, "seed": seed, "k": k, "lce": lce, "loss": c.loss,
                "group_size": c.group_size, "pointwise_loss": c.pointwise_loss, "n_train": train_data.num_rows,
                "n_val_pairs": val_points.num_rows, "n_val_groups": val_groups.num_rows, "prior": prior}
    result = raytrain.fit(_train_loop, loop_cfg, cfg, storage, "cross_encoder", datasets)
    export = Path(export)
    state = raytrain.export(result, export, drop=("optimizer.pt",))  # training state, not part of the model
    meta = {"kind": "cross_encoder", "base_model": c.base_model, "loss": c.loss, "max_seq_len": c.max_seq_len,
            "prior": None, "calibration": None}
    if prior_model is not None:
        meta["prior"] = {"kind": "cosine", "path": save_prior(prior_model, export), "max_seq_len": c.prior_max_seq_len,
                         "a": prior["a"], "b": prior["b"], "fitted_on_pairs": prior["n_pairs"]}
    write_meta(export, META_FILE, meta)
    stats = {"history": state.get("history", []), "epochs": c.epochs, "train_rows": train_data.num_rows,
             "groups": groups.counts if lce else None, "train_pairs": points.num_rows,
             "title_groups": extra_groups.counts if extra_groups is not None else None}
    engine = load_engine(export, batch_size=c.score_batch_size)

    def scores_of(t: pa.Table) -> np.ndarray:
        return np.asarray(engine.score(list(zip(t.column("query").to_pylist(), t.column("doc").to_pylist())))[0], float)

    val_q = val_points.column("query_id").to_pylist()
    folds = query_folds(val_q)
    # On its own training pairs the model scores more extremely than on new ones, so a map fitted
    # there mislabels new pairs: calibrate on the held-out teacher pairs when there are enough.
    if folds is not None:
        source, cal_points = "heldout", val_points
    else:
        source, cal_points = "train", points
    cal_scores = scores_of(cal_points)
    cal_expected = np.asarray(cal_points.column("expected").to_pylist(), float)
    meta["calibration"] = {**fit_calibration(cal_scores, cal_expected), "fitted_on": source}
    write_meta(export, META_FILE, meta)
    stats["calibration_pairs"], stats["calibration_source"] = meta["calibration"]["n_pairs"], source
    if val_points.num_rows:
        from ...evaluate.metrics import validation_agreement

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
    # The record of what was trained on: graded pairs (a MarginMSE row is two of them).
    return {**stats, "train_data": points if margin else train_data, "rejected": rejected,
            "metrics": result.metrics}


def margin_rows(points: pa.Table, seed: int) -> pa.Table:
    """MarginMSE rows from graded pairs with a target (the bi-encoder's rule: within a query, the
    widest margins of target first), each document's prior beside it when the points carry one."""
    from ..bi_encoder import triplets

    rows = points.to_pylist()
    t = triplets(rows, seed)
    if "prior" in points.column_names:
        prior = {(r["query"], r["doc"]): r["prior"] for r in rows}
        q, a, b = (t.column(n).to_pylist() for n in ("query", "a", "b"))
        t = t.append_column("prior_a", pa.array([prior[x] for x in zip(q, a)], pa.float32()))
        t = t.append_column("prior_b", pa.array([prior[x] for x in zip(q, b)], pa.float32()))
    return t


def load_engine(model_dir, *, batch_size: int = 32):
    """The cross-encoder engine of an exported folder (the one `label` uses)."""
    from ...engines.cross_encoder_engine import CrossEncoderEngine

    return CrossEncoderEngine(EngineConfig(backend="cross_encoder", model=str(model_dir), batch_size=batch_size))
