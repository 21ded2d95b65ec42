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

import io
import json
import re
import string
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Optional

import pyarrow as pa
import pyarrow.compute as pc

from .config import EngineConfig, GradeConfig
from .schema import MAX_RECORD_CHARS

INPUT_ROW = pa.field("input_row", pa.string())
# What a pairs file may carry, in the types the stages use; other fields are ignored.
RAW = pa.schema([
    ("query_id", pa.string()), ("query", pa.string()), ("doc_id", pa.string()), ("title", pa.string()),
    ("text", pa.string()), ("doc_meta", pa.string()), ("source", pa.string()), ("split", pa.string()),
    ("bm25_rank", pa.int32()), ("bm25_score", pa.float32()),
])
CONTROL = [INPUT_ROW, pa.field("_reason", pa.string()), pa.field("_detail", pa.string()),
           pa.field("_record", pa.string())]
STREAM = pa.schema(list(RAW) + CONTROL)
REQUIRED = ("query_id", "query", "doc_id", "text")
JSONL = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".ndjson.gz")
PARQUET = (".parquet",)
ROWS_PER_BLOCK = 4096
HASH_UP_TO = 1 << 30  # bytes: bigger files (and files at a URI) are fingerprinted by size and mtime


def with_input_row(schema: pa.Schema) -> pa.Schema:
    """A graded stage's schema plus where each row came from (the standalone export)."""
    return schema if INPUT_ROW.name in schema.names else schema.append(INPUT_ROW)


# -- reading ----------------------------------------------------------------------------------

@dataclass
class PairsInput:
    """Pairs files: a JSONL or Parquet file, or a folder of them, local or at a URI (pyarrow.fs)."""

    path: str

    def __post_init__(self):
        import pyarrow.fs as pafs

        if "://" in self.path:
            self.fs, root = pafs.FileSystem.from_uri(self.path)
        else:
            self.fs, root = pafs.LocalFileSystem(), str(Path(self.path).expanduser().resolve())
        info = self.fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"pairs {self.path} not found")
        if info.type == pafs.FileType.Directory:
            sel = pafs.FileSelector(root, recursive=True)
            files = [f.path for f in self.fs.get_file_info(sel) if f.is_file and _fmt(f.path)
                     and not any(p.startswith((".", "_")) for p in f.path[len(root):].split("/") if p)]
            self.root = root
        else:
            files, self.root = [root], root.rsplit("/", 1)[0]
        self.files = sorted(files)
        if not self.files:
            raise FileNotFoundError(f"pairs {self.path}: no {'/'.join(JSONL + PARQUET)} files")

    def name(self, path: str) -> str:
        return path[len(self.root):].lstrip("/")

    def fingerprint(self, hash_up_to: int = HASH_UP_TO) -> dict:
        """What each file holds, for deciding what an earlier run's rows still stand for: size,
        modification time, and (local files up to `hash_up_to` bytes) a SHA-256 of the content."""
        out = {}
        for path in self.files:
            info = self.fs.get_file_info(path)
            entry = {"size": info.size, "mtime_ns": info.mtime_ns}
            if isinstance(self.fs, _local_fs()) and info.size is not None and info.size <= hash_up_to:
                entry["sha256"], entry["ends_newline"] = _file_hash(path)
            out[self.name(path)] = entry
        return out

    def unchanged_rows(self, before: dict) -> dict[str, Optional[int]]:
        """Files whose rows from a run over `before` (an earlier fingerprint) still hold: file name
        -> None (the file is as it was) or the byte size it had (a JSONL file that only grew: its
        first lines are the old ones). Other files are read anew."""
        now = self.fingerprint()
        keep: dict[str, Optional[int]] = {}
        for name, new in now.items():
            old = before.get(name)
            if not old or not old.get("sha256") or not new.get("sha256"):
                if old and old == new:  # no hash (remote or huge): size and mtime must both match
                    keep[name] = None
                continue
            if old["sha256"] == new["sha256"]:
                keep[name] = None
            elif (_fmt(name) == "jsonl" and not name.lower().endswith(".gz") and old.get("ends_newline")
                  and new["size"] > old["size"]
                  and _file_hash(self.root + "/" + name, limit=old["size"])[0] == old["sha256"]):
                keep[name] = old["size"]
        return keep

    def check_columns(self, have_corpus: bool) -> None:
        """A clear error up front when the first file lacks a required column (later rows that
        lack one are rejected one by one)."""
        cols = None
        for first in self.files:  # the first file with a row (empty part files are common)
            if _fmt(first) == "parquet":
                import pyarrow.parquet as pq

                with self.fs.open_input_file(first) as f:
                    meta = pq.ParquetFile(f)
                    if meta.metadata.num_rows:
                        cols = meta.schema_arrow.names
                        break
                continue
            with self.fs.open_input_stream(first, compression="detect") as f:
                for line in f.read(1 << 20).split(b"\n"):
                    if not line.strip():
                        continue
                    try:  # a JSON line has only the keys it has: the first good line's
                        obj = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(obj, dict):
                        cols = list(obj)
                        break
            if cols is not None:
                break
        if cols is None:
            return  # no file has a readable row: nothing to check, each bad line is its own row
        need = [c for c in REQUIRED if not (c == "text" and have_corpus)]
        missing = [c for c in need if c not in cols]
        if missing:
            raise ValueError(f"{self.path}: pairs lack required columns {missing} (have {cols}"
                             f"{'' if have_corpus else '; give --corpus to join the text by doc_id'})")

    def blocks(self, columns: Optional[list[str]] = None) -> Iterator[pa.Table]:
        """Every row in file order, in the driver (the keys-only pre-pass)."""
        for p in self.files:
            yield from _file_blocks(self.fs, p, self.name(p), columns)

    def dataset(self, rows_per_block: int = ROWS_PER_BLOCK):
        """The same rows as a Ray Data dataset, read by parallel streaming tasks.

        Blocks of one engine batch: Ray Data merges a task's outputs into one block, so the read
        block size sets how many rows each written part (the unit of resumption) holds.
        """
        import ray

        # A read task's default of one CPU would wait forever beside an engine pool on 2 cores.
        return ray.data.read_datasource(_datasource(self.files, self.fs, self.root, rows_per_block), num_cpus=0.25)


