"""The generative student (the relevance-labeler paper): teacher judgments distilled into a small
causal LM with Ray Train + DeepSpeed.

The student learns to emit the grade token right after the very prompt it will be labeled with
(labeler.grading), so labeling with it is the same one-forward-pass logprob read as the teacher.
Loss: cross-entropy on the teacher's most likely grade, plus an optional KL term to the
teacher's grade distribution. The same code runs on CPU workers (gloo) and GPUs (nccl).
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Optional

import pyarrow as pa

from .. import models
from ..config import GenerativeStudentConfig, GradeConfig, merge_dicts
from ..grading import build_prompt, grade_target_ids
from ..hardware import resolve_bf16
from ..prompts import load_template
from ..reasons import TOO_LONG
from ..schema import GRADES, TRAIN_EXAMPLES
from . import raytrain
from .base import Student, Trained, TrainingData

DistillConfig = GenerativeStudentConfig
log = logging.getLogger(__name__)

def training_examples(judgments: pa.Table, tokenizer, grading: GradeConfig, max_seq_len: int) -> tuple[pa.Table, list[dict]]:
    """Tokenised prompts with the teacher's grade and distribution; over-long ones are rejected."""
    template = load_template(grading.prompt)
    rows, rejected = [], []
    for r in judgments.to_pylist():
        p = build_prompt(tokenizer, template, r, grading.max_doc_tokens, as_text=True)
        ids = tokenizer.encode(p.prompt, add_special_tokens=False)
        if len(ids) > max_seq_len:
            rejected.append({"key": f"{r['query_id']}\t{r['doc_id']}", "reason": TOO_LONG,
                             "detail": f"prompt of {len(ids)} tokens exceeds distill.max_seq_len={max_seq_len}",
                             "record": None})
            continue
        rows.append({"query_id": r["query_id"], "doc_id": r["doc_id"], "input_ids": ids,
                     "grade": int(r["grade"]),
                     "teacher_probs": None if r.get("grade_probs") is None else list(r["grade_probs"])})
    schema = pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("input_ids", pa.list_(pa.int32())),
                        ("grade", pa.int8()), ("teacher_probs", pa.list_(pa.float32()))])
    return pa.Table.from_pylist(rows, schema=schema), rejected


def grade_counts(grades) -> dict[str, int]:
    """Examples per grade, all four listed (a grade the teacher never gave shows as 0)."""
    out = {str(g): 0 for g in GRADES}
    for g in grades:
        out[str(int(g))] += 1
    return out


def balance_examples(examples: pa.Table, mode: str, seed: int = 0) -> tuple[pa.Table, dict]:
    """Counter the grade imbalance (mostly 0s and 1s) before training; adds a per-example `weight`.

    reweight: weights n / (k * n_g) over the k grades present, so every grade carries the same
    total weight and the mean weight stays 1; oversample: rarer grades repeated (then a random
    draw) up to the most common grade's count, shuffled. Returns the table and the grade mix the
    loss sees (weighted counts per grade).
    """
    import numpy as np

    grades = np.asarray(examples.column("grade").to_pylist(), dtype=int)
    present = sorted(set(grades.tolist()))
    weights = np.ones(len(grades))
    if mode == "reweight" and len(grades):
        n_g = {g: int((grades == g).sum()) for g in present}
        weights = np.array([len(grades) / (len(present) * n_g[g]) for g in grades])
    elif mode == "oversample" and len(grades):
        rng = np.random.default_rng(seed)
        top = max(int((grades == g).sum()) for g in present)
        idx = []
        for g in present:
            members = np.flatnonzero(grades == g)
            reps, rest = divmod(top, len(members))
            idx += [*np.tile(members, reps), *rng.choice(members, rest, replace=False)]
        examples = examples.take(rng.permutation(np.asarray(idx)))
        grades, weights = grades[np.asarray(idx)], np.ones(len(idx))
    elif mode != "none":
        raise ValueError(f"balance must be none, reweight or oversample, got {mode!r}")
    examples = examples.append_column("weight", pa.array(weights, pa.float32()))
    mix = {str(g): round(float(weights[grades == g].sum()), 4) for g in GRADES}
    return examples, mix


