"""Grading pairs at any scale: pairs streamed from files through Ray Data into the engine actors.

    read (PairsDatasource tasks) -> PrepareWorker actor -> EngineWorker actors -> driver -> parts

The driver never holds the pairs: it reads keys only (a pre-pass that counts the rows and finds
duplicate (query_id, doc_id) pairs, so that "the later duplicate" means the same rows in every
attempt), and writes the graded batches as they stream in. Every input row, a broken JSON line
included, ends as exactly one row of the output, failed ones with their reason; each row keeps
where it came from (`input_row`, "file:line" for JSONL, "file[row]" for Parquet).

Resuming: a row's key is its pair key, or for a later duplicate the pair key plus its location,
or for a row with no ids its location alone. Keys of the rows in finished data parts are skipped
inside the stream (PrepareWorker). A rejected part whose data part was never written (the run was
killed between the two) is deleted, so its rows are redone once and counted once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc

from ..config import EngineConfig, GradeConfig
from ..corpus_reader import read_corpus
from ..engines.base import EngineThread, GradeResult, call_engine
from ..grading import PromptEncoder, build_prompt
from ..prompts import load_template
from ..pairs_input import INPUT_ROW, DatasetPairs, PairsInput, table_stream
from ..reasons import DUPLICATE_PAIR, EMPTY_TEXT, MISSING_FIELD, PROMPT_TOO_LONG, UNKNOWN_DOC
from ..schema import LABEL_FIELDS, pair_key
from .runner import ENGINE_N, ENGINE_S, ENGINE_T


def with_input_row(schema: pa.Schema) -> pa.Schema:
    """A graded stage's schema plus where each row came from (the standalone export)."""
    return schema if INPUT_ROW.name in schema.names else schema.append(INPUT_ROW)


# -- keys -------------------------------------------------------------------------------------

def pair_keys(t: pa.Table) -> pa.Array:
    return pc.binary_join_element_wise(t.column("query_id").cast(pa.string()),
                                       t.column("doc_id").cast(pa.string()), "\t")


def row_keys(t: pa.Table, duplicate: Optional[pa.Array] = None) -> pa.Array:
    """The resume key of each row: its pair key; `qid<TAB>did<TAB>@loc` for a later duplicate
    (`duplicate` true, or error "duplicate_pair" in an output table); `@loc` without ids."""
    keys = pair_keys(t)
    if "input_row" not in t.column_names:
        return keys
    loc = t.column("input_row")
    if duplicate is None:
        duplicate = (pc.fill_null(pc.equal(t.column("error"), DUPLICATE_PAIR), False)
                     if "error" in t.column_names else pa.nulls(t.num_rows, pa.bool_()))
    dup_key = pc.binary_join_element_wise(keys, pc.binary_join_element_wise(pa.scalar("@"), loc, ""), "\t")
    keys = pc.if_else(pc.fill_null(duplicate, False), dup_key, keys)
    return pc.coalesce(keys, pc.binary_join_element_wise(pa.scalar("@"), loc, ""))


def stable_hash64(keys: list) -> "np.ndarray":
    """A 64-bit hash of each key that is the same in every process (Python's `hash` is salted)."""
    import hashlib

    import numpy as np

    return np.fromiter((int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "little")
                        for k in keys), np.uint64, len(keys))