def _local_fs():
    import pyarrow.fs as pafs
    return pafs.LocalFileSystem


def _file_hash(path: str, limit: Optional[int] = None) -> tuple[str, bool]:
    """SHA-256 of a file's first `limit` bytes (all by default) and whether they end with a newline."""
    import hashlib

    h, last, left = hashlib.sha256(), b"", limit
    with open(path, "rb") as f:
        while left is None or left > 0:
            chunk = f.read(1 << 22 if left is None else min(1 << 22, left))
            if not chunk:
                break
            h.update(chunk)
            last = chunk[-1:]
            if left is not None:
                left -= len(chunk)
    return h.hexdigest(), last == b"\n"


def input_file(loc: Optional[str]) -> Optional[str]:
    """The file name of an `input_row` ("a.jsonl:12" or "b.parquet[3]")."""
    if not loc:
        return None
    if loc.endswith("]") and "[" in loc:
        return loc.rsplit("[", 1)[0]
    return loc.rsplit(":", 1)[0]


def _fmt(path: str) -> Optional[str]:
    p = path.lower()
    return "jsonl" if p.endswith(JSONL) else "parquet" if p.endswith(PARQUET) else None


def _datasource(files, fs, root, rows_per_block: int):
    from ray.data.datasource import FileBasedDatasource

    class PairsDatasource(FileBasedDatasource):
        """Streams each file in blocks; bad lines become rows with a reason, never an exception."""

        def _open_input_source(self, filesystem, path, **open_args):
            if _fmt(path) == "parquet":  # needs random access
                return filesystem.open_input_file(path)
            return super()._open_input_source(filesystem, path, **open_args)

        def _read_stream(self, f, path):
            name = path[len(root):].lstrip("/") if path.startswith(root) else path
            if _fmt(path) == "jsonl":
                yield from _jsonl_blocks(f, name, rows=rows_per_block)
            else:
                yield from _parquet_blocks(f, name, None, rows=rows_per_block)

    return PairsDatasource(files, filesystem=fs)


def _file_blocks(fs, path, name, columns):
    if _fmt(path) == "parquet":
        with fs.open_input_file(path) as f:
            yield from _parquet_blocks(f, name, columns)
    else:
        with fs.open_input_stream(path, compression="detect") as f:
            yield from _jsonl_blocks(f, name)


