"""`labeler submit`: run a stage (or the pipeline) as a Ray Job on a cluster and follow its logs.

    labeler submit --address http://HEAD:8265 --stage judge configs/gpu-cluster.yaml --out s3://b/run
    labeler submit --address http://HEAD:8265 --all configs/gpu-cluster.yaml --out s3://b/run --no-wait

The project folder is uploaded as the job's working_dir and the job runs `python jobs/<stage>.py`,
so the cluster runs the code you have, not the code its image was built with. Outputs go to --out
(a storage URI): the cluster is disposable, the run is not. Exits non-zero when the job fails.
"""
from __future__ import annotations

import argparse
import logging
import asyncio
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Optional

from ..stages import NAMES as STAGES
log = logging.getLogger("labeler")
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def project_root() -> Path:
    """The folder holding jobs/ and labeler/: what a job needs uploaded."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "jobs").is_dir() else Path.cwd()


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="labeler submit", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="YAML config inside the working dir (uploaded with it)")
    ap.add_argument("--address", default=os.environ.get("RAY_ADDRESS", "http://127.0.0.1:8265"),
                    help="the cluster's dashboard/job server (default: $RAY_ADDRESS or http://127.0.0.1:8265)")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--stage", choices=STAGES, help="run the pipeline up to and including this stage")
    which.add_argument("--all", action="store_true", help="run the whole pipeline (the default)")
    ap.add_argument("--until", choices=STAGES, help="with --all: stop after this stage")
    ap.add_argument("--only", action="store_true", help="with --stage: run that stage alone (inputs must be published)")
    ap.add_argument("--out", required=True, help="run URI the job writes: s3://bucket/run, gs://..., or a path "
                                                 "on the cluster's shared storage")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="config override")
    ap.add_argument("--force", action="store_true", help="redo stages even when up to date")
    ap.add_argument("--working-dir", default=None, help="folder uploaded as the job's working_dir "
                                                        "(default: the project root)")
    ap.add_argument("--runtime-env", default=None,
                    help="runtime_env YAML/JSON (default: jobs/runtime_env.yaml in the working dir)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra env var for the job")
    ap.add_argument("--submission-id", default=None)
    ap.add_argument("--no-wait", action="store_true", help="print the submission id and return")
    ap.add_argument("--timeout", type=float, default=None, help="give up following after this many seconds "
                                                               "(the job keeps running)")
    return ap


def load_runtime_env(path: Path, working_dir: Path, extra_env: dict) -> dict:
    import json

    import yaml

    env = {}
    if path.is_file():
        text = path.read_text()
        env = (json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)) or {}
    env = dict(env)
    env["working_dir"] = str(working_dir)
    if extra_env:
        env["env_vars"] = {**env.get("env_vars", {}), **extra_env}
    return env


def entrypoint(args, config_rel: str) -> str:
    stage = args.stage or "pipeline"
    cmd = ["python", f"jobs/{stage}.py", "--config", config_rel, "--out", args.out]
    for s in args.set:
        cmd += ["--set", s]
    if args.force:
        cmd.append("--force")
    if args.until and stage == "pipeline":
        cmd += ["--until", args.until]
    if args.only and stage != "pipeline":
        cmd.append("--only")
    return shlex.join(cmd)


def follow(client, job_id: str, out=None, timeout: Optional[float] = None) -> str:
    """Stream the job's logs until it ends; returns its final status."""
    out = out or sys.stdout
    async def _tail():
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    try:
        asyncio.run(asyncio.wait_for(_tail(), timeout))
    except asyncio.TimeoutError:
        print(f"\n[submit] stopped following after {timeout:.0f}s; job {job_id} keeps running", file=sys.stderr)
    except Exception as e:  # the log stream dropped: the job may still be running
        print(f"\n[submit] log stream ended ({e}); polling the job's status", file=sys.stderr)
    deadline = None if timeout is None else time.time() + 10
    while True:
        st = client.get_job_status(job_id)
        status = str(getattr(st, "value", st))
        if status in TERMINAL or (deadline is not None and time.time() > deadline):
            return status
        time.sleep(2)


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.until and args.stage:
        print("error: --until goes with --all; --stage already names the last stage", file=sys.stderr)
        return 2
    if args.only and not args.stage:
        print("error: --only needs --stage", file=sys.stderr)
        return 2
    wd = Path(args.working_dir).resolve() if args.working_dir else project_root()
    cfg = Path(args.config).resolve()
    try:
        config_rel = cfg.relative_to(wd).as_posix()
    except ValueError:
        print(f"error: {args.config} is outside the working dir {wd}; the job would not find it", file=sys.stderr)
        return 2
    if not cfg.is_file():
        print(f"error: {args.config}: config file not found", file=sys.stderr)
        return 2
    if not (wd / "jobs").is_dir():
        print(f"error: {wd} has no jobs/ folder; pass --working-dir PROJECT_ROOT", file=sys.stderr)
        return 2
    extra = {}
    for kv in args.env:
        if "=" not in kv:
            print(f"error: --env {kv!r} must look like KEY=VALUE", file=sys.stderr)
            return 2
        k, v = kv.split("=", 1)
        extra[k] = v
    runtime_env = load_runtime_env(Path(args.runtime_env) if args.runtime_env else wd / "jobs" / "runtime_env.yaml",
                                   wd, extra)
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(args.address)
    ep = entrypoint(args, config_rel)
    job_id = submit_with_retry(client, entrypoint=ep, runtime_env=runtime_env, submission_id=args.submission_id,
                               metadata={"labeler_stage": args.stage or "pipeline", "labeler_out": args.out})
    print(f"[submit] {job_id}: {ep}", file=sys.stderr, flush=True)
    if args.no_wait:
        print(job_id)
        return 0
    status = follow(client, job_id, timeout=args.timeout)
    print(f"[submit] {job_id}: {status}", file=sys.stderr, flush=True)
    return 0 if status == "SUCCEEDED" else 1


def submit_with_retry(client, *, wait_s: float = 180.0, **kwargs) -> str:
    """Submit, waiting out a head whose job agent is not up yet (right after `ray start`, or
    under load the Jobs API answers 500 "No available agent"); any other error is raised."""
    import time

    deadline = time.time() + wait_s
    delay = 2.0
    while True:
        try:
            return client.submit_job(**kwargs)
        except RuntimeError as e:
            if "No available agent" not in str(e):
                raise
            if time.time() + delay > deadline:
                raise RuntimeError(
                    f"{e}: the head's job agent did not come up in {wait_s:.0f}s. Seen here when another Ray "
                    f"instance on the head's machine held the agent's HTTP port (52365 by default): its "
                    f"dashboard_agent.log then says 'address already in use'. Start the head with "
                    f"--dashboard-agent-listen-port=<a free port>, or stop the other Ray.") from None
            log.info("[submit] the head's job agent is not ready; retrying in %.0fs", delay)
            time.sleep(delay)
            delay = min(delay * 2, 20.0)


if __name__ == "__main__":
    sys.exit(main())