class DoneKeys:
    """The keys earlier attempts finished, held compactly: sorted 64-bit hashes (8 bytes a key)
    beside the keys themselves as one Arrow string array (their bytes, no Python objects). A hash
    hit is confirmed against the key, so a collision never skips a pair. A Python set of the same
    strings would hold a Python object per key, several times the memory."""

    def __init__(self, keys: pa.Array):
        import numpy as np

        keys = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
        step = 1 << 16  # a slice at a time: no list of every key at once
        h = np.concatenate([stable_hash64(keys.slice(i, step).to_pylist()) for i in range(0, len(keys), step)]
                           or [np.empty(0, np.uint64)])
        order = np.argsort(h, kind="stable")
        self.hashes, self.keys = h[order], keys.take(pa.array(order, pa.int64()))

    def __len__(self) -> int:
        return len(self.hashes)

    def contains(self, keys: list) -> list:
        """For each key, whether it is done."""
        import numpy as np

        if not len(self.hashes) or not keys:
            return [False] * len(keys)
        h = stable_hash64(keys)
        pos = np.searchsorted(self.hashes, h)
        out = [False] * len(keys)
        n = len(self.hashes)
        for i in np.flatnonzero((pos < n) & (self.hashes[np.minimum(pos, n - 1)] == h)):
            j = int(pos[i])
            while j < n and self.hashes[j] == h[i]:  # the run of equal hashes (almost always one)
                if self.keys[j].as_py() == keys[i]:
                    out[i] = True
                    break
                j += 1
        return out


@dataclass
class InputScan:
    """What the keys-only pre-pass learns: the row count and the later duplicates."""

    rows: int
    duplicates: dict  # input_row of a later duplicate -> input_row of the first occurrence


def scan(source: PairsInput) -> InputScan:
    """Two passes over (query_id, doc_id) only, in file order, so a later duplicate is the same row
    in every attempt. The first keeps a 32-bit hash per row (4 bytes: 4 MB for 1M pairs, sorted in
    place) and finds the hashes that repeat; the second compares the real keys of the rows with
    those hashes only, so a hash collision (about a hundred rows in 1M) is never taken for a
    duplicate. The pass's peak barely grows with the input's size (docs/benchmarks.md)."""
    import numpy as np

    def hashed(b: pa.Table) -> tuple[pa.Table, list, np.ndarray]:
        b = b.filter(pc.and_(pc.is_valid(b.column("query_id")), pc.is_valid(b.column("doc_id"))))
        keys = pair_keys(b).to_pylist()
        return b, keys, np.fromiter(map(hash, keys), np.int64, len(keys)).astype(np.uint32)

    hashes, n = [], 0
    for b in source.blocks(columns=["query_id", "doc_id"]):
        n += b.num_rows
        hashes.append(hashed(b)[2])
    h = np.concatenate(hashes) if hashes else np.empty(0, np.uint32)
    del hashes
    h.sort()  # in place: no second copy of the hashes, no argsort
    repeated = np.unique(h[1:][h[1:] == h[:-1]])
    del h
    if not repeated.size:
        return InputScan(n, {})
    first: dict[str, str] = {}
    dups: dict[str, str] = {}
    for b in source.blocks(columns=["query_id", "doc_id"]):
        b, keys, bh = hashed(b)
        rows = np.flatnonzero(np.isin(bh, repeated))
        if not rows.size:
            continue
        locs = b.column("input_row").take(pa.array(rows)).to_pylist()
        for i, loc in zip(rows, locs):
            k = keys[i]
            if k in first:
                dups[loc] = first[k]
            else:
                first[k] = loc
    return InputScan(n, dups)


def label_columns(results: list[GradeResult], truncated: list[bool], model: str, version: str) -> dict:
    return {
        "status": ["ok" if r.error is None else "failed" for r in results],
        "error": [r.error for r in results],
        "grade": [r.grade for r in results],
        "expected_grade": [r.expected for r in results],
        "grade_probs": [r.probs for r in results],
        "grade_mass": [r.mass for r in results],
        "model": [model] * len(results),
        "model_version": [version] * len(results),
        "truncated": truncated,
        "prompt_tokens": [r.prompt_tokens for r in results],
        "_key": None,
        "_status": ["ok" if r.error is None else "rejected" for r in results],
        "_reason": [r.error for r in results],
        "_detail": [r.detail for r in results],
        "_raw": [r.raw for r in results],
    }


