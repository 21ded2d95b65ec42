"""Engine memory: the estimate each engine actor declares to Ray, the check before a run that says
when a machine cannot hold one engine, and an out-of-memory kill said in one line."""
from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys

import pytest
from conftest import ROOT


def _params(folder) -> int:
    total = 0
    for f in folder.glob("*.safetensors"):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    return total


# -- the estimate -------------------------------------------------------------------------------

def test_estimate_is_weights_kv_cache_and_runtime(tiny_model, monkeypatch):
    from pathlib import Path

    from labeler.config import EngineConfig
    from labeler.engines import memory as m

    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    params = _params(Path(tiny_model))
    assert m.model_params(tiny_model) == params
    est = m.engine_memory(EngineConfig(model=tiny_model, dtype="float32", kv_cache_gib=2))
    assert est.weights == params * 4 and est.kv_cache == 2 << 30
    assert est.runtime == int(m.VLLM_RUNTIME + m.VLLM_RUNTIME_PER_WEIGHT * est.weights)
    assert est.weights + est.kv_cache + est.runtime <= est.total < est.weights + est.kv_cache + est.runtime + 1e8
    half = m.engine_memory(EngineConfig(model=tiny_model, dtype="bfloat16", kv_cache_gib=2))
    assert half.weights == params * 2 and half.total < est.total
    # vLLM's own variable wins over the config, as in the engine itself.
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "3")
    assert m.engine_memory(EngineConfig(model=tiny_model, dtype="float32")).kv_cache == 3 << 30
    # Engine processes hold torch again.
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE")
    apart = m.engine_memory(EngineConfig(model=tiny_model, dtype="float32", in_process=False))
    assert apart.runtime - m.VLLM_RUNTIME_PER_WEIGHT * apart.weights == pytest.approx(m.VLLM_PROCESSES_RUNTIME, abs=1)
    assert "weights" in est.parts() and "KV cache 2.1" in est.parts()


