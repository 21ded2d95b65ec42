"""`ray.address: null` starts a Ray of the command's own, even when a cluster started with
`ray start` runs on the same machine (a bare ray.init would attach to it and refuse num_cpus)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ray_head import VENV_BIN, free_port

CURRENT = Path("/tmp/ray/ray_current_cluster")  # where `ray start` tells a bare ray.init to connect


def test_a_local_run_starts_its_own_ray_beside_a_running_cluster():
    port = free_port()
    before = CURRENT.read_text() if CURRENT.is_file() else None
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen([str(VENV_BIN / "ray"), "start", "--head", "--block", f"--port={port}", "--num-cpus=1",
                             "--include-dashboard=false", "--disable-usage-stats"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (CURRENT.is_file() and CURRENT.read_text().strip().endswith(f":{port}")):
            assert head.poll() is None and time.time() < deadline, "ray start --head did not come up"
            time.sleep(0.5)
        code = ("import ray\nfrom labeler.config import RayConfig\nfrom labeler.raycluster import init_ray\n"
                "init_ray(RayConfig(num_cpus=2))\nprint(ray.cluster_resources()['CPU'])\nray.shutdown()\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        assert float(r.stdout.strip().splitlines()[-1]) == 2.0  # its own Ray, not the 1-CPU cluster
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        # A bare ray.init elsewhere must not find this dead head.
        if CURRENT.is_file() and CURRENT.read_text().strip().endswith(f":{port}"):
            CURRENT.unlink() if before is None else CURRENT.write_text(before)