class GradeWorker:
    """A Ray Data actor: holds one engine and grades batches of pairs (pyarrow in, pyarrow out)."""

    def __init__(self, engine_cfg, grading: GradeConfig, seed: int = 0):
        from ..engines import make_engine

        self.engine = make_engine(engine_cfg, seed)
        self.grading = grading
        self.template = load_template(grading.prompt)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        if self.engine.reads_pairs:  # a cross-encoder reads (query, document) itself, no prompt
            results, truncated = call_engine(self.engine, self.engine.grade_pairs, rows)
        else:
            prompts = [build_prompt(self.engine, self.template, r, self.grading.max_doc_tokens) for r in rows]
            keys = {"keys": [pair_key(r["query_id"], r["doc_id"]) for r in rows]} if self.engine.takes_keys else {}
            results = call_engine(self.engine, self.engine.grade, [p.prompt for p in prompts],
                                  top_logprobs=self.grading.top_logprobs, **keys)
            truncated = [p.truncated for p in prompts]
        cols = label_columns(results, truncated, self.engine.model_id, self.engine.model_version)
        cols["_key"] = [pair_key(r["query_id"], r["doc_id"]) for r in rows]
        return append_label_columns(batch, cols)


def append_label_columns(t: pa.Table, cols: dict) -> pa.Table:
    """`t` with the label columns (LABEL_FIELDS types; `_key`, `_reason`, ... as strings); a value
    of None is a column of nulls."""
    types = {f.name: f for f in LABEL_FIELDS}
    for name, values in cols.items():
        field = types.get(name, pa.field(name, pa.string()))
        if values is None:
            arr = pa.nulls(t.num_rows, field.type)
        elif isinstance(values, (pa.Array, pa.ChunkedArray)):
            arr = values.cast(field.type)
        else:
            arr = pa.array(values, type=field.type)
        t = t.append_column(field, arr)
    return t


# -- the two actor stages ---------------------------------------------------------------------

def _reject(reason: list, detail: list, mask, code: str, what) -> None:
    for i, bad in enumerate(mask):
        if bad and reason[i] is None:
            reason[i], detail[i] = code, what(i)