def _jsonl_blocks(f, name: str, rows: int = ROWS_PER_BLOCK) -> Iterator[pa.Table]:
    lines, nums, carry, lineno = [], [], b"", 0
    while True:
        chunk = f.read(1 << 22)
        if not chunk:
            break
        parts = (carry + chunk).split(b"\n")
        carry = parts.pop()
        for raw in parts:
            lineno += 1
            if raw.strip():
                lines.append(raw)
                nums.append(lineno)
        while len(lines) >= rows:
            yield _parse_lines(lines[:rows], nums[:rows], name)
            lines, nums = lines[rows:], nums[rows:]
    if carry.strip():
        lines.append(carry)
        nums.append(lineno + 1)
    for i in range(0, len(lines), rows):
        yield _parse_lines(lines[i:i + rows], nums[i:i + rows], name)


def _parse_lines(lines: list[bytes], nums: list[int], name: str) -> pa.Table:
    """Arrow's JSON reader for the block; line by line only when the block has a bad line."""
    import pyarrow.json as pj

    locs = [f"{name}:{n}" for n in nums]
    try:
        data = b"\n".join(lines)
        t = pj.read_json(io.BytesIO(data), read_options=pj.ReadOptions(block_size=len(data) + 1),
                         parse_options=pj.ParseOptions(explicit_schema=RAW, unexpected_field_behavior="ignore"))
        if t.num_rows == len(lines):
            return _stream_table(t, locs)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    rows = []
    for raw, loc in zip(lines, locs):
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            rows.append(_bad(loc, "bad_encoding", f"{loc}: not UTF-8 ({e.reason} at byte {e.start})",
                             raw.decode("utf-8", "replace")))
            continue
        try:
            obj = json.loads(s)
        except ValueError as e:
            rows.append(_bad(loc, "bad_json", f"{loc}: not valid JSON ({getattr(e, 'msg', e)})", s))
            continue
        if not isinstance(obj, dict):
            rows.append(_bad(loc, "bad_json", f"{loc}: not a JSON object", s))
            continue
        row = {"input_row": loc}
        for fld in RAW:
            v = obj.get(fld.name)
            if v is None:
                row[fld.name] = None
                continue
            v, wrong = _strict(fld, v)
            if wrong:
                row = _bad(loc, "bad_type", f"{loc}: field {fld.name!r} {wrong}", s)
                break
            if isinstance(v, str):
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800"
                    row = _bad(loc, "bad_encoding", f"{loc}: field {fld.name!r} is not valid Unicode", s)
                    break
            row[fld.name] = v
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=STREAM)


# Ids may be integers (written as their decimal string); every other text field must be a string.
ID_FIELDS = ("query_id", "doc_id")


def _strict(fld: pa.Field, v):
    """(value in the field's type, None) or (None, what is wrong with it): never a coercion that
    would turn a number or a list into text that gets graded."""
    if pa.types.is_string(fld.type):
        if isinstance(v, str):
            return v, None
        if fld.name in ID_FIELDS and isinstance(v, int) and not isinstance(v, bool):
            return str(v), None
        return None, f"must be a string{' or an integer' if fld.name in ID_FIELDS else ''}, got {_json_type(v)}"
    if isinstance(v, bool):
        return None, f"must be a number, got {_json_type(v)}"
    if pa.types.is_integer(fld.type):
        if isinstance(v, int) or isinstance(v, float) and v.is_integer():
            return int(v), None
        return None, f"must be an integer, got {_json_type(v)}"
    if isinstance(v, (int, float)):
        return float(v), None
    return None, f"must be a number, got {_json_type(v)}"


def _json_type(v) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(v), type(v).__name__)


def _bad(loc: str, reason: str, detail: str, record: str) -> dict:
    return {"input_row": loc, "_reason": reason, "_detail": detail, "_record": record[:MAX_RECORD_CHARS]}


def _parquet_blocks(f, name: str, columns, rows: int = ROWS_PER_BLOCK) -> Iterator[pa.Table]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(f)
    have = pf.schema_arrow.names
    cols = [c for c in (columns or RAW.names) if c in have]
    offset = 0
    for rb in pf.iter_batches(batch_size=rows, columns=cols):
        t = pa.Table.from_batches([rb])
        yield _stream_table(t, [f"{name}[{i}]" for i in range(offset, offset + t.num_rows)])
        offset += t.num_rows


