"""Run folders at storage URIs (s3://, gs://, file://, ...) so a run outlives its Ray cluster.

The store (labeler.store) works on a local folder. For a URI, a local staging folder stands in for
it: before running, every stage already published at the URI (a folder with `_manifest.json`) is
copied down, so the pipeline skips it exactly as it would locally; after each stage, the stages
whose manifest differs from the URI's are copied up. Upload order keeps the store's invariant on
object stores that have no rename: the old manifest is deleted first and the new one written last,
so a stage folder at the URI that has a manifest is always complete.

The work folder of a running stage is mirrored too: each part file is uploaded once it is whole
(object stores write an object whole or not at all), and a run starts by downloading the parts
an earlier attempt left, so a stage killed on one machine resumes on another without redoing or
repeating a row. URIs are opened through labeler.storage (S3 endpoint settings, one-line errors).

A plain local path (no scheme) is used directly, without staging.

On a multi-node cluster the staging folder must be visible at the same path on every node (the
mine, distill and label stages hand local paths to their workers): point LABELER_STAGING at a
shared volume (see cluster/README.md).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Optional

MANIFEST = "_manifest.json"  # labeler.store.MANIFEST; kept here so this module imports no pyarrow-heavy store
SUMMARY = "summary.json"


class NotPublishedError(RuntimeError):
    """A stage run alone (--only) whose inputs are not published with the current settings."""


def is_uri(s: str) -> bool:
    """A storage URI (s3://, gs://, file://); a Hugging Face dataset id (hf://datasets/...) is read
    by `datasets`, not staged."""
    return "://" in str(s) and not str(s).startswith("hf://")


def staging_root() -> Path:
    """Where URI runs are staged: $LABELER_STAGING, else a folder in the labeler cache."""
    env = os.environ.get("LABELER_STAGING")
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("LABELER_CACHE", Path.home() / ".cache" / "labeler")).expanduser()
    return cache / "staging"


def _split_uri(uri: str) -> str:
    """'s3://bucket/run/' -> 'bucket/run' (the path an injected filesystem is rooted at)."""
    return uri.split("://", 1)[1].strip("/")


class RemoteRun:
    """A run folder at `uri`, mirrored through a local staging folder.

    `filesystem` replaces the one `pyarrow.fs.FileSystem.from_uri` would build (tests inject a
    SubTreeFileSystem so an s3:// URI needs no network); paths are then the URI without its scheme.
    """

    def __init__(self, uri: str, staging: Optional[str | Path] = None, filesystem=None,
                 log: Optional[Callable[[str], None]] = None):
        self.uri = str(uri)
        self.log = log or logging.getLogger(__name__).info
        self.remote = is_uri(self.uri)
        if not self.remote:
            self.fs, self.base = None, None
            self.local = Path(self.uri)
            return
        if filesystem is not None:
            self.fs, self.base = filesystem, _split_uri(self.uri)
        else:
            from .storage import check_writable, filesystem as open_fs

            self.fs, self.base = open_fs(self.uri)
            self.base = self.base.rstrip("/")
            check_writable(self.uri)  # a missing bucket or a denied write: one line, before any work
        # Keyed by the URI, so a rerun on the same machine (or shared volume) reuses what it has.
        key = hashlib.sha256(self.uri.rstrip("/").encode()).hexdigest()[:12]
        self.local = Path(staging) if staging else staging_root() / key
        self.local.mkdir(parents=True, exist_ok=True)

    # -- paths and manifests ------------------------------------------------------------------
    def _guard(self, doing: str):
        """Object-store errors inside the block become one StorageError line naming the URI."""
        from contextlib import contextmanager

        from .storage import StorageError, explain

        @contextmanager
        def cm():
            try:
                yield
            except (StorageError, FileNotFoundError):
                raise
            except OSError as e:
                raise StorageError(explain(e, self.uri, doing)) from None
        return cm()

    def _rpath(self, *parts: str) -> str:
        parts = tuple(p for p in parts if p)
        return "/".join([self.base, *parts]) if self.base else "/".join(parts)

    def remote_manifest(self, stage: str) -> Optional[dict]:
        from pyarrow.fs import FileType

        p = self._rpath(stage, MANIFEST)
        if self.fs.get_file_info(p).type != FileType.File:
            return None
        with self.fs.open_input_stream(p) as f:
            return json.loads(f.read().decode())

    def local_manifest(self, stage: str) -> Optional[dict]:
        p = self.local / stage / MANIFEST
        return json.loads(p.read_text()) if p.is_file() else None

    def published(self) -> list[str]:
        """Stages published at the URI (folders that hold a manifest)."""
        from pyarrow.fs import FileSelector, FileType

        if not self.remote:
            return sorted(p.parent.name for p in self.local.glob(f"*/{MANIFEST}"))
        with self._guard("listing"):
            infos = self.fs.get_file_info(FileSelector(self.base, allow_not_found=True, recursive=False))
            return sorted(i.base_name for i in infos if i.type == FileType.Directory
                          and self.fs.get_file_info(self._rpath(i.base_name, MANIFEST)).type == FileType.File)

    # -- sync ---------------------------------------------------------------------------------
    def pull(self) -> list[str]:
        """Copy down published stages the staging folder lacks or has in another version."""
        if not self.remote:
            return []
        from pyarrow.fs import LocalFileSystem, copy_files

        got = []
        for stage in self.published():
            remote_m = self.remote_manifest(stage)
            if remote_m is None or self.local_manifest(stage) == remote_m:
                continue
            tmp = self.local / f".pull-{stage}-{uuid.uuid4().hex[:6]}"
            tmp.mkdir()
            try:
                copy_files(self._rpath(stage), str(tmp), source_filesystem=self.fs,
                           destination_filesystem=LocalFileSystem())
                if not (tmp / MANIFEST).is_file():
                    raise RuntimeError(f"{self.uri}/{stage}: manifest vanished during download")
                final = self.local / stage
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)  # a half-downloaded stage never looks published
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            got.append(stage)
            self.log(f"[remote] pulled {stage} from {self.uri}")
        return got

    def push(self, stage: str) -> None:
        """Replace `<uri>/<stage>/` with the staged stage folder; the manifest goes last."""
        if not self.remote:
            return
        with self._guard(f"uploading {stage}"):
            self._push(stage)

    def _push(self, stage: str) -> None:
        from pyarrow.fs import FileType, LocalFileSystem, copy_files

        src = self.local / stage
        if not (src / MANIFEST).is_file():
            raise FileNotFoundError(f"{src} is not a published stage (no {MANIFEST})")
        dst = self._rpath(stage)
        if self.fs.get_file_info(self._rpath(stage, MANIFEST)).type == FileType.File:
            self.fs.delete_file(self._rpath(stage, MANIFEST))  # first: the old version stops counting
        if self.fs.get_file_info(dst).type == FileType.Directory:
            self.fs.delete_dir_contents(dst)
        local_fs = LocalFileSystem()
        for child in sorted(src.iterdir()):
            if child.is_dir():
                self.fs.create_dir(self._rpath(stage, child.name), recursive=True)  # local fs needs it
            if child.name != MANIFEST:
                copy_files(str(child), self._rpath(stage, child.name), source_filesystem=local_fs,
                           destination_filesystem=self.fs)
        copy_files(str(src / MANIFEST), self._rpath(stage, MANIFEST), source_filesystem=local_fs,
                   destination_filesystem=self.fs)
        self.log(f"[remote] pushed {stage} to {self.uri}")

    def push_changed(self) -> list[str]:
        """Push every staged stage whose manifest differs from the URI's (new or redone stages),
        then drop the URI's copy of its finished work folder."""
        if not self.remote:
            return []
        pushed = []
        for p in sorted(self.local.glob(f"*/{MANIFEST}")):
            stage = p.parent.name
            if self.local_manifest(stage) != self.remote_manifest(stage):
                self.push(stage)
                self.delete_tree(f".work/{stage}-{self.local_manifest(stage).get('fingerprint')}")
                pushed.append(stage)
        if (self.local / SUMMARY).is_file():
            self.push_file(self.local / SUMMARY)
        return pushed

    # -- single files and work folders --------------------------------------------------------
    def push_file(self, path: Path) -> None:
        """Upload one staged file to the same place under the URI (a part, once it is whole)."""
        if not self.remote:
            return
        from pyarrow.fs import LocalFileSystem, copy_files

        rel = Path(path).relative_to(self.local).as_posix()
        with self._guard(f"uploading {rel}"):
            try:
                copy_files(str(path), self._rpath(rel), source_filesystem=LocalFileSystem(), destination_filesystem=self.fs)
            except FileNotFoundError:  # a file system with real folders (file://) needs the parent first
                self.fs.create_dir(self._rpath(rel).rsplit("/", 1)[0], recursive=True)
                copy_files(str(path), self._rpath(rel), source_filesystem=LocalFileSystem(), destination_filesystem=self.fs)

    def pull_tree(self, rel: str) -> int:
        """Download the files under `<uri>/<rel>` that the staging folder lacks (part names are
        unique and parts never change, so a file present is the same file); returns how many."""
        if not self.remote:
            return 0
        from pyarrow.fs import FileSelector

        n = 0
        root = self._rpath(rel)
        with self._guard(f"downloading {rel}"):
            for info in self.fs.get_file_info(FileSelector(root, allow_not_found=True, recursive=True)):
                name = info.path[len(root):].lstrip("/")
                if not info.is_file or any(p.startswith(".") and p != ".work" for p in name.split("/")):
                    continue  # temporary files, never whole parts
                dest = self.local / rel / name
                if dest.is_file() and dest.stat().st_size == info.size:
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:6]}.tmp")
                with self.fs.open_input_stream(info.path) as src, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 22)
                os.replace(tmp, dest)
                n += 1
        return n

    def delete_tree(self, rel: str) -> None:
        if not self.remote:
            return
        from pyarrow.fs import FileType

        with self._guard(f"deleting {rel}"):
            if self.fs.get_file_info(self._rpath(rel)).type == FileType.Directory:
                self.fs.delete_dir(self._rpath(rel))


