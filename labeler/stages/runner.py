"""Runs a Ray Data actor stage into a StageWriter: streaming, resumable, every row accounted for.

Workers return their input rows with the stage's columns plus `_key`, `_status` ("ok" or
"rejected"), `_reason`, `_detail` and `_raw`. The driver streams the results (Ray Data applies
backpressure, so memory stays bounded), writes ok rows to data parts and the rest, with their
reasons, to rejected parts. Keys already written by a killed attempt are filtered out first.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager
from typing import Callable, Optional

import pyarrow as pa
import pyarrow.compute as pc

from ..schema import MAX_RECORD_CHARS, conform
from ..store import StageWriter

log = logging.getLogger(__name__)
# Columns an engine worker may add to each batch (its own counters): when the batch finished, the
# pairs the engine graded in it and the seconds it took (on the batch's first row; 0 on the rest).
ENGINE_T, ENGINE_N, ENGINE_S = "_engine_t", "_engine_n", "_engine_s"


class EngineCounters:
    """The engines' own view of a run: per batch, when it finished and how many pairs were graded.

    The steady rate is the pairs graded between the 10th and the 90th percentile of the run's
    pairs, over the time between them, across every engine actor: start-up, the last stragglers
    and part sizes do not enter it (a rate from part timestamps did, and misled with few parts).
    """

    def __init__(self):
        self.t: list[float] = []
        self.n: list[int] = []
        self.s: list[float] = []
        self.busy_s = 0.0

    def add(self, batch: pa.Table) -> None:
        if ENGINE_T not in batch.column_names or not batch.num_rows:
            return
        n = pc.sum(batch.column(ENGINE_N)).as_py() or 0
        s = pc.sum(batch.column(ENGINE_S)).as_py() or 0.0
        if n:
            self.t.append(pc.max(batch.column(ENGINE_T)).as_py())
            self.n.append(n)
            self.s.append(s)
        self.busy_s += s

    def summary(self, lo: float = 0.1, hi: float = 0.9) -> dict:
        import numpy as np

        graded = int(sum(self.n))
        out = {"pairs_graded": graded, "engine_busy_s": round(self.busy_s, 2), "steady_pairs_per_s": None}
        if len(self.t) < 5:
            return out
        order = np.argsort(self.t)
        t, cum = np.asarray(self.t)[order], np.cumsum(np.asarray(self.n)[order])
        a, b = np.searchsorted(cum, lo * graded), np.searchsorted(cum, hi * graded)
        if b > a and t[b] > t[a]:
            out["steady_pairs_per_s"] = round(float(cum[b] - cum[a]) / float(t[b] - t[a]), 2)
        # Whether a run slowed as it went, and why: per tenth of the pairs, the rate the run
        # delivered (pairs over the time the tenth spanned) and the engines' own rate (pairs over
        # their busy seconds summed over actors: one actor's rate). The first falling while the
        # second holds means the engines waited for input; both falling, the engines (or the
        # machine) got slower.
        busy = np.cumsum(np.asarray(self.s)[order])
        edges = np.searchsorted(cum, np.linspace(0, graded, 11)[1:-1])
        bounds = [0, *edges.tolist(), len(t) - 1]
        run, eng = [], []
        for i, j in zip(bounds, bounds[1:]):
            dt, db = float(t[j] - t[i]), float(busy[j] - busy[i])
            run.append(round(float(cum[j] - cum[i]) / dt, 2) if j > i and dt > 0 else None)
            eng.append(round(float(cum[j] - cum[i]) / db, 2) if j > i and db > 0 else None)
        out["by_tenth"] = {"pairs_per_s": run, "busy_pairs_per_s": eng}
        return out


RECORD_COLS = ("input_row", "query_id", "doc_id", "query", "title", "kind", "seed_doc_id", "source", "_raw")


def pending(table: pa.Table, keys: pa.Array, done: set) -> pa.Table:
    """Rows whose key is not in `done`."""
    if not done:
        return table
    mask = pc.invert(pc.is_in(keys, value_set=pa.array(list(done), type=pa.string())))
    return table.filter(mask)


def _records(t: pa.Table) -> list[str]:
    cols = [c for c in RECORD_COLS if c in t.column_names]
    out = []
    for row in t.select(cols).to_pylist():
        s = json.dumps(row, ensure_ascii=False, default=str)
        out.append(s[:MAX_RECORD_CHARS])
    return out


def split_results(batch: pa.Table, schema: pa.Schema, keep_failed: bool = False) -> tuple[pa.Table, pa.Table]:
    """(rows for data/, rows for rejected/). With `keep_failed`, data/ keeps every row (graded
    stages: one row per pair, failures marked by their status) and rejected/ lists the failures."""
    status = batch.column("_status")
    ok = batch if keep_failed else batch.filter(pc.equal(status, "ok"))
    bad = batch.filter(pc.not_equal(status, "ok"))
    rejected = pa.table({
        "key": bad.column("_key").cast(pa.string()),
        "reason": bad.column("_reason").cast(pa.string()),
        "detail": bad.column("_detail").cast(pa.string()),
        "record": pa.array(_records(bad), type=pa.string()),
    })
    return conform(ok, schema), rejected


# The longest a working stage stays silent: a line at least this often, batch or not.
HEARTBEAT_S = 30.0


class Progress:
    """Rows done, rate and ETA, logged every few seconds, and at least every HEARTBEAT_S while no
    batch comes back (the engines loading, a long batch): a run never looks hung.

    The rate is counted from the first batch that comes back, not from the start: before it,
    the engines are loading (long for a billion-parameter model on a CPU), and a rate that
    includes the start-up made early ETAs many times too long. Until then the line says the
    engines are starting.
    """

    def __init__(self, stage: str, total: int, done: int = 0, every_s: float = 10.0,
                 heartbeat_s: float = HEARTBEAT_S):
        self.stage, self.total, self.done, self.every, self.heartbeat = stage, total, done, every_s, heartbeat_s
        self.t0 = time.time()
        self.first: Optional[float] = None  # when the first batch came back
        self.first_done = done
        self.last = 0.0        # when a progress line was last logged
        self.last_batch = self.t0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def update(self, n: int) -> None:
        with self._lock:
            now = time.time()
            self.last_batch = now
            if self.first is None:
                self.first, self.first_done = now, self.done + n
                log.info("[%s] first results after %.0fs (engines started); %s/%s rows", self.stage, now - self.t0,
                         f"{self.done + n:,}", f"{self.total:,}")
                self.last = now
            self.done += n
            if now - self.last >= self.every or self.done >= self.total:
                self.last = now
                log.info("[%s] %s", self.stage, self.line(now))

    def line(self, now: float) -> str:
        span = now - (self.first or now)
        rate = (self.done - self.first_done) / span if span > 1 else None
        left = self.total - self.done
        if rate:
            eta = f"ETA {_duration(left / rate)}" if left else "done"
            return f"{self.done:,}/{self.total:,} rows  {rate:,.2f} rows/s  {eta}"
        return f"{self.done:,}/{self.total:,} rows"

    def beat(self, now: Optional[float] = None) -> Optional[str]:
        """The heartbeat's line when nothing was logged for heartbeat_s (else None); logged."""
        with self._lock:
            now = time.time() if now is None else now
            if now - max(self.last, self.t0) < self.heartbeat:
                return None
            self.last = now
            if self.first is None:
                msg = (f"waiting for the first results: the engines are starting (loading the model) or working on "
                       f"their first batch, {_duration(now - self.t0)} so far")
            else:
                msg = f"{self.line(now)}; no batch back for {_duration(now - self.last_batch)}"
            log.info("[%s] %s", self.stage, msg)
            return msg

    def __enter__(self):
        def run():
            while not self._stop.wait(min(5.0, self.heartbeat / 3)):
                self.beat()

        self._thread = threading.Thread(target=run, daemon=True, name=f"labeler-progress-{self.stage}")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        return False