def _stream_table(t: pa.Table, locs: list[str]) -> pa.Table:
    """`t` in the STREAM schema; a string column with invalid UTF-8 rejects just its bad rows."""
    n = t.num_rows
    reason: list = [None] * n
    detail: list = [None] * n
    cols = {}
    for fld in RAW:
        if fld.name not in t.column_names:
            cols[fld.name] = pa.nulls(n, fld.type)
            continue
        col = t.column(fld.name)
        if not _castable(col.type, fld):  # a float `text`, a list `query`: bad_type, never stringified
            for i in range(n):
                if col[i].is_valid and reason[i] is None:
                    reason[i], detail[i] = "bad_type", f"{locs[i]}: field {fld.name!r} must be {_arrow_need(fld)}, got {col.type}"
            cols[fld.name] = pa.nulls(n, fld.type)
            continue
        try:
            cols[fld.name] = col.cast(fld.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = []
            for i, v in enumerate(col.to_pylist()):
                if isinstance(v, bytes):
                    try:
                        v = v.decode("utf-8")
                    except UnicodeDecodeError:
                        reason[i], detail[i], v = "bad_encoding", f"{locs[i]}: field {fld.name!r} is not UTF-8", None
                try:
                    values.append(None if v is None else pa.scalar(v).cast(fld.type).as_py())
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    values.append(None)
            cols[fld.name] = pa.array(values, fld.type)
    cols["input_row"] = pa.array(locs, pa.string())
    cols["_reason"] = pa.array(reason, pa.string())
    cols["_detail"] = pa.array(detail, pa.string())
    cols["_record"] = pa.nulls(n, pa.string())
    return pa.table(cols, schema=STREAM)


def _castable(t: pa.DataType, fld: pa.Field) -> bool:
    """Which Parquet column types a field takes as they are (binary: checked as UTF-8 row by row)."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_null(t):
        return True
    if pa.types.is_string(fld.type):
        return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
                or pa.types.is_large_binary(t) or fld.name in ID_FIELDS and pa.types.is_integer(t))
    if pa.types.is_integer(fld.type):
        return pa.types.is_integer(t)
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _arrow_need(fld: pa.Field) -> str:
    if pa.types.is_string(fld.type):
        return "a string column" + (" or an integer one" if fld.name in ID_FIELDS else "")
    return "an integer column" if pa.types.is_integer(fld.type) else "a numeric column"


def table_stream(pairs: pa.Table) -> pa.Table:
    """An in-run pairs table in the STREAM schema (no file, so no input_row)."""
    cols = {f.name: (pairs.column(f.name).cast(f.type) if f.name in pairs.column_names else pa.nulls(pairs.num_rows, f.type))
            for f in STREAM}
    return pa.table(cols, schema=STREAM)


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
        duplicate = (pc.fill_null(pc.equal(t.column("error"), "duplicate_pair"), False)
                     if "error" in t.column_names else pa.nulls(t.num_rows, pa.bool_()))
    dup_key = pc.binary_join_element_wise(keys, pc.binary_join_element_wise(pa.scalar("@"), loc, ""), "\t")
    keys = pc.if_else(pc.fill_null(duplicate, False), dup_key, keys)
    return pc.coalesce(keys, pc.binary_join_element_wise(pa.scalar("@"), loc, ""))


@dataclass
class InputScan:
    """What the keys-only pre-pass learns: the row count and the later duplicates."""

    rows: int
    duplicates: dict  # input_row of a later duplicate -> input_row of the first occurrence


def scan(source: PairsInput) -> InputScan:
    """Two passes over (query_id, doc_id) only, in file order, so a later duplicate is the same row
    in every attempt. The first keeps a 64-bit hash per row (8 bytes: 1M pairs ~ 16 MB with the
    sort); the second, only when hashes repeat, compares the real keys of those rows, so a hash
    collision is never taken for a duplicate."""
    import numpy as np

    def keyed(b: pa.Table) -> pa.Table:
        return b.filter(pc.and_(pc.is_valid(b.column("query_id")), pc.is_valid(b.column("doc_id"))))

    hashes, n = [], 0
    for b in source.blocks(columns=["query_id", "doc_id"]):
        n += b.num_rows
        keys = pair_keys(keyed(b)).to_pylist()
        hashes.append(np.fromiter(map(hash, keys), np.int64, len(keys)))
    h = np.concatenate(hashes) if hashes else np.empty(0, np.int64)
    del hashes
    order = np.argsort(h, kind="stable")
    sh = h[order]
    same = sh[1:] == sh[:-1]
    if not same.any():
        return InputScan(n, {})
    repeated = np.zeros(len(sh), bool)
    repeated[1:] |= same
    repeated[:-1] |= same
    candidates = np.sort(order[repeated])  # ordinals (among rows with both ids) of rows whose hash repeats
    del h, order, sh, same, repeated
    first: dict[str, str] = {}
    dups: dict[str, str] = {}
    ordinal = 0
    for b in source.blocks(columns=["query_id", "doc_id"]):
        b = keyed(b)
        lo, hi = np.searchsorted(candidates, [ordinal, ordinal + b.num_rows])
        ordinal += b.num_rows
        if lo == hi:
            continue
        rows = pa.array(candidates[lo:hi] - (ordinal - b.num_rows))
        sub = b.take(rows)
        for k, loc in zip(pair_keys(sub).to_pylist(), sub.column("input_row").to_pylist()):
            if k in first:
                dups[loc] = first[k]
            else:
                first[k] = loc
    return InputScan(n, dups)


# -- prompts as token ids ---------------------------------------------------------------------

class PromptEncoder:
    """The grading prompt of a pair as token ids, without tokenizing the whole prompt per pair.

    A prompt is the template's fixed text (instructions and chat markup, most of its tokens)
    with the pair's fields in between. The fixed pieces are tokenized once; per pair only the
    fields are, cut where a byte-level BPE pre-tokenizer splits anyway (a field takes the space
    before it and ends before a space or newline), so the concatenated ids are those of the whole
    prompt. That is checked against `build_prompt` + a full encode on the first pairs and on a
    sample after; one difference switches the shortcut off for good. Fields that start or end
    with whitespace take the full path.
    """

    def __init__(self, tokenizer, template, max_doc_tokens: int, check_first: int = 64, check_every: int = 997):
        from .grading import assistant_prefix

        self.tok, self.template, self.max_doc_tokens = tokenizer, template, max_doc_tokens
        self.check_first, self.check_every, self.seen = check_first, check_every, 0
        self.encode_text = lru_cache(maxsize=4096)(lambda s: tuple(tokenizer.encode(s, add_special_tokens=False)))
        names = {f for src in (template.system or "", template.user) for _, f, _, _ in string.Formatter().parse(src) if f}
        marked = tokenizer.apply_chat_template(template.messages(**{n: f"\x01{n}\x02" for n in names}),
                                               tokenize=False, add_generation_prompt=True)
        parts = re.split("\x01(\\w+)\x02", marked + assistant_prefix(tokenizer, template.assistant_prefix))
        statics, self.slots = parts[0::2], []
        self.fast = len(parts) > 1
        for i, name in enumerate(parts[1::2]):
            lead = " " if statics[i].endswith(" ") else ""
            statics[i] = statics[i][: len(statics[i]) - len(lead)]
            after = statics[i + 1]
            if not statics[i] or statics[i][-1].isspace() and not statics[i].endswith("\n") or not after[:1].isspace():
                self.fast = False
            self.slots.append((name, lead))
        self.static_ids = [self.encode_text(s) for s in statics]
        self.names = names

    def __call__(self, fields: dict) -> tuple[list[int], bool]:
        """(token ids, whether the document was truncated) of one pair's template fields."""
        fast = self.fast and all(_clean(fields.get(n)) for n in self.names if n in fields)
        if not fast:
            return self._full(fields)
        ids, truncated = list(self.static_ids[0]), False
        for (name, lead), static in zip(self.slots, self.static_ids[1:]):
            value = fields.get(name, "unknown")
            if name == "text":
                tids = self.encode_text(value)
                if len(tids) > self.max_doc_tokens:
                    value, truncated = self.tok.decode(list(tids[: self.max_doc_tokens])) + " ...", True
                    if not _clean(value):
                        return self._full(fields)
            ids.extend(self.encode_text(lead + value))
            ids.extend(static)
        self.seen += 1
        if self.seen <= self.check_first or self.seen % self.check_every == 0:
            full, _ = self._full(fields)
            if full != ids:
                print(f"[label] prompt pieces tokenize differently from the whole prompt with this tokenizer; "
                      f"tokenizing whole prompts from now on", file=sys.stderr, flush=True)
                self.fast = False
                return full, truncated
        return ids, truncated

    def _full(self, fields: dict) -> tuple[list[int], bool]:
        from .grading import build_prompt

        p = build_prompt(self.tok, self.template, fields, self.max_doc_tokens, as_text=True)
        return self.tok.encode(p.prompt, add_special_tokens=False), p.truncated


def _clean(v) -> bool:
    return isinstance(v, str) and bool(v) and not v[0].isspace() and not v[-1].isspace()


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

        from .models import resolve
        from .prompts import load_template

        done = ray.get(done) if isinstance(done, ray.ObjectRef) else done
        self.done = set(done.to_pylist()) if done is not None and len(done) else set()
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
            reason[i], detail[i] = "duplicate_pair", f"{where(i)}duplicate of the pair at {self.duplicates[loc[i]]} (graded there)"
        if self.corpus is not None:
            batch = self._join(batch, reason, detail, where)
        for col, code in (("query_id", "missing_field"), ("doc_id", "missing_field"), ("query", "missing_field"),
                          ("text", "empty_text")):
            empty = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(batch.column(col)), ""), True).to_pylist()
            _reject(reason, detail, empty, code, lambda i, c=col: f"{where(i)}{c} is missing or empty")
        keys = row_keys(batch, pa.array(dup, pa.bool_())).to_pylist()
        todo = [k not in self.done for k in keys]
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
                        reason[i], detail[i] = "prompt_too_long", f"prompt exceeds max_model_len={self.max_len} tokens"
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
        _reject(reason, detail, unknown, "unknown_doc",
                lambda i: f"{where(i)}doc_id {batch.column('doc_id')[i].as_py()!r} is not in the corpus")
        for col in ("text", "title", "doc_meta"):
            if col in self.corpus.column_names:
                looked = self.corpus.column(col).take(idx)
                batch = batch.set_column(batch.schema.get_field_index(col), col,
                                         pc.if_else(need, looked, batch.column(col)))
        return batch


