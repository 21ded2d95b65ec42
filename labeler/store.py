"""Stage outputs that are either complete or absent, and resumable in between.

A stage writes part files into `<run>/.work/<stage>-<fingerprint>/`; each part is written to a
temporary name and renamed, so a part on disk is whole. A killed stage leaves its finished parts;
the rerun reads their keys and does only the rest. When the stage ends, its counts are reconciled
and the folder is renamed to `<run>/<stage>/` with a `_manifest.json`: an output folder with a
manifest is complete, and one is reused only when its fingerprint (config + inputs) matches.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from .schema import REJECTED

MANIFEST = "_manifest.json"


class ReconciliationError(RuntimeError):
    """Rows were lost or invented between a stage's input and its outputs."""


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_parts(folder: Path, columns: Optional[list[str]] = None) -> Optional[pa.Table]:
    files = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files], promote_options="default")


def _count_parts(folder: Path, column: Optional[str] = None) -> tuple[int, dict]:
    """(rows, how many rows hold each value of `column`, most first) over the parts in `folder`,
    one part at a time; without a column only the rows are counted (from the footers)."""
    import pyarrow.compute as pc

    rows, counts = 0, {}
    for f in sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []:
        if column is None:
            rows += pq.ParquetFile(f).metadata.num_rows
            continue
        col = pq.read_table(f, columns=[column]).column(column)
        rows += len(col)
        for v in pc.value_counts(col).to_pylist():
            counts[v["values"]] = counts.get(v["values"], 0) + v["counts"]
    return rows, dict(sorted(counts.items(), key=lambda kv: -kv[1]))


