"""The cluster manifests and example configs: they parse, carry what KubeRay / the launcher need,
and offer the resources the code asks for (so the autoscaler can ever satisfy a GPU stage)."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import tomllib
import yaml

from labeler.config import load_config

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "cluster"
KNOWN = {"CPU", "GPU", "memory", "object_store_memory"}


def _k8s_quantity(v) -> float:
    s = str(v)
    return float(s[:-1]) / 1000 if s.endswith("m") else float(s)


def kuberay_groups(spec: dict) -> dict[str, dict]:
    """group name -> {"CPU", "GPU", custom..., "min", "max", "env", "mounts"} as Ray would see it."""
    out = {}
    for name, g in [("head", spec["headGroupSpec"]), *[(w["groupName"], w) for w in spec["workerGroupSpecs"]]]:
        params = g.get("rayStartParams", {})
        c = g["template"]["spec"]["containers"][0]
        limits = c["resources"]["limits"]
        res = {"CPU": _k8s_quantity(params.get("num-cpus", limits["cpu"])),
               "GPU": _k8s_quantity(params.get("num-gpus", limits.get("nvidia.com/gpu", 0)))}
        res.update(json.loads(params["resources"]) if "resources" in params else {})
        out[name] = {"res": res, "min": g.get("minReplicas", 1 if name == "head" else 0),
                     "max": g.get("maxReplicas", 1), "env": {e["name"]: e.get("value") for e in c.get("env", [])},
                     "mounts": {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])},
                     "volumes": {v["name"]: v for v in g["template"]["spec"].get("volumes", [])}}
    return out


def launcher_groups(cfg: dict) -> dict[str, dict]:
    opts = " ".join(cfg["docker"]["run_options"])
    env = dict(tok.split("=", 1) for tok in shlex.split(opts) if "=" in tok and not tok.startswith("-"))
    return {name: {"res": {"GPU": 0, **t["resources"]}, "min": t["min_workers"], "max": t["max_workers"],
                   "env": env, "mounts": {"/mnt/labeler": "shared"} if "/mnt/labeler:/mnt/labeler" in opts else {}}
            for name, t in cfg["available_node_types"].items()}


def all_group_sets() -> dict[str, dict]:
    rc = [d for d in yaml.safe_load_all((CLUSTER / "kuberay-raycluster.yaml").read_text()) if d["kind"] == "RayCluster"][0]
    rj = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    cl = yaml.safe_load((CLUSTER / "cluster-launcher.yaml").read_text())
    return {"raycluster": kuberay_groups(rc["spec"]), "rayjob": kuberay_groups(rj["spec"]["rayClusterSpec"]),
            "launcher": launcher_groups(cl)}


def stage_requests(cfg, monkeypatch) -> dict[str, dict]:
    """What each GPU/CPU stage asks Ray for, from the code that asks (pool_args, distill's ScalingConfig).

    The cluster starts with no GPUs (autoscaling from 0): that is the case the requests must survive.
    """
    import ray

    from labeler.raycluster import pool_args

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})
    reqs = {}
    for stage, eng in [("synthesize", cfg.synthesize.engine), ("judge", cfg.judge.engine)]:
        p = pool_args(eng)
        strategy = p["compute"]
        reqs[stage] = {"CPU": p.get("num_cpus", 0), "GPU": p.get("num_gpus", 0), "count": strategy.max_size}
    d = cfg.distill
    reqs["distill"] = {"CPU": d.cpus_per_worker, "GPU": 1 if d.use_gpu else 0, "count": d.num_workers}
    reqs["mine"] = {"CPU": 1, "GPU": 0, "count": 1}
    return reqs


def test_manifests_parse_with_required_fields():
    docs = list(yaml.safe_load_all((CLUSTER / "kuberay-raycluster.yaml").read_text()))
    rc = [d for d in docs if d["kind"] == "RayCluster"][0]
    pvc = [d for d in docs if d["kind"] == "PersistentVolumeClaim"][0]
    assert rc["apiVersion"] == "ray.io/v1" and rc["spec"]["enableInTreeAutoscaling"] is True
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    rj = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    assert rj["apiVersion"] == "ray.io/v1" and rj["kind"] == "RayJob"
    assert rj["spec"]["shutdownAfterJobFinishes"] is True and rj["spec"]["rayClusterSpec"]["enableInTreeAutoscaling"]
    renv = yaml.safe_load(rj["spec"]["runtimeEnvYAML"])
    assert "working_dir" in renv
    cl = yaml.safe_load((CLUSTER / "cluster-launcher.yaml").read_text())
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type", "idle_timeout_minutes",
                "head_start_ray_commands", "worker_start_ray_commands"):
        assert key in cl, key
    assert cl["head_node_type"] in cl["available_node_types"]
    assert "--autoscaling-config" in " ".join(cl["head_start_ray_commands"])
    for spec in (rc["spec"], rj["spec"]["rayClusterSpec"]):
        assert spec["rayVersion"] == __import__("ray").__version__  # images and client must match
        assert spec["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"  # the job server


def test_rayjob_entrypoint_names_an_existing_job_and_config():
    rj = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    argv = shlex.split(rj["spec"]["entrypoint"])
    assert argv[0] == "python" and (ROOT / argv[1]).is_file()
    cfg_path = argv[argv.index("--config") + 1]
    load_config(ROOT / cfg_path)  # validates
    assert argv[argv.index("--out") + 1].startswith("s3://")  # outputs outlive the cluster


@pytest.mark.parametrize("which", ["raycluster", "rayjob", "launcher"])
def test_groups_cpu_head_cpu_workers_and_gpu_from_zero(which):
    groups = all_group_sets()[which]
    head = groups.pop("head")
    assert head["res"]["CPU"] == 0 and head["res"]["GPU"] == 0  # the head runs no stage work
    gpu = [g for g in groups.values() if g["res"]["GPU"] > 0]
    cpu = [g for g in groups.values() if g["res"]["GPU"] == 0]
    assert len(gpu) == 1 and len(cpu) == 1
    assert gpu[0]["min"] == 0 and gpu[0]["max"] >= 1
    assert cpu[0]["min"] >= 1 and cpu[0]["res"]["CPU"] >= 2  # a stage's CPU work never waits on a scale-up
    for g in [head, *groups.values()]:
        assert set(g["res"]) <= KNOWN, f"{which}: resource names the code never requests: {set(g['res']) - KNOWN}"
        # Workers get local paths (staging folder, model cache): one shared folder, same path everywhere.
        assert g["mounts"].get("/mnt/labeler") and g["env"]["LABELER_STAGING"].startswith("/mnt/labeler/")
        assert g["env"]["LABELER_CACHE"].startswith("/mnt/labeler/")


@pytest.mark.parametrize("which", ["raycluster", "rayjob", "launcher"])
def test_every_gpu_stage_of_the_gpu_config_fits_a_worker_group(which, monkeypatch):
    cfg = load_config(ROOT / "configs/gpu-cluster.yaml")
    assert cfg.ray.address == "auto" and cfg.distill.use_gpu
    assert cfg.judge.engine.backend == "vllm" and cfg.judge.engine.gpus_per_actor == 1
    groups = {k: v for k, v in all_group_sets()[which].items() if k != "head"}
    reqs = stage_requests(cfg, monkeypatch)
    assert reqs["judge"]["GPU"] == 1 and reqs["distill"]["GPU"] == 1  # GPU stages do ask for GPUs
    for stage, r in reqs.items():
        fits = [g for g in groups.values() if g["res"]["GPU"] >= r["GPU"] and g["res"]["CPU"] >= r["CPU"]]
        assert fits, f"{which}: no worker group can host one {stage} worker {r}"
        if r["GPU"]:
            def per_node(g):
                return min(g["res"]["GPU"] // r["GPU"], g["res"]["CPU"] // max(r["CPU"], 1e-9))
            capacity = sum(per_node(g) * g["max"] for g in fits)
            # The pool may grow to num_actors (or num_workers for Train): the groups must reach it.
            assert capacity >= r["count"], f"{which}: {stage} wants {r['count']}, groups allow {capacity}"


def test_configs_parse_and_openai_teacher_is_priced():
    cfg = load_config(ROOT / "configs/openai-teacher.yaml")
    e = cfg.judge.engine
    assert e.backend == "openai" and e.base_url.startswith("http") and e.api_key_env
    assert e.usd_per_1m_input_tokens > 0 and e.usd_per_1m_output_tokens > 0
    assert "api_key:" not in (ROOT / "configs/openai-teacher.yaml").read_text()  # no secrets in configs


def test_runtime_envs_upload_the_code_but_not_the_venv():
    base = yaml.safe_load((ROOT / "jobs/runtime_env.yaml").read_text())
    pip = yaml.safe_load((ROOT / "jobs/runtime_env-pip.yaml").read_text())
    for env in (base, pip):
        assert ".venv/" in env["excludes"] and "out/" in env["excludes"]
        assert not any(x.startswith(("labeler", "jobs", "configs")) for x in env["excludes"])
    # The pip variant installs the project's dependencies, all but Ray (that comes with the image).
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert {d for d in deps if not d.startswith("ray")} <= set(pip["pip"]["packages"])
    assert not any(p.startswith("ray") for p in pip["pip"]["packages"])


def test_one_job_entrypoint_per_stage():
    from labeler.cli.submit import STAGES as SUBMIT_STAGES
    from labeler.pipeline import STAGES

    assert SUBMIT_STAGES == STAGES
    for s in [*STAGES, "pipeline"]:
        text = (ROOT / "jobs" / f"{s}.py").read_text()
        assert "job_main" in text and "__main__" in text
        assert (f'stage="{s}"' in text) if s != "pipeline" else ("stage=None" in text)