def _fields(cols: dict, i: int) -> dict:
    from .prompts import doc_fields

    return doc_fields({"title": cols["title"][i], "text": cols["text"][i], "query": cols["query"][i],
                       "doc_meta": cols["doc_meta"][i]})


class EngineWorker:
    """Grades the rows PrepareWorker let through; the rows it failed pass with their reason.

    With prompt token ids (vLLM) the engine gets them directly; otherwise (other backends, the
    cross-encoder student) the rows go through GradeWorker, which builds its own inputs.
    """

    def __init__(self, engine_cfg: EngineConfig, grading: GradeConfig, seed: int = 0, tokenized: bool = True,
                 keep_text: bool = False):
        from .grading import GradeWorker

        self.grading, self.tokenized, self.keep_text = grading, tokenized, keep_text
        if tokenized:
            from .engines import make_engine
            self.engine = make_engine(engine_cfg, seed)
        else:
            self.inner = GradeWorker(engine_cfg, grading, seed)
            self.engine = self.inner.engine

    def __call__(self, batch: pa.Table) -> pa.Table:
        from .engines.base import call_engine
        from .grading import append_label_columns, label_columns

        go = pc.is_null(batch.column("_reason"))
        todo, failed = batch.filter(go), batch.filter(pc.invert(go))
        parts = []
        if todo.num_rows:
            if self.tokenized:
                ids = todo.column("prompt_token_ids").to_pylist()
                results = call_engine(self.engine, self.engine.grade, ids, top_logprobs=self.grading.top_logprobs)
                cols = label_columns(results, todo.column("truncated").to_pylist(), self.engine.model_id,
                                     self.engine.model_version)
                cols["_key"] = todo.column("_key")
                parts.append(append_label_columns(todo.drop_columns(["_reason", "_detail", "truncated", "_key"]), cols))
            else:
                out = self.inner(todo.drop_columns(["_reason", "_detail", "_key", "truncated", "prompt_token_ids"]))
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
        # The document text is not sent back to the driver unless the output keeps it (judgments).
        return out.drop_columns(["prompt_token_ids"] if self.keep_text else ["prompt_token_ids", "text"])