class PrepareWorker:
    """Checks rows, joins document text, skips finished keys and builds prompt token ids.

    A stage of its own before the engines: this per-row Python work then runs on another core
    while an engine computes, instead of between its batches.
    """

    def __init__(self, engine_cfg: EngineConfig, grading: GradeConfig, *, tokenize: bool,
                 done=None, duplicates: Optional[dict] = None, corpus=None):
        import ray

        from ..models import resolve
        
        done = ray.get(done) if isinstance(done, ray.ObjectRef) else done
        self.done = DoneKeys(done if done is not None else pa.array([], pa.string()))
        self.duplicates = duplicates or {}
        self.corpus = ray.get(corpus) if isinstance(corpus, ray.ObjectRef) else corpus
        self.max_len = engine_cfg.max_model_len
        self.encoder = None
        if tokenize:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(resolve(engine_cfg.model))
            self.encoder = PromptEncoder(tok, load_template(grading.prompt), grading.max_doc_tokens)

    def __call__(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        reason, detail = batch.column("_reason").to_pylist(), batch.column("_detail").to_pylist()
        loc = batch.column("input_row").to_pylist()
        where = lambda i: f"{loc[i]}: " if loc[i] else ""  # noqa: E731
        # Before any other reason: a later duplicate's key carries its location, which the output
        # row reproduces only from error "duplicate_pair" (row_keys), so the two must agree.
        dup = [x in self.duplicates for x in loc]
        for i in (i for i, d in enumerate(dup) if d):
            reason[i], detail[i] = DUPLICATE_PAIR, f"{where(i)}duplicate of the pair at {self.duplicates[loc[i]]} (graded there)"
        if self.corpus is not None:
            batch = self._join(batch, reason, detail, where)
        for col, code in (("query_id", MISSING_FIELD), ("doc_id", MISSING_FIELD), ("query", MISSING_FIELD),
                          ("text", EMPTY_TEXT)):
            empty = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(batch.column(col)), ""), True).to_pylist()
            _reject(reason, detail, empty, code, lambda i, c=col: f"{where(i)}{c} is missing or empty")
        keys = row_keys(batch, pa.array(dup, pa.bool_())).to_pylist()
        todo = [not d for d in self.done.contains(keys)]
        if not all(todo):
            keep = pa.array(todo, pa.bool_())
            batch = batch.filter(keep)
            reason, detail, keys = ([x for x, t in zip(v, todo) if t] for v in (reason, detail, keys))
            n = batch.num_rows
        ids: list = [None] * n
        truncated: list = [None] * n
        if self.encoder is not None:
            cols = {c: batch.column(c).to_pylist() for c in ("title", "text", "query", "doc_meta")}
            for i in range(n):
                if reason[i] is None:
                    ids[i], truncated[i] = self.encoder(_fields(cols, i))
                    if len(ids[i]) >= self.max_len:
                        reason[i], detail[i] = PROMPT_TOO_LONG, f"prompt exceeds max_model_len={self.max_len} tokens"
                        ids[i] = None
        out = batch.set_column(batch.schema.get_field_index("_reason"), "_reason", pa.array(reason, pa.string()))
        out = out.set_column(out.schema.get_field_index("_detail"), "_detail", pa.array(detail, pa.string()))
        return (out.append_column("_key", pa.array(keys, pa.string()))
                .append_column("prompt_token_ids", pa.array(ids, pa.list_(pa.int32())))
                .append_column("truncated", pa.array(truncated, pa.bool_())))

    def _join(self, batch, reason, detail, where):
        """Document text by doc_id for rows that have none (a missing doc_id: `unknown_doc`)."""
        idx = pc.index_in(batch.column("doc_id"), value_set=self.corpus.column("doc_id"))
        need = pc.is_null(batch.column("text"))
        unknown = pc.and_(need, pc.is_null(idx)).to_pylist()
        _reject(reason, detail, unknown, UNKNOWN_DOC,
                lambda i: f"{where(i)}doc_id {batch.column('doc_id')[i].as_py()!r} is not in the corpus")
        for col in ("text", "title", "doc_meta"):
            if col in self.corpus.column_names:
                looked = self.corpus.column(col).take(idx)
                batch = batch.set_column(batch.schema.get_field_index(col), col,
                                         pc.if_else(need, looked, batch.column(col)))
        return batch


def _fields(cols: dict, i: int) -> dict:
    from ..prompts import doc_fields

    return doc_fields({"title": cols["title"][i], "text": cols["text"][i], "query": cols["query"][i],
                       "doc_meta": cols["doc_meta"][i]})