@dataclass
class StageWriter:
    """Collects one stage's output parts in its work folder."""

    stage: str
    fingerprint: str
    work: Path
    final: Path
    schema: pa.Schema
    started: float = field(default_factory=time.time)
    _seq: int = 0
    engine: dict = field(default_factory=dict)  # the engines' counters of this attempt (runner.EngineCounters)
    # Called with each part file once it is whole (a remote run mirrors the work folder with it,
    # so an attempt killed on one machine resumes on another).
    on_write: Optional[Callable[[Path], None]] = None

    def __post_init__(self):
        (self.work / "data").mkdir(parents=True, exist_ok=True)
        (self.work / "rejected").mkdir(parents=True, exist_ok=True)
        for tmp in self.work.rglob("*.tmp"):  # half-written parts of a killed run
            tmp.unlink()
        self._seq = len(list((self.work / "data").glob("part-*"))) + len(list((self.work / "rejected").glob("part-*")))

    @property
    def resumed(self) -> bool:
        return self._seq > 0

    def _name(self) -> str:
        self._seq += 1
        # Unique across concurrent or restarted writers; sorted by time of writing.
        return f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:6]}.parquet"

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self.put(table.cast(self.schema), self.work / "data" / self._name())

    def reject(self, table_or_rows) -> None:
        t = table_or_rows if isinstance(table_or_rows, pa.Table) else pa.Table.from_pylist(list(table_or_rows), schema=REJECTED)
        if t.num_rows:
            self.put(t.cast(REJECTED), self.work / "rejected" / self._name())

    def put(self, table: pa.Table, path: Path) -> None:
        """One whole part file at `path`, then on_write."""
        _write_atomic(table, path)
        if self.on_write is not None:
            self.on_write(path)

    def done_keys(self, key_fn) -> set:
        """Keys of input rows already accounted for (written or rejected) by an earlier attempt."""
        keys: set = set()
        data = read_parts(self.work / "data")  # (graded stages keep failed rows here as well)
        if data is not None:
            keys.update(key_fn(data))
        rej = read_parts(self.work / "rejected", ["key"])
        if rej is not None:
            keys.update(rej.column("key").to_pylist())
        return keys

    def data(self) -> Optional[pa.Table]:
        return read_parts(self.work / "data")

    def rejected(self) -> Optional[pa.Table]:
        return read_parts(self.work / "rejected")

    @property
    def artifacts(self) -> Path:
        """A folder for non-tabular output (a model)."""
        p = self.work / "artifacts"
        p.mkdir(exist_ok=True)
        return p

    def publish(self, rows_in: int, *, config: dict, upstream: dict, extra: Optional[dict] = None,
                one_to_one: bool = True) -> dict:
        """Reconcile counts, write the manifest and make the output visible in one rename."""
        # Counted a part at a time, not a whole column of the run at once (1M statuses: ~7 MB).
        graded = "status" in self.schema.names
        rows_out, statuses = _count_parts(self.work / "data", "status" if graded else None)
        rows_rej, reasons = _count_parts(self.work / "rejected", "reason")
        not_ok = rows_out - statuses.get("ok", 0)
        if graded and any((self.work / "data").glob("part-*.parquet")):
            # Graded stages keep failed rows in data/ too: out counts the graded ones.
            if not_ok != rows_rej:
                raise ReconciliationError(f"stage {self.stage}: {not_ok} failed rows in data/ but "
                                          f"{rows_rej} in rejected/; work kept in {self.work}")
            if one_to_one and rows_out != rows_in:
                raise ReconciliationError(f"stage {self.stage}: {rows_in} rows in but {rows_out} in data/; "
                                          f"work kept in {self.work}")
            rows_out -= not_ok
        if one_to_one and rows_in != rows_out + rows_rej:
            raise ReconciliationError(
                f"stage {self.stage}: {rows_in} rows in but {rows_out} out + {rows_rej} rejected; "
                f"work kept in {self.work} for inspection")
        manifest = {
            "stage": self.stage,
            "fingerprint": self.fingerprint,
            "rows_in": rows_in,
            "rows_out": rows_out,
            "rows_rejected": rows_rej,
            "rejected_by_reason": reasons,
            "wall_s": round(time.time() - self.started, 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": socket.gethostname(),
            "upstream": upstream,
            "config": config,
            **({"engine": self.engine} if self.engine else {}),
            **(extra or {}),
        }
        (self.work / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        if self.final.exists():  # an older output made with other settings
            trash = self.final.with_name(f".trash-{self.final.name}-{uuid.uuid4().hex[:6]}")
            os.replace(self.final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(self.work, self.final)
        return manifest


class RunStore:
    """The output folder of one pipeline run: one subfolder per finished stage."""

    def __init__(self, root: str | Path, on_write: Optional[Callable[[Path], None]] = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.on_write = on_write  # handed to every writer (StageWriter.on_write)

    def path(self, stage: str) -> Path:
        return self.root / stage

    def manifest(self, stage: str) -> Optional[dict]:
        m = self.path(stage) / MANIFEST
        return json.loads(m.read_text()) if m.is_file() else None

    def is_done(self, stage: str, fingerprint: str) -> bool:
        m = self.manifest(stage)
        return m is not None and m.get("fingerprint") == fingerprint

    def writer(self, stage: str, fingerprint: str, schema: pa.Schema) -> StageWriter:
        work = self.root / ".work" / f"{stage}-{fingerprint}"
        return StageWriter(stage, fingerprint, work, self.path(stage), schema, on_write=self.on_write)

    def reopen(self, stage: str, fingerprint: str, schema: pa.Schema, keep, key) -> tuple[StageWriter, int, int]:
        """A work folder for `fingerprint` that starts with the rows of the published output that
        still stand (`keep(table)`: a boolean mask; `key(table)`: the rows' keys, as in rejected/),
        so that only the rest is done again. Returns the writer, the rows kept and the rows dropped.
        The published output stays until the new one replaces it."""
        import pyarrow.compute as pc

        w = self.writer(stage, fingerprint, schema)
        if w.resumed or self.manifest(stage) is None:
            return w, 0, 0  # an unfinished attempt of this fingerprint is resumed as it is
        kept_keys, kept, dropped = [], 0, 0
        for f in sorted((self.path(stage) / "data").glob("part-*.parquet")):
            t = pq.read_table(f)
            mask = keep(t)
            k = t.filter(mask)
            kept, dropped = kept + k.num_rows, dropped + t.num_rows - k.num_rows
            if k.num_rows:
                failed = k.filter(pc.not_equal(k.column("status"), "ok")) if "status" in k.column_names else k.slice(0, 0)
                kept_keys.append(key(failed))
                w.put(k.cast(schema), w.work / "data" / f.name)
        keys = pa.chunked_array(kept_keys, pa.string()) if kept_keys else pa.chunked_array([], pa.string())
        for f in sorted((self.path(stage) / "rejected").glob("part-*.parquet")):
            t = pq.read_table(f)
            t = t.filter(pc.is_in(t.column("key"), value_set=keys.combine_chunks()))
            if t.num_rows:
                w.put(t.cast(REJECTED), w.work / "rejected" / f.name)
        w._seq = 1 if kept else 0
        return w, kept, dropped

    def table(self, stage: str, part: str = "data", columns: Optional[list[str]] = None) -> pa.Table:
        if self.manifest(stage) is None:
            raise FileNotFoundError(f"stage {stage!r} has no finished output in {self.root}")
        t = read_parts(self.path(stage) / part, columns)
        if t is None:
            raise FileNotFoundError(f"stage {stage!r} in {self.root} has no {part} rows")
        return t

    def files(self, stage: str, part: str = "data") -> list[str]:
        return [str(p) for p in sorted((self.path(stage) / part).glob("part-*.parquet"))]


def write_json_atomic(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)