# -- the stage --------------------------------------------------------------------------------

def read_corpus(path: str) -> pa.Table:
    """doc_id, title, text, doc_meta of a docs JSONL/Parquet file or folder, or of a finished
    run's corpus stage (a run folder or its corpus/ folder)."""
    from .corpus import doc_meta
    from .store import MANIFEST, read_parts

    p = Path(path)
    for stage in (p, p / "corpus"):
        if (stage / MANIFEST).is_file() and (stage / "data").is_dir():
            t = read_parts(stage / "data")
            break
    else:
        src = PairsInput(path)
        parts = []
        for f in src.files:
            if _fmt(f) == "parquet":
                import pyarrow.parquet as pq
                parts.append(pq.read_table(f, filesystem=src.fs))
            else:
                import pyarrow.json as pj
                with src.fs.open_input_stream(f, compression="detect") as fh:
                    try:
                        parts.append(pj.read_json(fh))
                    except pa.ArrowInvalid as e:
                        raise ValueError(f"corpus {f}: not readable as JSON lines ({e})") from None
        t = pa.concat_tables(parts, promote_options="permissive")
    if "doc_id" not in t.column_names or "text" not in t.column_names:
        raise ValueError(f"corpus {path}: needs doc_id and text columns (has {t.column_names})")
    meta_cols = [c for c in ("author", "space", "doc_type", "last_modified") if c in t.column_names]
    meta = [doc_meta({c: (None if v is None else str(v)) for c, v in zip(meta_cols, vals)})
            for vals in zip(*(t.column(c).to_pylist() for c in meta_cols))] if meta_cols else None
    return pa.table({"doc_id": t.column("doc_id").cast(pa.string()), "text": t.column("text").cast(pa.string()),
                     "title": t.column("title").cast(pa.string()) if "title" in t.column_names else pa.nulls(t.num_rows, pa.string()),
                     "doc_meta": pa.array(meta, pa.string()) if meta is not None else pa.nulls(t.num_rows, pa.string())})


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
    """vLLM generative models take prompt token ids; other engines build their own inputs."""
    from .rerank import is_cross_encoder

    return engine.backend == "vllm" and not is_cross_encoder(engine.model)