def deepspeed_config(cfg: DistillConfig, world: int) -> dict:
    ds = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.micro_batch_size * cfg.grad_accum * world,
        "gradient_clipping": 1.0,
        "zero_optimization": {"stage": cfg.zero_stage},
        "bf16": {"enabled": resolve_bf16(cfg.bf16, gpu=cfg.use_gpu)},
        # torch's AdamW on CPU avoids compiling DeepSpeed's cpu_adam op (minutes on a fresh machine).
        "optimizer": {"type": "AdamW", "params": {"lr": cfg.lr, "weight_decay": cfg.weight_decay,
                                                   "torch_adam": not cfg.use_gpu}},
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }
    return merge_dicts(ds, cfg.deepspeed)


def _train_loop(config: dict) -> None:
    """Runs on every Ray Train worker."""
    cfg = DistillConfig.model_validate(config["distill"])
    if not cfg.use_gpu:
        os.environ["DS_ACCELERATOR"] = "cpu"
    import deepspeed
    import ray.train
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    deepspeed.init_distributed(dist_backend="nccl" if cfg.use_gpu else "gloo")
    torch.manual_seed(config["seed"])

    start = raytrain.resume()  # a killed run: weights and epoch from the latest checkpoint
    start_epoch, source, history = start.epoch, start.source or config["base_path"], start.history
    tokenizer = AutoTokenizer.from_pretrained(source)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    if cfg.train_last_layers:
        freeze_below(model, cfg.train_last_layers)
    engine, *_ = deepspeed.initialize(model=model, model_parameters=[p for p in model.parameters() if p.requires_grad],
                                      config=deepspeed_config(cfg, world))
    device = engine.device
    grade_ids = torch.tensor(config["grade_ids"], device=device)
    shard = ray.train.get_dataset_shard("train")
    # Every rank must take the same number of steps, or the collective ops hang.
    per_rank = config["n_examples"] // world
    micro_steps = max(1, per_rank // cfg.micro_batch_size)
    if cfg.max_steps:
        micro_steps = min(micro_steps, cfg.max_steps * cfg.grad_accum)

    for epoch in range(start_epoch, cfg.epochs):
        engine.train()
        total, n = 0.0, 0
        mix = torch.zeros(len(GRADES), dtype=torch.float64)  # weighted grades the loss saw this epoch
        it = shard.iter_batches(batch_size=cfg.micro_batch_size, batch_format="pyarrow", drop_last=True)
        for step, batch in enumerate(it):
            if step >= micro_steps:
                break
            seqs = batch.column("input_ids").to_pylist()
            logits = _last_logits(engine, torch, seqs, pad, device)
            grades = torch.tensor(batch.column("grade").to_pylist(), device=device).long()
            weight = (torch.tensor(batch.column("weight").to_pylist(), device=device).float()
                      if "weight" in batch.column_names else torch.ones(len(seqs), device=device))
            loss = (weight * _example_loss(F, logits, grades, grade_ids, batch, cfg.kl_weight, device)).mean()
            engine.backward(loss)
            engine.step()
            total += float(loss.detach())
            n += 1
            mix.index_add_(0, grades.cpu(), weight.detach().cpu().double())
        metrics = {"epoch": epoch, "train_loss": total / max(n, 1), "micro_steps": n,
                   "loss_grade_mix": _all_reduce_sum(mix, world),
                   **_validate(engine, F, torch, pad, grade_ids, cfg, config, rank, world)}
        history.append(metrics)
        _report(engine, tokenizer, cfg, {**metrics, "history": history}, rank)


def _last_logits(engine, torch, seqs: list[list[int]], pad: int, device):
    """Next-token logits after each prompt."""
    width = max(len(s) for s in seqs)
    # Left padding puts every prompt's last token at position -1; explicit position ids keep
    # each prompt's positions as at inference, where nothing is padded.
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=device)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    out = engine(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1)
    return out.logits[:, -1, :].float()


def _example_loss(F, logits, grades, grade_ids, batch: pa.Table, kl_weight: float, device):
    """Per example: CE on the teacher's grade token, plus kl_weight x KL(teacher || student over grades)."""
    import torch

    loss = F.cross_entropy(logits, grade_ids[grades], reduction="none")
    if kl_weight > 0:
        teacher = torch.tensor(batch.column("teacher_probs").to_pylist(), device=device).float()
        student = logits[:, grade_ids].log_softmax(-1)
        loss = loss + kl_weight * F.kl_div(student, teacher, reduction="none").sum(-1)
    return loss


def _all_reduce_sum(t, world: int) -> dict:
    if world > 1:
        import torch.distributed as dist
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return {str(g): round(float(v), 4) for g, v in zip(GRADES, t.tolist())}


