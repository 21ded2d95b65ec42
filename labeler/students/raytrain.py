"""The Ray Train plumbing every student kind shares: the trainer, checkpoints that a killed run
resumes from, per-epoch reports, the export of the final checkpoint, and collectives.

Inside a training loop: `start = resume("prefix")` gives the epoch to start at, the folder to
load weights from and the history so far; `report(metrics, save, rank)` saves a checkpoint (rank
0 writes it) and reports the metrics. On the driver: `fit(...)` runs the loop on the workers and
`export(result, dest)` copies the final checkpoint to the student's export folder.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

STATE_FILE = "train_state.json"


@dataclass
class Start:
    epoch: int = 0
    source: Optional[str] = None          # a resumed checkpoint's folder (None: the base model)
    history: list = field(default_factory=list)


def resume(prefix: str = "labeler-resume-") -> Start:
    """Where this run starts: after the latest checkpoint's epoch when Ray Train hands one back."""
    import ray.train

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return Start()
    with ckpt.as_directory() as d:
        state = json.loads((Path(d) / STATE_FILE).read_text())
        source = tempfile.mkdtemp(prefix=prefix)
        shutil.copytree(d, source, dirs_exist_ok=True)
    return Start(state["epoch"] + 1, source, state.get("history", []))


def worker(resources, seed: int) -> tuple[int, int]:
    """On a Ray Train worker: its threads (its share of CPUs), the seed; returns (rank, world)."""
    import ray.train
    import torch

    torch.set_num_threads(max(1, int(resources.cpus_per_worker)))
    torch.manual_seed(seed)
    ctx = ray.train.get_context()
    return ctx.get_world_rank(), ctx.get_world_size()


def load_optimizer(opt, start: Start) -> None:
    """A resumed run continues with its optimizer's state (saved as optimizer.pt beside the weights)."""
    import torch

    if start.source and (Path(start.source) / "optimizer.pt").is_file():
        opt.load_state_dict(torch.load(Path(start.source) / "optimizer.pt", weights_only=True))


def report(metrics: dict, save: Callable[[Path], None], rank: int, prefix: str = "labeler-ckpt-") -> None:
    """One epoch's metrics, with a checkpoint that rank 0 writes through `save(folder)`."""
    import ray.train
    from ray.train import Checkpoint

    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        checkpoint = None
        if rank == 0:
            save(Path(d))
            (Path(d) / STATE_FILE).write_text(json.dumps(metrics))
            checkpoint = Checkpoint.from_directory(d)
        ray.train.report(metrics, checkpoint=checkpoint)


def fit(loop: Callable[[dict], None], loop_config: dict, resources, storage: Path, name: str, datasets: dict,
        *, env: Optional[dict] = None, split: tuple[str, ...] = ("train",)):
    """Run `loop` on `resources.num_workers` Ray Train workers (gloo on CPUs, NCCL on GPUs), the
    `split` datasets divided between them (the others whole on every worker); up to 1 worker
    failure is retried from the latest checkpoint."""
    import os

    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if env:  # read by every worker process at start (they inherit the driver's environment)
        os.environ.update({k: v for k, v in env.items() if k not in os.environ})
    trainer = TorchTrainer(
        loop, train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=resources.num_workers, use_gpu=resources.use_gpu,
                                     resources_per_worker={"CPU": resources.cpus_per_worker,
                                                           **({"GPU": 1} if resources.use_gpu else {})}),
        torch_config=TorchConfig(backend="nccl" if resources.use_gpu else "gloo"),
        dataset_config=DataConfig(datasets_to_split=[d for d in split if d in datasets]),
        run_config=RunConfig(name=name, storage_path=str(Path(storage).resolve()),
                             checkpoint_config=CheckpointConfig(num_to_keep=2),
                             failure_config=FailureConfig(max_failures=1)),
        datasets=datasets,
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"{name}: training finished without a checkpoint (error: {result.error})")
    return result


def export(result_or_checkpoint, dest: Path, drop: tuple[str, ...] = ()) -> dict:
    """Copy a checkpoint (a fit's final one by default) to `dest`, replacing it; returns its training state."""
    dest = Path(dest)
    ckpt = getattr(result_or_checkpoint, "checkpoint", None) or result_or_checkpoint
    with ckpt.as_directory() as d:
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(d, dest)
    for name in drop:  # training state that is not part of the model
        (dest / name).unlink(missing_ok=True)
    return json.loads((dest / STATE_FILE).read_text())


def gather(obj, world: int) -> list:
    """`obj` of every rank, in rank order (all ranks must call it)."""
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def average_gradients(params, world: int) -> None:
    """All-reduce the gradients of `params` to their mean over the ranks. For models that run
    several forward passes per step (a bi-encoder embeds queries and documents apart), where
    DDP's one-forward-per-backward bookkeeping does not apply; a parameter no loss reached
    (a pooler mean pooling skips) counts as a zero gradient on that rank."""
    if world == 1:
        return
    import torch
    import torch.distributed as dist

    for p in params:
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad /= world


def stripe(name: str, rank: int, world: int, batch_size: int):
    """This rank's share (every world-th row) of an unsplit dataset, in batches of rows."""
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
