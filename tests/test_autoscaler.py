"""Autoscaling: a labeling pool's GPU request adds a GPU-typed worker node, which goes once idle.

Ray's fake multi-node provider stands in for a cloud: it "launches" a node by starting a local
raylet with the node type's resources. The cluster starts with no GPU (like the manifests' GPU
group, minimum 0); the request is the one `pool_args` makes for a label engine with
gpus_per_actor=1, run through Ray Data as the label stage runs it.
"""
from __future__ import annotations

import time

import pytest
from ray_head import RayHead

pytestmark = pytest.mark.slow

GPU_TYPE, CPU_TYPE = "gpu_worker", "cpu_worker"
CONFIG = {
    "cluster_name": "labeler-fake",
    "max_workers": 2,
    "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                 "disable_launch_config_check": True},
    "available_node_types": {
        "ray.head.default": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
        # A CPU type that fits the actor's CPU but not its GPU: the autoscaler must not pick it.
        CPU_TYPE: {"resources": {"CPU": 1, "object_store_memory": 80_000_000}, "node_config": {},
                   "min_workers": 0, "max_workers": 1},
        GPU_TYPE: {"resources": {"CPU": 1, "GPU": 1, "object_store_memory": 80_000_000}, "node_config": {},
                   "min_workers": 0, "max_workers": 1},
    },
    "head_node_type": "ray.head.default",
    "auth": {}, "upscaling_speed": 1.0, "idle_timeout_minutes": 0.1, "docker": {},
    "initialization_commands": [], "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
    "head_start_ray_commands": [], "worker_start_ray_commands": [], "file_mounts": {}, "cluster_synced_files": [],
    "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
}


def alive_nodes(ray):
    return [n for n in ray.nodes() if n["Alive"]]


def test_gpu_node_added_for_label_pool_and_removed_when_idle():
    import ray

    from labeler.config import EngineConfig
    from labeler.raycluster import pool_args

    # Defined here so Ray pickles it by value (workers cannot import this test module).
    class Where:
        """Stands in for the label stage's GradeWorker: reports where it runs and which GPU it got."""

        def __call__(self, batch):
            import ray
            ctx = ray.get_runtime_context()
            n = len(batch["id"])
            return {"id": batch["id"], "node": [ctx.get_node_id()] * n,
                    "gpus": [",".join(map(str, ray.get_gpu_ids()))] * n}

    head = RayHead(num_cpus=1, autoscaling_config=CONFIG, object_store_memory=100_000_000)
    t0 = time.time()
    try:
        head.wait_ready(120)
        ray.init(address=head.gcs_address, log_to_driver=False)
        assert ray.cluster_resources().get("GPU", 0) == 0 and len(alive_nodes(ray)) == 1
        engine = EngineConfig(backend="vllm", model="student", gpus_per_actor=1, cpus_per_actor=1, num_actors=1)
        pool = pool_args(engine)
        assert pool["num_gpus"] == 1  # what the label stage asks for on a cluster without GPUs yet

        t_req = time.time()
        ds = ray.data.range(4, override_num_blocks=2).map_batches(Where, batch_size=2, **pool)
        rows = ds.take_all()
        t_up = time.time() - t_req
        nodes = {n["NodeID"]: n for n in ray.nodes()}
        used = {r["node"] for r in rows}
        assert len(rows) == 4 and len(used) == 1
        worker = nodes[used.pop()]
        assert worker["Resources"].get("GPU") == 1  # the pool ran on the GPU node the autoscaler added
        assert {r["gpus"] for r in rows} == {"0"}
        workers = [n for n in alive_nodes(ray) if "node:__internal_head__" not in n["Resources"]]
        assert [n["Resources"].get("GPU", 0) for n in workers] == [1]  # no CPU-typed node was launched

        # The dataset is done and its actors gone: the idle GPU node is terminated.
        deadline = time.time() + 120
        while time.time() < deadline and ray.cluster_resources().get("GPU", 0) > 0:
            time.sleep(2)
        t_down = time.time() - t_req - t_up
        assert ray.cluster_resources().get("GPU", 0) == 0, "the idle GPU node was not removed"
        assert not any(n["NodeID"] == worker["NodeID"] and n["Alive"] for n in ray.nodes())
        print(f"\nscale-up + pool run {t_up:.1f}s, scale-down {t_down:.1f}s, total {time.time() - t0:.1f}s")
    finally:
        ray.shutdown()
        head.stop()
