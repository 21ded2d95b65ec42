"""Distil teacher judgments into a small causal LM with Ray Train + DeepSpeed.

The student learns to emit the grade token right after the very prompt it will be labeled with
(labeler.grading), so labeling with it is the same one-forward-pass logprob read as the teacher.
Loss: cross-entropy on the teacher's most likely grade, plus an optional KL term to the
teacher's grade distribution. The same code runs on CPU workers (gloo) and GPUs (nccl).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa

from . import models
from .config import DistillConfig, GradeConfig, merge_dicts
from .grading import build_prompt, grade_target_ids
from .prompts import load_template


def training_examples(judgments: pa.Table, tokenizer, grading: GradeConfig, max_seq_len: int) -> tuple[pa.Table, list[dict]]:
    """Tokenised prompts with the teacher's grade and distribution; over-long ones are rejected."""
    template = load_template(grading.prompt)
    rows, rejected = [], []
    for r in judgments.to_pylist():
        p = build_prompt(tokenizer, template, r, grading.max_doc_tokens, as_text=True)
        ids = tokenizer.encode(p.prompt, add_special_tokens=False)
        if len(ids) > max_seq_len:
            rejected.append({"key": f"{r['query_id']}\t{r['doc_id']}", "reason": "too_long",
                             "detail": f"prompt of {len(ids)} tokens exceeds distill.max_seq_len={max_seq_len}",
                             "record": None})
            continue
        rows.append({"query_id": r["query_id"], "doc_id": r["doc_id"], "input_ids": ids,
                     "grade": int(r["grade"]), "teacher_probs": list(r["grade_probs"])})
    schema = pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("input_ids", pa.list_(pa.int32())),
                        ("grade", pa.int8()), ("teacher_probs", pa.list_(pa.float32()))])
    return pa.Table.from_pylist(rows, schema=schema), rejected


def deepspeed_config(cfg: DistillConfig, world: int) -> dict:
    ds = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.micro_batch_size * cfg.grad_accum * world,
        "gradient_clipping": 1.0,
        "zero_optimization": {"stage": cfg.zero_stage},
        "bf16": {"enabled": cfg.bf16},
        # torch's AdamW on CPU avoids compiling DeepSpeed's cpu_adam op (~2 minutes).
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

    start_epoch, source, history = 0, config["base_path"], []
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:  # resuming a killed run: weights and epoch from the latest checkpoint
        with ckpt.as_directory() as d:
            state = json.loads((Path(d) / "train_state.json").read_text())
            start_epoch, history = state["epoch"] + 1, state.get("history", [])
            source = tempfile.mkdtemp(prefix="labeler-resume-")
            shutil.copytree(d, source, dirs_exist_ok=True)
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
        it = shard.iter_batches(batch_size=cfg.micro_batch_size, batch_format="pyarrow", drop_last=True)
        for step, batch in enumerate(it):
            if step >= micro_steps:
                break
            seqs = batch.column("input_ids").to_pylist()
            width = max(len(s) for s in seqs)
            # Left padding puts every prompt's last token at position -1; explicit position ids keep
            # each prompt's positions as at inference, where nothing is padded.
            ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=device)
            mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)
            pos = (mask.cumsum(1) - 1).clamp(min=0)
            out = engine(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1)
            logits = out.logits[:, -1, :].float()
            target = grade_ids[torch.tensor(batch.column("grade").to_pylist(), device=device).long()]
            loss = F.cross_entropy(logits, target)
            if cfg.kl_weight > 0:
                teacher = torch.tensor(batch.column("teacher_probs").to_pylist(), device=device).float()
                student = logits[:, grade_ids].log_softmax(-1)
                loss = loss + cfg.kl_weight * F.kl_div(student, teacher, reduction="batchmean")
            engine.backward(loss)
            engine.step()
            total += float(loss.detach())
            n += 1
        metrics = {"epoch": epoch, "train_loss": total / max(n, 1), "micro_steps": n}
        history.append(metrics)
        _report(engine, tokenizer, cfg, {**metrics, "history": history}, rank)


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
    import ray.train
    from ray.train import Checkpoint

    state = engine._zero3_consolidated_16bit_state_dict() if cfg.zero_stage == 3 else None
    with tempfile.TemporaryDirectory(prefix="labeler-ckpt-") as d:
        checkpoint = None
        if rank == 0:
            module = engine.module
            module.save_pretrained(d, state_dict=state if state is not None else module.state_dict(),
                                   safe_serialization=True)
            tokenizer.save_pretrained(d)
            (Path(d) / "train_state.json").write_text(json.dumps(metrics))
            checkpoint = Checkpoint.from_directory(d)
        ray.train.report(metrics, checkpoint=checkpoint)


def train(cfg: DistillConfig, grading: GradeConfig, examples: pa.Table, storage: Path, export: Path,
          seed: int = 0) -> dict:
    """Fit the student; the final checkpoint is exported as a Hugging Face folder at `export`."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from transformers import AutoTokenizer

    base = models.resolve(cfg.base_model)
    tok = AutoTokenizer.from_pretrained(base)
    template = load_template(grading.prompt)
    loop_cfg = {"distill": cfg.model_dump(mode="json"), "base_path": base, "seed": seed,
                "grade_ids": grade_target_ids(tok, template.assistant_prefix),
                "n_examples": examples.num_rows}
    env = {"OMP_NUM_THREADS": str(max(1, int(cfg.cpus_per_worker)))}
    if not cfg.use_gpu:
        env["DS_ACCELERATOR"] = "cpu"
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config=loop_cfg,
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cfg.cpus_per_worker,
                                                           **({"GPU": 1} if cfg.use_gpu else {})}),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        run_config=RunConfig(name="distill", storage_path=str(storage.resolve()),
                             checkpoint_config=CheckpointConfig(num_to_keep=2),
                             failure_config=FailureConfig(max_failures=1)),
        datasets={"train": ray.data.from_arrow(examples)},
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"distillation finished without a checkpoint (error: {result.error})")
    with result.checkpoint.as_directory() as d:
        if export.exists():
            shutil.rmtree(export)
        shutil.copytree(d, export)
    state = json.loads((export / "train_state.json").read_text())
    return {"train_loss": state.get("train_loss"), "history": state.get("history", []), "epochs": cfg.epochs,
            "examples": examples.num_rows, "metrics": result.metrics}
