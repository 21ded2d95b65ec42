"""Pairs files in: JSONL (optionally gzipped) or Parquet, a file or a folder of them, local or at
a URI (pyarrow.fs), or a Hugging Face dataset; read in blocks by the driver or as a Ray Data
dataset (a streaming datasource).

Pairs are read with error rows: a broken JSON line, invalid UTF-8 or a field of the wrong type is a
row with its reason (`_reason`, `_detail`) and where it came from (`input_row`: "file:line" for
JSONL, "file[row]" for Parquet), never an exception and never a coercion. Files are streamed in
blocks, so the driver never holds a large input whole. What each file holds, for resuming, is
labeler.fingerprints'.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pyarrow as pa

from .fingerprints import HASH_UP_TO, file_fingerprints, unchanged_files
from .reasons import BAD_ENCODING, BAD_JSON, BAD_TYPE
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


@dataclass
class PairsInput:
    """Pairs files: a JSONL or Parquet file, or a folder of them, local or at a URI (pyarrow.fs)."""

    path: str

    def __post_init__(self):
        import pyarrow.fs as pafs

        if "://" in self.path:
            from .storage import StorageError, explain, filesystem

            self.fs, root = filesystem(self.path)
            try:
                info = self.fs.get_file_info(root)
            except OSError as e:
                raise StorageError(explain(e, self.path)) from None
        else:
            self.fs, root = pafs.LocalFileSystem(), str(Path(self.path).expanduser().resolve())
            info = self.fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"pairs {self.path} not found")
        if info.type == pafs.FileType.Directory:
            sel = pafs.FileSelector(root, recursive=True)
            files = [f.path for f in self.fs.get_file_info(sel) if f.is_file and file_format(f.path)
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
        return file_fingerprints(self.fs, {self.name(p): p for p in self.files}, hash_up_to)

    def unchanged_rows(self, before: dict) -> dict[str, Optional[int]]:
        """Files whose rows from a run over `before` (an earlier fingerprint) still hold: file name
        -> None (the file is as it was) or the byte size it had (a JSONL file that only grew: its
        first lines are the old ones). Other files are read anew."""
        return unchanged_files(before, self.fingerprint(), self.root, _grows_by_lines)

    def check_columns(self, have_corpus: bool) -> None:
        """A clear error up front when the first file lacks a required column (later rows that
        lack one are rejected one by one)."""
        cols = None
        for first in self.files:  # the first file with a row (empty part files are common)
            if file_format(first) == "parquet":
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

    def dataset(self, rows_per_block: int = ROWS_PER_BLOCK, concurrency: Optional[int] = None):
        """The same rows as a Ray Data dataset, read by parallel streaming tasks.

        Blocks of one engine batch: Ray Data merges a task's outputs into one block, so the read
        block size sets how many rows each written part (the unit of resumption) holds.
        `concurrency`: at most this many read tasks at once (None: Ray Data's choice).
        """
        import ray

        # A read task's default of one CPU would wait forever beside an engine pool on 2 cores.
        return ray.data.read_datasource(_datasource(self.files, self.fs, self.root, rows_per_block), num_cpus=0.25,
                                        concurrency=concurrency)


ROW = "__labeler_row"  # a dataset row's position, carried through Ray Data for its input_row


class DatasetPairs:
    """Pairs from a Hugging Face dataset (labeler.hfdatasets): the same interface as PairsInput.

    The keys pre-pass iterates the dataset in Arrow batches in the driver; the grading stream
    gets it through Ray Data's `from_huggingface`. A row's input_row is "split[row]"."""

    def __init__(self, path: str, dataset=None):
        from . import hfdatasets

        self.path = str(path)
        opts = dataset or _no_dataset_options()
        ds, self.split = hfdatasets.load(self.path, opts.split, opts.subset, opts.revision)
        ds = hfdatasets.renamed(ds, dict(opts.columns), self.path)
        self.ds = ds.select_columns([c for c in RAW.names if c in ds.column_names])
        self.files = [self.split]
        self.root = self.path
        self._fp = hfdatasets.fingerprint(ds)

    def name(self, path: str) -> str:
        return path

    def fingerprint(self, hash_up_to: int = HASH_UP_TO) -> dict:
        return {self.split: {"dataset": self._fp, "rows": self.ds.num_rows}}

    def unchanged_rows(self, before: dict) -> dict[str, Optional[int]]:
        return {self.split: None} if before.get(self.split) == self.fingerprint()[self.split] else {}

    def check_columns(self, have_corpus: bool) -> None:
        if not self.ds.num_rows:
            return
        cols = self.ds.column_names
        need = [c for c in REQUIRED if not (c == "text" and have_corpus)]
        missing = [c for c in need if c not in cols]
        if missing:
            raise ValueError(f"{self.path}: the dataset lacks the pairs' fields {missing} (has {cols}); map its "
                             f"columns with pairs.columns in the config"
                             f"{'' if have_corpus else ', or give --corpus to join the text by doc_id'}")

    def blocks(self, columns: Optional[list[str]] = None) -> Iterator[pa.Table]:
        cols = [c for c in (columns or RAW.names) if c in self.ds.column_names]
        offset = 0
        for t in self.ds.select_columns(cols).with_format("arrow").iter(batch_size=ROWS_PER_BLOCK):
            yield _stream_table(t, [f"{self.split}[{i}]" for i in range(offset, offset + t.num_rows)])
            offset += t.num_rows

    def dataset(self, rows_per_block: int = ROWS_PER_BLOCK, concurrency: Optional[int] = None):
        """The rows as a Ray Data dataset (`ray.data.from_huggingface`), in the STREAM schema;
        `concurrency`: at most this many conversion tasks at once."""
        import numpy as np
        import ray

        ds = self.ds.add_column(ROW, np.arange(self.ds.num_rows, dtype=np.int64))
        return ray.data.from_huggingface(ds).map_batches(
            _dataset_block, fn_kwargs={"split": self.split}, batch_size=rows_per_block, batch_format="pyarrow",
            num_cpus=0.25, concurrency=concurrency)


def _no_dataset_options():
    from .config import DatasetInput
    return DatasetInput()


def _dataset_block(t: pa.Table, split: str) -> pa.Table:
    rows = t.column(ROW).to_pylist()
    return _stream_table(t.drop_columns([ROW]), [f"{split}[{i}]" for i in rows])


def open_pairs(path: str, dataset=None):
    """The reader for `--pairs PATH`: a Hugging Face dataset (read with the config's `pairs`
    options, `dataset`), else JSONL/Parquet files."""
    from . import hfdatasets

    return DatasetPairs(path, dataset) if hfdatasets.is_dataset(path) else PairsInput(path)


def input_file(loc: Optional[str]) -> Optional[str]:
    """The file name of an `input_row` ("a.jsonl:12" or "b.parquet[3]")."""
    if not loc:
        return None
    if loc.endswith("]") and "[" in loc:
        return loc.rsplit("[", 1)[0]
    return loc.rsplit(":", 1)[0]


def file_format(path) -> Optional[str]:
    """"jsonl" or "parquet" by the file's suffix (the same list for every input), else None."""
    p = str(path).lower()
    return "jsonl" if p.endswith(JSONL) else "parquet" if p.endswith(PARQUET) else None


def _grows_by_lines(name: str) -> bool:
    """A plain (not gzipped) JSONL file: lines appended to it leave its first bytes as they were."""
    return file_format(name) == "jsonl" and not name.lower().endswith(".gz")


def _datasource(files, fs, root, rows_per_block: int):
    from ray.data.datasource import FileBasedDatasource

    class PairsDatasource(FileBasedDatasource):
        """Streams each file in blocks; bad lines become rows with a reason, never an exception."""

        def _open_input_source(self, filesystem, path, **open_args):
            if file_format(path) == "parquet":  # needs random access
                return filesystem.open_input_file(path)
            return super()._open_input_source(filesystem, path, **open_args)

        def _read_stream(self, f, path):
            name = path[len(root):].lstrip("/") if path.startswith(root) else path
            # Arrow's buffers come from malloc in Ray's workers (labeler.allocator.ARROW_POOL).
            try:
                if file_format(path) == "jsonl":
                    yield from _jsonl_blocks(f, name, rows=rows_per_block)
                else:
                    yield from _parquet_blocks(f, name, None, rows=rows_per_block)
            finally:
                # A read worker reads file after file: what one file took goes back to the OS.
                pa.default_memory_pool().release_unused()

    return PairsDatasource(files, filesystem=fs)


def _file_blocks(fs, path, name, columns):
    if file_format(path) == "parquet":
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
            rows.append(_bad(loc, BAD_ENCODING, f"{loc}: not UTF-8 ({e.reason} at byte {e.start})",
                             raw.decode("utf-8", "replace")))
            continue
        try:
            obj = json.loads(s)
        except ValueError as e:
            rows.append(_bad(loc, BAD_JSON, f"{loc}: not valid JSON ({getattr(e, 'msg', e)})", s))
            continue
        if not isinstance(obj, dict):
            rows.append(_bad(loc, BAD_JSON, f"{loc}: not a JSON object", s))
            continue
        row = {"input_row": loc}
        for fld in RAW:
            v = obj.get(fld.name)
            if v is None:
                row[fld.name] = None
                continue
            v, wrong = _strict(fld, v)
            if wrong:
                row = _bad(loc, BAD_TYPE, f"{loc}: field {fld.name!r} {wrong}", s)
                break
            if isinstance(v, str):
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800"
                    row = _bad(loc, BAD_ENCODING, f"{loc}: field {fld.name!r} is not valid Unicode", s)
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
                    reason[i], detail[i] = BAD_TYPE, f"{locs[i]}: field {fld.name!r} must be {_arrow_need(fld)}, got {col.type}"
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
                        reason[i], detail[i], v = BAD_ENCODING, f"{locs[i]}: field {fld.name!r} is not UTF-8", None
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