def _validate(engine, F, torch, pad: int, grade_ids, cfg: DistillConfig, config: dict, rank: int, world: int) -> dict:
    """Held-out loss (the training objective, unweighted) and agreement with the teacher's labels.

    Each rank scores every world-th held-out example; all ranks run the same number of forward
    passes (ZeRO-3 gathers parameters collectively in forward), padding their share if needed.
    """
    n = config.get("n_heldout") or 0
    if not n:
        return {"val_loss": None, "val_agreement": None}
    import ray.train

    rows = [r for b in ray.train.get_dataset_shard("heldout").iter_batches(batch_size=256, batch_format="pyarrow")
            for r in b.to_pylist()]
    mine = rows[rank::world]
    mb = cfg.micro_batch_size
    passes = math.ceil(math.ceil(n / world) / mb)
    engine.eval()
    loss_sum, preds = 0.0, []
    with torch.no_grad():
        for i in range(passes):
            chunk = mine[i * mb:(i + 1) * mb]
            real = len(chunk)
            chunk = chunk or rows[:1]  # a dummy pass keeps the ranks in step
            batch = pa.Table.from_pylist(chunk)
            logits = _last_logits(engine, torch, batch.column("input_ids").to_pylist(), pad, engine.device)
            grades = torch.tensor(batch.column("grade").to_pylist(), device=engine.device).long()
            loss = _example_loss(F, logits, grades, grade_ids, batch, cfg.kl_weight, engine.device)[:real]
            probs = logits[:, grade_ids].softmax(-1)[:real]
            loss_sum += float(loss.sum())
            for r, p in zip(chunk[:real], probs.tolist()):
                preds.append((r["query_id"], r["doc_id"], int(r["grade"]), max(range(4), key=lambda g: p[g]),
                              sum(g * x for g, x in enumerate(p))))
    engine.train()
    parts = raytrain.gather((loss_sum, preds), world)
    preds = [x for p in parts for x in p[1]]
    out = {"val_loss": sum(p[0] for p in parts) / max(len(preds), 1), "val_pairs": len(preds), "val_agreement": None}
    if rank == 0 and preds:
        ref = pa.table({"query_id": [p[0] for p in preds], "doc_id": [p[1] for p in preds],
                        "grade": pa.array([p[2] for p in preds], pa.int8())})
        pred = pa.table({"query_id": ref.column("query_id"), "doc_id": ref.column("doc_id"),
                         "grade": pa.array([p[3] for p in preds], pa.int8()),
                         "expected_grade": pa.array([p[4] for p in preds], pa.float64())})
        from ..evaluate.metrics import validation_agreement

        out["val_agreement"] = validation_agreement(ref, pred, config.get("k", 10))
    return out


def freeze_below(model, n: int) -> None:
    """Leave only the top `n` decoder layers and the final norm trainable."""
    base = getattr(model, "model", model)
    layers = getattr(base, "layers", None)
    if layers is None:
        raise ValueError(f"train_last_layers: cannot find the decoder layers of {type(model).__name__}")
    if n > len(layers):
        raise ValueError(f"train_last_layers={n} but the model has {len(layers)} layers")
    for p in model.parameters():
        p.requires_grad_(False)
    for module in [*layers[-n:], getattr(base, "norm", None)]:
        if module is not None:
            for p in module.parameters():
                p.requires_grad_(True)


def _report(engine, tokenizer, cfg: DistillConfig, metrics: dict, rank: int) -> None:
    # ZeRO-3 shards the weights: every rank takes part in gathering them, rank 0 saves.
    state = engine._zero3_consolidated_16bit_state_dict() if cfg.zero_stage == 3 else None

    def save(d: Path) -> None:
        module = engine.module
        module.save_pretrained(d, state_dict=state if state is not None else module.state_dict(), safe_serialization=True)
        tokenizer.save_pretrained(d)

    raytrain.report(metrics, save, rank)