class EngineWorker:
    """Grades the rows PrepareWorker let through; the rows it failed pass with their reason.

    With prompt token ids (vLLM) the engine gets them directly; otherwise (other backends, the
    cross-encoder student) the rows go through GradeWorker, which builds its own inputs.
    """

    def __init__(self, engine_cfg: EngineConfig, grading: GradeConfig, seed: int = 0, tokenized: bool = True,
                 keep_text: bool = False):
        self.grading, self.tokenized, self.keep_text = grading, tokenized, keep_text
        self.thread = EngineThread()  # the engine is built and called on one thread
        if tokenized:
            from ..engines import make_engine
            self.engine = self.thread.run(make_engine, engine_cfg, seed)
        else:
            self.inner = self.thread.run(GradeWorker, engine_cfg, grading, seed)
            self.engine = self.inner.engine

    def __call__(self, batch: pa.Table) -> pa.Table:
        import time

        go = pc.is_null(batch.column("_reason"))
        todo, failed = batch.filter(go), batch.filter(pc.invert(go))
        parts = []
        t0 = time.time()
        if todo.num_rows:
            if self.tokenized:
                ids = todo.column("prompt_token_ids").to_pylist()
                results = self.thread.run(call_engine, self.engine, self.engine.grade, ids,
                                          top_logprobs=self.grading.top_logprobs)
                cols = label_columns(results, todo.column("truncated").to_pylist(), self.engine.model_id,
                                     self.engine.model_version)
                cols["_key"] = todo.column("_key")
                parts.append(append_label_columns(todo.drop_columns(["_reason", "_detail", "truncated", "_key"]), cols))
            else:
                out = self.thread.run(self.inner, todo.drop_columns(["_reason", "_detail", "_key", "truncated",
                                                                      "prompt_token_ids"]))
                parts.append(out.append_column("prompt_token_ids", pa.nulls(out.num_rows, pa.list_(pa.int32()))))
        if failed.num_rows:
            m = failed.num_rows
            reasons = failed.column("_reason")
            cols = {"status": pa.array(["failed"] * m, pa.string()), "error": reasons,
                    "grade": None, "expected_grade": None, "grade_probs": None, "grade_mass": None,
                    "model": pa.array([self.engine.model_id] * m, pa.string()),
                    "model_version": pa.array([self.engine.model_version] * m, pa.string()),
                    "truncated": failed.column("truncated"), "prompt_tokens": None,
                    "_key": failed.column("_key"), "_status": pa.array(["rejected"] * m, pa.string()),
                    "_reason": reasons, "_detail": failed.column("_detail"), "_raw": failed.column("_record")}
            parts.append(append_label_columns(failed.drop_columns(["_reason", "_detail", "truncated", "_key"]), cols))
        out = pa.concat_tables(parts, promote_options="default") if len(parts) > 1 else parts[0]
        # The engine's own counters, for the stage's steady rate: when this batch finished and how
        # many pairs the engine graded in it (runner.EngineCounters).
        now = time.time()
        out = (out.append_column(ENGINE_T, pa.array([now] * out.num_rows, pa.float64()))
               .append_column(ENGINE_N, pa.array([todo.num_rows] + [0] * (out.num_rows - 1), pa.int32()))
               .append_column(ENGINE_S, pa.array([now - t0] + [0.0] * (out.num_rows - 1), pa.float64())))
        # The document text is not sent back to the driver unless the output keeps it (judgments).
        return out.drop_columns(["prompt_token_ids"] if self.keep_text else ["prompt_token_ids", "text"])


# -- the stage --------------------------------------------------------------------------------

def resume_keys(writer) -> pa.Array:
    """Keys of the rows finished parts hold; first deletes rejected parts whose data part was
    never written (killed between the two writes), so those rows are redone and counted once."""
    import pyarrow.parquet as pq

    cols = [c for c in ("query_id", "doc_id", "error", "input_row") if c in writer.schema.names]
    files = sorted((writer.work / "data").glob("part-*.parquet"))
    keys = [row_keys(pq.read_table(f, columns=cols)) for f in files]
    done = pa.chunked_array(keys, pa.string()).combine_chunks() if keys else pa.array([], pa.string())
    for f in sorted((writer.work / "rejected").glob("part-*.parquet")):
        k = pq.read_table(f, columns=["key"]).column("key")
        if not pc.all(pc.is_in(k, value_set=done)).as_py():
            f.unlink()
    return done


def is_tokenized(engine: EngineConfig) -> bool:
    """Engines that take prompt token ids (vLLM's generative models); others build their own inputs."""
    from ..engines import reads_token_ids

    return reads_token_ids(engine)