def fetch_input(uri: str, dest_root: Path) -> Path:
    """Copy a file or folder at `uri` (a corpus) under `dest_root` once; returns the local copy.

    File names are kept: the corpus fingerprint hashes names and contents, not the folder.
    """
    from pyarrow.fs import FileType, LocalFileSystem, copy_files

    from .storage import StorageError, explain, filesystem

    dest = Path(dest_root) / hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:12]
    if dest.exists():
        return dest
    fs, path = filesystem(uri)
    try:
        info = fs.get_file_info(path)
    except OSError as e:
        raise StorageError(explain(e, uri)) from None
    if info.type == FileType.NotFound:
        raise FileNotFoundError(f"{uri} not found")
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:6]}")
    tmp.mkdir(parents=True)
    try:
        copy_files(path, str(tmp / info.base_name) if info.type == FileType.File else str(tmp),
                   source_filesystem=fs, destination_filesystem=LocalFileSystem())
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


# -- running the pipeline against a URI ---------------------------------------------------------
def run_pipeline(cfg, out: str, *, until: Optional[str] = None, only: Optional[list[str]] = None,
                 force: bool = False, staging: Optional[str] = None, filesystem=None, log=None) -> dict:
    """Pull, then run stage by stage, pushing after each: a cluster lost mid-run keeps what finished."""
    from .pipeline import STAGES, UPSTREAM, Pipeline

    t0 = time.time()
    if is_uri(cfg.corpus.path):
        cfg.corpus.path = str(fetch_input(cfg.corpus.path, staging_root() / "inputs"))
    run = RemoteRun(out, staging=staging, filesystem=filesystem, log=log)
    run.pull()
    if run.pull_tree(".work"):
        run.log(f"[remote] downloaded the unfinished work at {out}/.work: resumed, not redone")
    pipe = Pipeline(cfg, run.local, force=force, log=log, on_write=run.push_file if run.remote else None)
    stages = STAGES[: STAGES.index(until) + 1] if until else list(STAGES)
    if only:
        stages = [s for s in stages if s in only]
        for s in stages:  # only these run: their inputs must already be published, and current
            for u in UPSTREAM[s]:
                if u not in stages and not pipe.store.is_done(u, pipe.fingerprint(u)):
                    raise NotPublishedError(f"stage {s} needs {u}, which is not published at {out} with the "
                                       f"current settings; run it first (or drop --only)")
    report: dict = {}
    summary: dict = {}
    for s in stages:
        summary = pipe.run(until=s, only=[s])
        report.update(summary["stages"])
        run.push_changed()
    summary = {**summary, "out": out, "staging": str(run.local), "stages": report,
               "wall_s": round(time.time() - t0, 2)}
    from .store import write_json_atomic
    write_json_atomic(summary, run.local / SUMMARY)
    run.push_changed()
    return summary