def grade(writer, pairs, engine: EngineConfig, grading: GradeConfig, seed: int = 0,
          corpus: Optional[str] = None, scanned: Optional[InputScan] = None) -> int:
    """Grade `pairs` (a table, a PairsInput or a path) into `writer`, skipping the rows earlier
    attempts finished; returns the number of input rows (what the stage must account for).
    `scanned`: the keys pre-pass of these files, when the caller already made it."""
    import ray

    from .raycluster import pool_args
    from .runner import dataset_of, stream_into

    done = resume_keys(writer)
    if isinstance(pairs, pa.Table):
        t = table_stream(pairs)
        if pc.count_distinct(pair_keys(t)).as_py() != t.num_rows:
            raise ValueError("pairs table has duplicate (query_id, doc_id) pairs")
        total, duplicates = t.num_rows, {}
        # Sorted by what the prompt shows first (the document, or the query), consecutive prompts
        # share that prefix, which vLLM's prefix cache computes once.
        from .prompts import load_template

        order = ["doc_id", "query_id"] if load_template(grading.prompt).leading_field() == "text" else ["query_id", "doc_id"]
        t = t.sort_by([(c, "ascending") for c in order])
        ds = dataset_of(t, engine.batch_size)
    else:
        source = pairs if isinstance(pairs, PairsInput) else PairsInput(str(pairs))
        source.check_columns(corpus is not None)
        s = scanned or scan(source)
        total, duplicates = s.rows, s.duplicates
        ds = source.dataset(rows_per_block=engine.batch_size)
        # Ray Data merges a task's outputs up to 128 MiB blocks: a whole input file would become one
        # part. Blocks of about one engine batch (~2 KiB a row) keep parts, memory and resumption
        # fine-grained. (repartition(target_num_rows_per_block=) would do it by rows, but its tasks
        # ask for a whole CPU and hang beside the engine pool on 2 cores.)
        ds.context.target_max_block_size = max(16 << 10, engine.batch_size * (2 << 10))
    if engine.tensor_parallel_size > engine.gpus_per_actor > 0:
        raise ValueError(f"tensor_parallel_size {engine.tensor_parallel_size} needs gpus_per_actor >= it "
                         f"(each engine actor holds the GPUs of its shards); got {engine.gpus_per_actor}")
    tokenize = is_tokenized(engine)
    pool = pool_args(engine)
    engines = getattr(pool["compute"], "max_size", None) or 1
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
    stream_into(writer, ds, total=total, done=len(done), keep_failed=True)
    return total
