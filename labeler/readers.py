"""One reader for every table a command takes from files: pairs, documents and judgments, as JSONL
(optionally gzipped) or Parquet, a file or a folder of them, local or at a URI (pyarrow.fs).

Pairs are read with error rows: a broken JSON line, invalid UTF-8 or a field of the wrong type is a
row with its reason (`_reason`, `_detail`) and where it came from (`input_row`: "file:line" for
JSONL, "file[row]" for Parquet), never an exception and never a coercion. Files are streamed in
blocks, so the driver never holds a large input whole.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pyarrow as pa

from .reasons import BAD_ENCODING, BAD_JSON, BAD_TYPE, MISSING_FIELD
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
            elif (file_format(name) == "jsonl" and not name.lower().endswith(".gz") and old.get("ends_newline")
                  and new["size"] > old["size"]
                  and _file_hash(self.root + "/" + name, limit=old["size"])[0] == old["sha256"]):
                keep[name] = old["size"]
        return keep

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


def file_format(path) -> Optional[str]:
    """"jsonl" or "parquet" by the file's suffix (the same list for every input), else None."""
    p = str(path).lower()
    return "jsonl" if p.endswith(JSONL) else "parquet" if p.endswith(PARQUET) else None




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



def read_corpus(path: str) -> pa.Table:
    """doc_id, title, text, doc_meta of a docs JSONL/Parquet file or folder, a Hugging Face dataset
    (labeler.hfdatasets), or a finished run's corpus stage (a run folder or its corpus/ folder)."""
    t = _corpus_table(path)
    if "doc_id" not in t.column_names or "text" not in t.column_names:
        raise ValueError(f"corpus {path}: needs doc_id and text columns (has {t.column_names})")
    meta_cols = [c for c in ("author", "space", "doc_type", "last_modified") if c in t.column_names]
    meta = [doc_meta({c: (None if v is None else str(v)) for c, v in zip(meta_cols, vals)})
            for vals in zip(*(t.column(c).to_pylist() for c in meta_cols))] if meta_cols else None
    return pa.table({"doc_id": t.column("doc_id").cast(pa.string()), "text": t.column("text").cast(pa.string()),
                     "title": t.column("title").cast(pa.string()) if "title" in t.column_names else pa.nulls(t.num_rows, pa.string()),
                     "doc_meta": pa.array(meta, pa.string()) if meta is not None else pa.nulls(t.num_rows, pa.string())})


def _corpus_table(path: str) -> pa.Table:
    from . import hfdatasets
    from .store import MANIFEST, read_parts

    p = Path(path)
    if "://" not in str(path):
        for stage in (p, p / "corpus"):
            if (stage / MANIFEST).is_file() and (stage / "data").is_dir():
                return read_parts(stage / "data")
    if hfdatasets.is_dataset(path):
        return hfdatasets.load(path)[0].with_format("arrow")[:]
    src = PairsInput(path)
    parts = []
    for f in src.files:
        if file_format(f) == "parquet":
            import pyarrow.parquet as pq
            parts.append(pq.read_table(f, filesystem=src.fs))
        else:
            import pyarrow.json as pj
            with src.fs.open_input_stream(f, compression="detect") as fh:
                try:
                    parts.append(pj.read_json(fh))
                except pa.ArrowInvalid as e:
                    raise ValueError(f"corpus {f}: not readable as JSON lines ({e})") from None
    return pa.concat_tables(parts, promote_options="permissive")


KNOWN_META = ("author", "space", "doc_type", "last_modified")


def doc_meta(doc: dict) -> str:
    """The JSON of a document's known metadata fields (what grading prompts show)."""
    return json.dumps({k: doc.get(k) for k in KNOWN_META if doc.get(k)}, ensure_ascii=False)


# -- judgments ----------------------------------------------------------------------------------

JUDGED = ("query_id", "query", "doc_id", "title", "text", "grade", "expected_grade", "grade_probs", "status", "error",
          "split", "source", "bm25_rank", "bm25_score")


def read_judgments(path: str, *, queries: Optional[str] = None, corpus: Optional[str] = None,
                   default_corpus: Optional[str] = None, strict: bool = True) -> pa.Table:
    """Graded pairs to train a student on, from any of:

    - a judge export (`labeler judge ... --out`, or a pipeline's judge stage folder): Parquet or
      JSONL rows with query_id, doc_id, grade and, unless `corpus` gives them, query and text;
    - a teacher-judgment fixture folder (bench/fixture.py: manifest.json, judgments.parquet,
      queries.parquet), whose document text is joined from its corpus;
    - TREC qrels (humans or another LLM) with `queries` (JSONL/Parquet: query_id or qid, query)
      and `corpus` (docs: doc_id, text[, title]);
    - a folder in the layout of an evaluation set: queries.jsonl, docs.jsonl, qrels.txt.

    Every row must be usable: a grade outside 0-3, a doc_id missing from the corpus or a query
    without text is an error naming the file and row, never a row quietly dropped. With `strict`
    off (an evaluation set read for scoring), a pair without query or text is kept as status
    "failed" with error "missing_field", so every source is scored on the same usable pairs.
    """
    import pyarrow.compute as pc

    from .qrels import read_qrels, sniff_format

    p = Path(path)
    if (p / "qrels.txt").is_file() and (p / "queries.jsonl").is_file():  # an evaluation set's layout
        return read_judgments(str(p / "qrels.txt"), queries=queries or str(p / "queries.jsonl"),
                              corpus=corpus or str(p / "docs.jsonl"), strict=strict)
    if (p / "manifest.json").is_file() and (p / "judgments.parquet").is_file():  # the fixture
        import pyarrow.parquet as pq

        man = json.loads((p / "manifest.json").read_text())
        t = pq.read_table(p / "judgments.parquet")
        q = pq.read_table(p / "queries.parquet", columns=["query_id", "query"])
        # by position, not Table.join: Acero cannot carry the list column grade_probs through a join
        at = pc.index_in(t.column("query_id"), value_set=q.column("query_id"))
        t = t.append_column("query", pc.take(q.column("query"), at))
        corpus = corpus or default_corpus or man.get("corpus")
        where = f"{p}/judgments.parquet"
    elif p.is_file() and sniff_format(p) == "qrels":
        t = read_qrels(p)
        where = str(p)
    else:
        src = PairsInput(path)
        blocks = [b for b in src.blocks() if b.num_rows]
        if not blocks:
            raise ValueError(f"judgments {path}: no rows")
        t = pa.concat_tables(blocks, promote_options="permissive")
        bad = t.filter(pc.is_valid(t.column("_reason")))
        if bad.num_rows:
            r = bad.slice(0, 1).to_pylist()[0]
            raise ValueError(f"judgments {r['_detail']}")
        grades = _column_of(src, "grade")
        t = t.append_column("grade", pa.array(grades, pa.int64())) if grades is not None else t
        for name in ("expected_grade", "grade_probs", "status", "error"):
            col = _column_of(src, name)
            if col is not None:
                t = t.append_column(name, pa.array(col))
        where = path
    return _complete_judgments(t, where, queries, corpus, strict)