def job_main(argv: list[str], stage: Optional[str] = None) -> int:
    """Entrypoint of jobs/<stage>.py: run the pipeline up to `stage` (or all) against `--out URI`."""
    from .config import ConfigError, dotted_override, load_config, merge_dicts
    from .pipeline import STAGES
    from .storage import StorageError

    ap = argparse.ArgumentParser(prog=f"jobs/{stage or 'pipeline'}.py",
                                 description="Ray Job entrypoint: finished stages at --out are skipped.")
    ap.add_argument("--config", required=True, help="YAML config, relative to the working dir")
    ap.add_argument("--out", required=True, help="run URI: s3://bucket/run, gs://..., file:///path, or a local path")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--force", action="store_true")
    if stage is None:
        ap.add_argument("--until", choices=STAGES, help="stop after this stage")
    else:
        ap.add_argument("--only", action="store_true",
                        help=f"run {stage} alone; its inputs must already be published at --out")
    args = ap.parse_args(argv)
    from .logsetup import setup_logging

    setup_logging(0)  # the stages' progress lines and summaries go to the job's logs
    try:
        overrides: dict = {}
        for s in args.set:
            overrides = merge_dicts(overrides, dotted_override(s))
        cfg = load_config(args.config, overrides or None)
        # Inside a Ray Job, RAY_ADDRESS names the cluster: join it rather than start a local Ray.
        if cfg.ray.address is None and os.environ.get("RAY_ADDRESS"):
            cfg.ray.address = "auto"
        # The job's runtime_env and init_ray's may name the same env vars (same values): allow it.
        os.environ.setdefault("RAY_OVERRIDE_JOB_RUNTIME_ENV", "1")
        from .storage import configure
        configure(cfg.storage)
        summary = run_pipeline(cfg, args.out, until=getattr(args, "until", None) or stage,
                               only=[stage] if getattr(args, "only", False) else None, force=args.force)
    except (ConfigError, FileNotFoundError, ValueError, NotPublishedError, StorageError) as e:  # others: traceback, exit 1
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    from .pipeline import format_summary
    print(format_summary(summary))
    print(json.dumps({"out": summary["out"], "stages": {k: v.get("rows_out") for k, v in summary["stages"].items()}}),
          flush=True)
    return 0
