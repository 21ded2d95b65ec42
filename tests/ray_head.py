"""A `ray start --head` for tests that stops only itself.

`ray stop` (and AutoscalingCluster.start/shutdown, which call `ray stop --force`) kill every Ray
process on the machine, including another test's or a benchmark's. This head runs with --block in
its own session and its own --temp-dir (so a bare `ray.init()` elsewhere never joins it), and is
stopped by killing its process tree by pid.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import psutil

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_ip() -> str:
    import ray._private.services as services
    return services.get_node_ip_address()


class RayHead:
    def __init__(self, *, num_cpus: int, dashboard: bool = False, autoscaling_config: Optional[dict] = None,
                 object_store_memory: int = 200_000_000, env: Optional[dict] = None):
        self.port = free_port()
        self.dashboard_port = free_port() if dashboard else None
        self.temp_dir = tempfile.mkdtemp(prefix="lbr-", dir="/tmp")  # short: unix socket paths are limited
        self.gcs_address = f"{node_ip()}:{self.port}"
        # Its own agent ports too: the dashboard agent's HTTP port defaults to 52365 for every Ray on
        # the machine, and a head whose agent finds it taken (by any other Ray instance running
        # beside the tests) never serves the Jobs API ("No available agent to submit job").
        cmd = [str(VENV_BIN / "ray"), "start", "--head", "--block", f"--port={self.port}", f"--num-cpus={num_cpus}",
               f"--temp-dir={self.temp_dir}", f"--object-store-memory={object_store_memory}",
               f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
               f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
               "--disable-usage-stats"]
        if dashboard:
            cmd += ["--include-dashboard=true", "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={self.dashboard_port}"]
        else:
            cmd += ["--include-dashboard=false"]
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                    "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
        self.env.pop("RAY_ADDRESS", None)
        if autoscaling_config is not None:
            autoscaling_config = json.loads(json.dumps(autoscaling_config))
            autoscaling_config["provider"]["gcs_address"] = self.gcs_address
            cfg_path = Path(self.temp_dir) / "autoscaling.json"
            cfg_path.write_text(json.dumps(autoscaling_config))
            cmd.append(f"--autoscaling-config={cfg_path}")
            self.env.update({"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"})
        self.log = open(Path(self.temp_dir) / "ray-start.log", "w")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def wait_ready(self, timeout: float = 120) -> None:
        import urllib.request

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited {self.proc.returncode}: {self.tail()}")
            try:
                if self.dashboard_port:
                    with urllib.request.urlopen(f"{self.dashboard_url}/api/version", timeout=2) as r:
                        if r.status == 200:
                            return
                else:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        pass
                    if "Ray runtime started" in Path(self.log.name).read_text():
                        return
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError(f"ray head not ready after {timeout}s: {self.tail()}")

    def tail(self, n: int = 3000) -> str:
        try:
            return Path(self.log.name).read_text()[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the tree under our `ray start`, then SIGKILL what is left: ours only."""
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=10)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