def test_configured_memory_and_what_declares_nothing(tiny_model):
    from labeler.config import EngineConfig
    from labeler.engines.memory import config_params, engine_memory

    set_ = engine_memory(EngineConfig(model=tiny_model, memory_gb=3.5))
    assert set_.total == 3_500_000_000 and set_.configured and set_.parts() == "engine.memory_gb"
    assert engine_memory(EngineConfig(model="gpt-4o-mini", backend="openai")) is None
    assert engine_memory(EngineConfig(model=tiny_model, gpus_per_actor=1)) is None  # weights on the GPU
    assert engine_memory(EngineConfig(model=tiny_model, gpus_per_actor=1, memory_gb=8)).total == 8e9
    assert engine_memory(EngineConfig(model="/no/such/model")) is None
    # A decoder's shape alone (SmolLM2-135M's config) gives its parameter count.
    smol = {"hidden_size": 576, "num_hidden_layers": 30, "vocab_size": 49152, "intermediate_size": 1536,
            "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64, "tie_word_embeddings": True}
    assert config_params(smol) == 134_515_008


def test_tied_output_head_is_counted_once(tmp_path):
    from labeler.engines.memory import folder_params

    def write(name, tensors):
        header = json.dumps({k: {"dtype": "BF16", "shape": s, "data_offsets": [0, 0]} for k, s in tensors.items()}).encode()
        (tmp_path / name).write_bytes(struct.pack("<Q", len(header)) + header)

    write("model.safetensors", {"model.embed_tokens.weight": [100, 8], "lm_head.weight": [100, 8], "w": [8, 8]})
    (tmp_path / "config.json").write_text(json.dumps({"tie_word_embeddings": False}))
    assert folder_params(tmp_path) == 1664
    (tmp_path / "config.json").write_text(json.dumps({"tie_word_embeddings": True}))
    assert folder_params(tmp_path) == 864


def test_memory_gb_is_validated_and_runtime_only(tiny_model):
    from pydantic import ValidationError

    from labeler.config import ENGINE_RUNTIME_FIELDS, EngineConfig

    with pytest.raises(ValidationError, match="more than the KV cache"):
        EngineConfig(model=tiny_model, memory_gb=1.0, kv_cache_gib=1)
    with pytest.raises(ValidationError):
        EngineConfig(model=tiny_model, memory_gb=0)
    EngineConfig(model=tiny_model, memory_gb=1.0, gpus_per_actor=1)  # a GPU engine's cache is on the GPU
    assert "memory_gb" in ENGINE_RUNTIME_FIELDS  # changing it redoes no finished stage


# -- the check before a run ---------------------------------------------------------------------

def test_preflight_says_in_one_line_when_one_engine_does_not_fit(tiny_model):
    from labeler.config import EngineConfig
    from labeler.preflight import engine_problems, memory_problem

    assert memory_problem(EngineConfig(model=tiny_model, dtype="float32"), "judge.engine") is None
    big = memory_problem(EngineConfig(model=tiny_model, memory_gb=100_000), "judge.engine")
    assert big.startswith("judge.engine.memory_gb: one engine asks for 100000.0 GB, this machine has ")
    assert "\n" not in big
    huge = engine_problems(EngineConfig(model=tiny_model, kv_cache_gib=100_000), "synthesize.engine")
    assert len(huge) == 1 and "\n" not in huge[0]
    assert huge[0].startswith("synthesize.engine: one engine needs ~")
    assert "set synthesize.engine.memory_gb" in huge[0] and "smaller model" in huge[0]


def test_validate_names_an_engine_the_machine_cannot_hold(tiny_config):
    _, path = tiny_config
    path.write_text(path.read_text().replace("max_num_seqs: 16, batch_size: 8}\n  grading",
                                             "max_num_seqs: 16, batch_size: 8, memory_gb: 100000}\n  grading"))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    r = subprocess.run([sys.executable, "-m", "labeler.cli", "validate", str(path)], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 2
    lines = [x for x in r.stderr.splitlines() if "memory" in x]
    assert len(lines) == 1 and lines[0].startswith("error: judge.engine.memory_gb: one engine asks for 100000.0 GB")


# -- what Ray is asked for ----------------------------------------------------------------------

def test_declared_memory_reaches_the_engine_actors(ray_local, tiny_model):
    """The pool's actors are scheduled with the memory the engine needs (Ray's assigned resources),
    the pool holds no more actors than memory allows, and a need no node holds is an error."""
    import ray

    from labeler.config import EngineConfig
    from labeler.raycluster import node_memory, pool_args

    class Where:
        def __call__(self, batch):
            import ray
            got = ray.get_runtime_context().get_assigned_resources()
            return {"id": batch["id"], "memory": [got.get("memory", 0.0)] * len(batch["id"])}

    engine = EngineConfig(model=tiny_model, cpus_per_actor=0.5, num_actors=4)
    need = 300_000_000
    pool = pool_args(engine, memory=need, key="judge.engine")
    assert pool["memory"] == need
    rows = ray.data.range(4, override_num_blocks=2).map_batches(Where, batch_size=2, **pool).take_all()
    assert {r["memory"] for r in rows} == {need}

    node = max(node_memory())
    assert pool_args(engine, memory=int(node * 0.6))["compute"].max_size == 1  # one engine of 60% fits
    with pytest.raises(ValueError, match=r"judge.engine: one engine needs ~.* no Ray node has that much"):
        pool_args(engine, memory=int(node * 2), key="judge.engine")


# -- an out-of-memory kill ----------------------------------------------------------------------

OOM_TEXT = ("Task was killed due to the node running low on memory.\nMemory on the node (IP: 10.0.0.5, ID: abc) was "
            "23.10GB used / 24.00GB limit (0.962). (job ID=01000000, lease ID=ff, "
            "task name=MapWorker(MapBatches(EngineWorker)).__init__, required resources={}, pid=4242, "
            "actual memory used=11.20GB, worker ID=ee)")


def _actor_died(text=OOM_TEXT, exit_type="NODE_OUT_OF_MEMORY"):
    """Ray's error for an actor whose process died, as the driver receives it."""
    from ray.core.generated.common_pb2 import ActorDiedErrorContext
    from ray.exceptions import ActorDiedError

    return ActorDiedError(ActorDiedErrorContext(
        class_name="MapWorker(MapBatches(EngineWorker))", actor_id=b"\x01" * 16, pid=4242,
        error_message=f"The actor is dead because its worker process has died. Worker exit type: "
                      f"{exit_type} Worker exit detail: {text}"))


def test_memory_kill_is_found_through_wrapping_errors():
    from ray.exceptions import OutOfMemoryError

    from labeler.raycluster import memory_kill

    k = memory_kill(_actor_died())
    assert (k.process, k.pid, k.used_gb, k.node_used_gb, k.node_limit_gb) == ("EngineWorker", 4242, 11.2, 23.1, 24.0)
    try:  # as Ray Data raises it: another error whose cause is Ray's
        try:
            raise OutOfMemoryError(OOM_TEXT.replace("task name=MapWorker(MapBatches(EngineWorker)).__init__",
                                                    "task name=ReadJSON"))
        except OutOfMemoryError as e:
            raise RuntimeError("Execution failed") from e
    except RuntimeError as wrapped:
        k = memory_kill(wrapped)
    assert k.process == "ReadJSON" and k.used_gb == 11.2
    # A worker that died of something else (Ray's text lists the kernel's OOM killer as one
    # possible cause) is not a memory kill.
    other = _actor_died("Some common causes include: (1) the process was killed by the OOM killer due to high "
                        "memory usage, (2) ray stop --force was called", exit_type="SYSTEM_ERROR")
    assert memory_kill(other) is None and memory_kill(RuntimeError("x")) is None


def test_stage_turns_a_memory_kill_into_one_line(tmp_path):
    from labeler.raycluster import KilledForMemory
    from labeler.stages.runner import stream_into

    class Writer:
        stage, schema = "judge", None

    class Dataset:
        def iter_internal_ref_bundles(self):
            raise _actor_died()
            yield

    with pytest.raises(KilledForMemory) as e:
        stream_into(Writer(), Dataset(), total=10, engine_key="judge.engine", declared=2.3e9)
    line = str(e.value)
    assert "\n" not in line
    assert line.startswith("[judge] Ray killed the actor EngineWorker (pid 4242, using 11.2 GB) when its node ran "
                           "out of memory (23.1 of 24.0 GB used)")
    assert "judge.engine.memory_gb" in line and "~2.3 GB" in line and "judge.engine.max_num_seqs" in line
    assert "judge.engine.num_actors" in line


@pytest.mark.parametrize("verbose", [False, True])
def test_command_prints_one_line_and_exits_4(monkeypatch, capsys, labeler_logging, verbose):
    import labeler.cli as cli
    from labeler.raycluster import KilledForMemory

    def dispatch(args):
        try:
            raise _actor_died()
        except Exception as e:
            raise KilledForMemory("[judge] Ray killed the actor EngineWorker; set judge.engine.memory_gb") from e

    monkeypatch.setattr(cli, "_dispatch", dispatch)
    rc = cli._main(["validate", "x.yaml"] + (["-v"] if verbose else []))
    err = capsys.readouterr().err
    assert rc == cli.EXIT_OUT_OF_MEMORY == 4
    assert err.strip().splitlines()[-1] == "error: [judge] Ray killed the actor EngineWorker; set judge.engine.memory_gb"
    assert ("Traceback" in err) == verbose
    # Ray's own error from outside a stage (distill's trainers, a read task) is said the same way.
    monkeypatch.setattr(cli, "_dispatch", lambda args: (_ for _ in ()).throw(_actor_died()))
    assert cli._main(["validate", "x.yaml"]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: Ray killed the actor EngineWorker (pid 4242, using 11.2 GB)")