def grade(writer, pairs, engine: EngineConfig, grading: GradeConfig, seed: int = 0,
          corpus: Optional[str] = None, scanned: Optional[InputScan] = None) -> int:
    """Grade `pairs` (a table, a PairsInput or a path) into `writer`, skipping the rows earlier
    attempts finished; returns the number of input rows (what the stage must account for).
    `scanned`: the keys pre-pass of these files, when the caller already made it."""
    import ray

    from ..engines.memory import declare
    from ..raycluster import pool_args
    from .runner import dataset_of, heartbeat, stream_into

    if engine.tensor_parallel_size > engine.gpus_per_actor > 0:
        raise ValueError(f"tensor_parallel_size {engine.tensor_parallel_size} needs gpus_per_actor >= it "
                         f"(each engine actor holds the GPUs of its shards); got {engine.gpus_per_actor}")
    done = resume_keys(writer)
    key = f"{writer.stage}.engine"
    pool = pool_args(engine, vllm=is_tokenized(engine), memory=declare(engine, writer.stage), key=key)
    engines = getattr(pool["compute"], "max_size", None) or 1
    if isinstance(pairs, pa.Table):
        t = table_stream(pairs)
        if pc.count_distinct(pair_keys(t)).as_py() != t.num_rows:
            raise ValueError("pairs table has duplicate (query_id, doc_id) pairs")
        total, duplicates = t.num_rows, {}
        # Sorted by what the prompt shows first (the document, or the query), consecutive prompts
        # share that prefix, which vLLM's prefix cache computes once.
        
        order = ["doc_id", "query_id"] if load_template(grading.prompt).leading_field() == "text" else ["query_id", "doc_id"]
        t = t.sort_by([(c, "ascending") for c in order])
        ds = dataset_of(t, engine.batch_size)
    else:
        source = pairs if isinstance(pairs, (PairsInput, DatasetPairs)) else PairsInput(str(pairs))
        source.check_columns(corpus is not None)
        if scanned is None:
            with heartbeat(writer.stage, "reading the pairs' keys (rows, duplicates)"):
                scanned = scan(source)
        s = scanned
        total, duplicates = s.rows, s.duplicates
        # At most one read task per engine actor: reading is far faster than grading, so more
        # reads only hold more decoded files at once. Ray Data's default started several at the
        # start of a many-file run, and a read worker's peak then rose above any one file's alone.
        ds = source.dataset(rows_per_block=engine.batch_size, concurrency=engines)
        # Ray Data merges a task's outputs up to 128 MiB blocks: a whole input file would become one
        # part. Blocks of about one engine batch (~2 KiB a row) keep parts, memory and resumption
        # fine-grained. (repartition(target_num_rows_per_block=) would do it by rows, but its tasks
        # ask for a whole CPU and hang beside the engine pool on 2 cores.)
        ds.context.target_max_block_size = max(16 << 10, engine.batch_size * (2 << 10))
    tokenize = is_tokenized(engine)
    if tokenize:  # the choice the engine actors make, said where the user reads it
        from ..hardware import resolve_dtype

        resolve_dtype(engine.dtype, gpu=engine.gpus_per_actor > 0, what=f"[{writer.stage}] engine")
    if engine.mode == "batch" and engine.batch_dir is None and getattr(writer, "work", None) is not None:
        # submitted batches are recorded in the stage's work folder: a rerun polls them again
        engine = engine.model_copy(update={"batch_dir": str(writer.work)})
    ds = ds.map_batches(PrepareWorker, batch_size=engine.batch_size, batch_format="pyarrow", zero_copy_batch=True,
                        fn_constructor_kwargs={"engine_cfg": engine, "grading": grading, "tokenize": tokenize,
                                               "done": ray.put(done) if len(done) else None,
                                               "duplicates": duplicates,
                                               "corpus": ray.put(read_corpus(corpus)) if corpus else None},
                        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, engines)), num_cpus=0.25)
    ds = ds.map_batches(EngineWorker, batch_size=engine.batch_size, batch_format="pyarrow", zero_copy_batch=True,
                        fn_constructor_kwargs={"engine_cfg": engine, "grading": grading, "seed": seed,
                                               "tokenized": tokenize, "keep_text": "text" in writer.schema.names},
                        **pool)
    stream_into(writer, ds, total=total, done=len(done), keep_failed=True, engine_key=key, declared=pool.get("memory"))
    return total