def _column_of(src: PairsInput, name: str) -> Optional[list]:
    """A column the pairs schema does not carry (grade, expected_grade, status), in file order."""
    import pyarrow.parquet as pq

    values: list = []
    found = False
    for f in src.files:
        if file_format(f) == "parquet":
            with src.fs.open_input_file(f) as fh:
                pf = pq.ParquetFile(fh)
                if name in pf.schema_arrow.names:
                    found = True
                    values += pf.read(columns=[name]).column(name).to_pylist()
                else:
                    values += [None] * pf.metadata.num_rows
        else:
            with src.fs.open_input_stream(f, compression="detect") as fh:
                for line in fh.read().split(b"\n"):
                    if line.strip():
                        v = json.loads(line).get(name)
                        found = found or v is not None
                        values.append(v)
    return values if found else None


def _complete_judgments(t: pa.Table, where: str, queries: Optional[str], corpus: Optional[str],
                        strict: bool = True) -> pa.Table:
    import pyarrow.compute as pc

    n = t.num_rows
    loc = t.column("input_row").to_pylist() if "input_row" in t.column_names else [f"{where}[{i}]" for i in range(n)]
    if "grade" not in t.column_names:
        raise ValueError(f"judgments {where}: no grade column")
    status = t.column("status").to_pylist() if "status" in t.column_names else ["ok"] * n
    errors = t.column("error").to_pylist() if "error" in t.column_names else [None] * n
    grades = t.column("grade").to_pylist()
    for i, (g, s) in enumerate(zip(grades, status)):
        if s == "ok" and (g is None or not 0 <= int(g) <= 3):
            raise ValueError(f"judgments {loc[i]}: grade {g!r} is not one of 0, 1, 2, 3")
    cols = {c: t.column(c) for c in t.column_names}
    if queries and ("query" not in cols or cols["query"].null_count == n):
        qt = _read_any(queries)
        qid = "query_id" if "query_id" in qt.column_names else "qid"
        lookup = dict(zip(map(str, qt.column(qid).to_pylist()), qt.column("query").to_pylist()))
        cols["query"] = pa.array([lookup.get(str(q)) for q in cols["query_id"].to_pylist()], pa.string())
    if corpus and ("text" not in cols or cols["text"].null_count == n):
        docs = read_corpus(corpus)
        idx = pc.index_in(cols["doc_id"].cast(pa.string()), value_set=docs.column("doc_id"))
        missing = pc.is_null(idx).to_pylist()
        if any(missing):
            i = missing.index(True)
            raise ValueError(f"judgments {loc[i]}: doc_id {cols['doc_id'][i].as_py()!r} is not in the corpus {corpus}")
        for c in ("text", "title", "doc_meta"):
            cols[c] = docs.column(c).take(idx)
    for c in ("query", "text"):
        if c not in cols:
            need = "--queries" if c == "query" else "--corpus"
            raise ValueError(f"judgments {where}: no {c} column; give {need} to join it by id")
        vals = cols[c].to_pylist()
        for i, v in enumerate(vals):
            if status[i] == "ok" and not (isinstance(v, str) and v.strip()):
                if strict:
                    raise ValueError(f"judgments {loc[i]}: {c} of ({cols['query_id'][i].as_py()}, "
                                     f"{cols['doc_id'][i].as_py()}) is missing or empty")
                status[i], errors[i] = "failed", MISSING_FIELD
    out = {}
    for c in JUDGED:
        if c in cols:
            out[c] = cols[c]
    out["status"] = pa.array(status, pa.string())
    out["error"] = pa.array(errors, pa.string())
    out["grade"] = pa.array([None if g is None else int(g) for g in grades], pa.int8())
    if "expected_grade" not in out:
        out["expected_grade"] = out["grade"].cast(pa.float32())
    for c in ("query_id", "doc_id"):
        out[c] = cols[c].cast(pa.string())
    return pa.table(out)


def _read_any(path: str) -> pa.Table:
    """A small JSONL or Parquet table read whole (queries files)."""
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    if file_format(path) == "parquet":
        return pq.read_table(path)
    with open(path, "rb") as f:
        return pj.read_json(f)