@contextmanager
def heartbeat(stage: str, what: str, every_s: float = HEARTBEAT_S):
    """A line every `every_s` while a step that has no progress of its own runs (`what`: the step)."""
    stop = threading.Event()
    t0 = time.time()

    def run():
        while not stop.wait(every_s):
            log.info("[%s] %s, %s so far", stage, what, _duration(time.time() - t0))

    t = threading.Thread(target=run, daemon=True, name=f"labeler-heartbeat-{stage}")
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(timeout=10)


def _duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def dataset_of(table: pa.Table, batch_size: int, max_blocks: int = 200):
    """A Ray dataset of `table` in blocks of about one batch, cut on the driver.

    Not `repartition`: that is an all-to-all barrier before the first row reaches an actor (most
    of the mine stage's time went there), and its tasks ask for a whole CPU, which on 2 cores
    beside an engine pool never comes: the stage hangs.
    """
    import ray

    step = max(batch_size, -(-table.num_rows // max_blocks))
    return ray.data.from_arrow([table.slice(i, step) for i in range(0, table.num_rows, step)] or [table])


def run_actor_stage(writer: StageWriter, todo: pa.Table, *, worker, ctor_kwargs: dict, pool: dict,
                    batch_size: int, total: int, on_ok: Optional[Callable[[pa.Table], tuple[pa.Table, list]]] = None,
                    keep_failed: bool = False, engine_key: Optional[str] = None) -> None:
    """Map `todo` through an actor pool of `worker` and write the results as they stream in.
    `engine_key`: the config key of the engine the actors run, named if Ray kills one for memory."""
    if todo.num_rows == 0:
        log.info("[%s] every row was done by an earlier attempt", writer.stage)
        return
    ds = dataset_of(todo, batch_size)
    out = ds.map_batches(worker, fn_constructor_kwargs=ctor_kwargs, batch_size=batch_size,
                         batch_format="pyarrow", zero_copy_batch=True, **pool)
    stream_into(writer, out, total=total, done=total - todo.num_rows, on_ok=on_ok, keep_failed=keep_failed,
                engine_key=engine_key, declared=pool.get("memory"))


def output_blocks(ds):
    """The dataset's output blocks as Arrow tables, one at a time, as the executor produces them.

    Not `iter_batches`: its iterator sends Ray Data's whole `DatasetStats` to the `_StatsActor`
    every five seconds, and that object holds one `BlockStats` per block the run has produced so
    far (ray-project/ray#66016), so each report grows with the run and the `_StatsActor` grew with
    them (the rest of its growth was Ray's metrics: raycluster.init_ray). The executor's own small
    metrics still go to the actor.
    """
    import ray
    from ray.data.block import BlockAccessor

    for bundle in ds.iter_internal_ref_bundles():
        for ref in bundle.block_refs:
            yield BlockAccessor.for_block(ray.get(ref)).to_arrow()
        del bundle  # its blocks are freed once written, not when the next one arrives


def stream_into(writer: StageWriter, ds, *, total: int, done: int = 0,
                on_ok: Optional[Callable[[pa.Table], tuple[pa.Table, list]]] = None,
                keep_failed: bool = False, engine_key: Optional[str] = None,
                declared: Optional[float] = None) -> None:
    """Write the batches of a Ray Data dataset of worker results into `writer` as they arrive.
    A process Ray kills for memory ends the stage with raycluster.KilledForMemory: one line naming
    the stage, the process and `engine_key`'s settings (`declared`: the bytes each engine asked for)."""
    counters = EngineCounters()
    try:
        with Progress(writer.stage, total, done) as progress:
            for batch in output_blocks(ds):
                if not batch.num_rows:
                    continue
                counters.add(batch)
                ok, rejected = split_results(batch, writer.schema, keep_failed)
                if on_ok is not None:
                    ok, extra = on_ok(ok)
                    if extra:
                        rejected = pa.concat_tables([rejected, pa.Table.from_pylist(extra, schema=rejected.schema)])
                # Rejected first: if killed between the two writes, the ok rows are simply redone.
                writer.reject(rejected)
                writer.write(ok)
                progress.update(pc.count_distinct(batch.column("_key")).as_py())
    except Exception as e:
        from ..raycluster import KilledForMemory, memory_kill, memory_kill_line

        kill = None if isinstance(e, KilledForMemory) else memory_kill(e)
        if kill is None:
            raise
        raise KilledForMemory(memory_kill_line(kill, writer.stage, engine_key, declared)) from e
    if counters.t:
        writer.engine = counters.summary()
        steady = writer.engine["steady_pairs_per_s"]
        log.info("[%s] engines graded %s pairs in %.0fs busy; steady rate %s", writer.stage,
                 f"{writer.engine['pairs_graded']:,}", writer.engine["engine_busy_s"],
                 "n/a (fewer than 5 batches)" if steady is None else f"{steady:,} pairs/s (middle 80% of the pairs)")