def train(cfg: DistillConfig, grading: GradeConfig, examples: pa.Table, storage: Path, export: Path,
          seed: int = 0, heldout: Optional[pa.Table] = None, k: int = 10) -> dict:
    """Fit the student; the final checkpoint is exported as a Hugging Face folder at `export`.

    `heldout` (training_examples of the held-out judge rows) is scored after every epoch: its
    loss and the agreement with the teacher go into the Ray Train metrics and the history.
    """
    import ray
    from transformers import AutoTokenizer

    base = models.resolve(cfg.base_model)
    tok = AutoTokenizer.from_pretrained(base)
    template = load_template(grading.prompt)
    loop_cfg = {"distill": cfg.model_dump(mode="json"), "base_path": base, "seed": seed,
                "grade_ids": grade_target_ids(tok, template.assistant_prefix),
                "n_heldout": 0 if heldout is None else heldout.num_rows, "k": k}
    counts = grade_counts(examples.column("grade").to_pylist())
    examples, loss_mix = balance_examples(examples, cfg.balance, seed)
    loop_cfg["n_examples"] = examples.num_rows
    datasets = {"train": ray.data.from_arrow(examples)}
    if heldout is not None and heldout.num_rows:
        datasets["heldout"] = ray.data.from_arrow(heldout)
    if not cfg.use_gpu:
        prebuild_shm_op()
    result = raytrain.fit(_train_loop, loop_cfg, cfg, storage, "distill", datasets)
    state = raytrain.export(result, export)
    return {"train_loss": state.get("train_loss"), "history": state.get("history", []), "epochs": cfg.epochs,
            "examples": examples.num_rows, "grade_counts": counts, "balance": cfg.balance,
            "loss_grade_mix": loss_mix, "heldout_examples": loop_cfg["n_heldout"], "metrics": result.metrics}


def prebuild_shm_op(stale_after_s: float = 600.0) -> None:
    """DeepSpeed on CPU JIT-compiles a shared-memory op in its first run (about a minute). Built
    here, once, before the workers start; a lock left by a compile that was killed (Ctrl-C during a
    first run) would otherwise make every later run wait for it forever, so an old one is removed."""
    import time

    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is None:
        return
    try:
        from torch.utils.cpp_extension import _get_build_directory

        lock = Path(_get_build_directory(builder.name, verbose=False)) / "lock"
        if lock.exists() and time.time() - lock.stat().st_mtime > stale_after_s:
            log.warning("removing a stale DeepSpeed build lock left by a killed compile: %s", lock)
            lock.unlink(missing_ok=True)
    except Exception as e:  # a private torch helper: never let the check itself fail a run
        log.debug("could not check the DeepSpeed build lock: %s", e)
    builder.load()


class GenerativeStudent(Student):
    """Trains on the teacher's graded train pairs whose prompt fits max_seq_len (the rest are
    rejected with their reason); validates on the held-out ones after every epoch."""

    kind = "generative"

    def train(self, data: TrainingData, workdir: Path, export: Path) -> Trained:
        import pyarrow.compute as pc
        from transformers import AutoTokenizer

        c = self.cfg
        ok = lambda t: t.filter(pc.equal(t.column("status"), "ok"))  # noqa: E731
        train_rows = ok(data.train)
        tok = AutoTokenizer.from_pretrained(models.resolve(c.base_model))
        examples, rejected = training_examples(train_rows, tok, self.grading, c.max_seq_len)
        # Held-out teacher labels, scored after every epoch (over-long ones are left out of validation).
        heldout = (training_examples(ok(data.heldout), tok, self.grading, c.max_seq_len)[0]
                   if data.heldout is not None else None)
        missing = examples.column("teacher_probs").null_count
        if c.kl_weight > 0 and missing:
            raise ValueError(f"distill: kl_weight={c.kl_weight} needs the teacher's grade distribution (grade_probs), "
                             f"and {missing} of {examples.num_rows} training pairs have none (qrels carry grades "
                             f"only): set kl_weight 0 for them")
        if examples.num_rows < c.num_workers * c.micro_batch_size:
            raise ValueError(f"distill: {examples.num_rows} training examples, fewer than one batch for "
                             f"{c.num_workers} workers x micro_batch_size {c.micro_batch_size}")
        log.info("[distill] %d examples; teacher grades %s", examples.num_rows,
                 grade_counts(examples.column("grade").to_pylist()))
        stats = train(c, self.grading, examples, workdir, export, seed=self.seed, heldout=heldout, k=self.k)
        record = pa.table({"query_id": examples.column("query_id"), "doc_id": examples.column("doc_id"),
                           "grade": examples.column("grade"),
                           "n_tokens": pc.list_value_length(examples.column("input_ids")).cast(pa.int32())},
                          schema=TRAIN_EXAMPLES)
        return Trained(train_rows.num_rows, record, rejected,
                       {"grade_counts": stats["grade_counts"], "balance": c.balance,
                        "train": {k: v for k, v in stats.items() if k != "metrics"}})
