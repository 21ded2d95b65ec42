"""Corpus ingestion: JSONL (optionally gzipped), Parquet or a Hugging Face dataset -> the DOCS table.

Every input record ends up either as a document or as a rejected row with its reason: broken
JSON, non-UTF-8 bytes, a missing id or text, an empty or oversized text, a duplicate id.
"""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Iterator, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from .. import hfdatasets
from ..config import CorpusConfig
from ..corpus_reader import KNOWN_META as KNOWN
from ..pairs_input import file_format
from ..reasons import (BAD_ENCODING, BAD_ID, BAD_JSON, BAD_TEXT, DUPLICATE_ID, EMPTY_TEXT, MISSING_ID, MISSING_TEXT,
                       TOO_LONG, TOO_SHORT, check)
from ..schema import DOCS, rejected_row
from ..store import StageWriter
from .base import Stage

BATCH = 2000


def corpus_files(path: str) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted(x for x in p.rglob("*") if x.is_file() and file_format(x) is not None)
        if not files:
            raise FileNotFoundError(f"corpus folder {p} has no JSONL (.jsonl, .json, .ndjson, optionally .gz) "
                                    f"or .parquet files")
        return files
    if not p.is_file():
        raise FileNotFoundError(f"corpus {p} not found")
    return [p]


def fingerprint(path: str, cfg: Optional[CorpusConfig] = None) -> str:
    """Content hash of the corpus files (of a dataset: its `datasets` fingerprint and split): an
    index or a stage is reused only for the same corpus."""
    h = hashlib.sha256()
    if hfdatasets.is_dataset(path):
        ds, split = _dataset(path, cfg)
        h.update(json.dumps([hfdatasets.fingerprint(ds), split, ds.num_rows]).encode())
        return h.hexdigest()[:16]
    for f in corpus_files(path):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def _records(path: Path, fmt: str) -> Iterator[tuple[str, object]]:
    """(location, record-or-error) for every record; errors are strings prefixed with their reason."""
    if fmt == "parquet":
        pf = pq.ParquetFile(path)
        i = 0
        for batch in pf.iter_batches(batch_size=BATCH):
            for row in batch.to_pylist():
                i += 1
                yield f"{path.name}:row{i}", row
        return
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            loc = f"{path.name}:{lineno}"
            if not raw.strip():
                continue  # blank lines are layout, not records
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield loc, f"{BAD_ENCODING}\tnot UTF-8 ({e.reason} at byte {e.start})\t{raw[:200]!r}"
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield loc, f"{BAD_JSON}\t{e.msg} at column {e.colno}\t{line[:200]}"
                continue
            if not isinstance(obj, dict):
                yield loc, f"{BAD_JSON}\texpected a JSON object, got {type(obj).__name__}\t{line[:200]}"
                continue
            yield loc, obj


def _dataset(path: str, cfg: Optional[CorpusConfig]):
    return hfdatasets.load(path, cfg and cfg.split, cfg and cfg.subset, cfg and cfg.revision)


def _dataset_records(ds, split: str) -> Iterator[tuple[str, object]]:
    """(split[row], record) for every row of a dataset, read in Arrow batches."""
    i = 0
    for batch in ds.with_format("arrow").iter(batch_size=BATCH):
        for row in batch.to_pylist():
            yield f"{split}[{i}]", row
            i += 1


def _sources(cfg: CorpusConfig, path: str) -> Iterator[Iterator[tuple[str, object]]]:
    if hfdatasets.is_dataset(path):
        yield _dataset_records(*_dataset(path, cfg))
        return
    for f in corpus_files(path):
        yield _records(f, cfg.format if cfg.format != "auto" else file_format(f))


def ingest(cfg: CorpusConfig, path: str, writer: StageWriter) -> int:
    """Write documents and rejections; returns the number of input records seen."""
    seen: set[str] = set()
    rows_in = 0
    docs: list[dict] = []
    rejected: list[dict] = []
    for records in _sources(cfg, path):
        for loc, rec in records:
            if cfg.limit and rows_in >= cfg.limit:
                break
            rows_in += 1
            if isinstance(rec, str):
                reason, detail, raw = rec.split("\t", 2)
                rejected.append(rejected_row(loc, check(reason), f"{loc}: {detail}", raw))
            else:
                doc, err = _to_doc(cfg, rec, loc)
                if err is None and doc["doc_id"] in seen:
                    err = (DUPLICATE_ID, f"{loc}: doc_id {doc['doc_id']!r} appeared earlier; the first is kept")
                if err is not None:
                    key = str(rec.get(cfg.id_field, loc))
                    rejected.append(rejected_row(key, err[0], err[1], rec))
                else:
                    seen.add(doc["doc_id"])
                    docs.append(doc)
            if len(docs) >= BATCH:
                writer.write(pa.Table.from_pylist(docs, schema=DOCS))
                docs = []
            if len(rejected) >= BATCH:
                writer.reject(rejected)
                rejected = []
    writer.write(pa.Table.from_pylist(docs, schema=DOCS))
    writer.reject(rejected)
    return rows_in


def _to_doc(cfg: CorpusConfig, rec: dict, loc: str):
    doc_id = rec.get(cfg.id_field)
    if doc_id is None or (isinstance(doc_id, str) and not doc_id.strip()):
        return None, (MISSING_ID, f"{loc}: no {cfg.id_field!r} field")
    if not isinstance(doc_id, (str, int)):
        return None, (BAD_ID, f"{loc}: {cfg.id_field!r} must be a string or integer, got {type(doc_id).__name__}")
    text = rec.get(cfg.text_field)
    if text is None:
        return None, (MISSING_TEXT, f"{loc}: no {cfg.text_field!r} field")
    if not isinstance(text, str):
        return None, (BAD_TEXT, f"{loc}: {cfg.text_field!r} must be a string, got {type(text).__name__}")
    n = len(text.strip())
    if n == 0:
        return None, (EMPTY_TEXT, f"{loc}: the text is empty")
    if n < cfg.min_chars:
        return None, (TOO_SHORT, f"{loc}: {n} characters of text, fewer than min_chars={cfg.min_chars}")
    if n > cfg.max_chars:
        return None, (TOO_LONG, f"{loc}: {n:,} characters of text, more than max_chars={cfg.max_chars:,}")
    title = rec.get(cfg.title_field) if cfg.title_field else None
    used = {cfg.id_field, cfg.text_field, cfg.title_field, *KNOWN}
    meta = {k: v for k, v in rec.items() if k not in used}
    doc = {
        "doc_id": str(doc_id),
        "title": None if title is None else str(title),
        "text": text,
        "metadata": json.dumps(meta, ensure_ascii=False, default=str) if meta else None,
        "n_chars": len(text),
    }
    for k in KNOWN:
        v = rec.get(k)
        doc[k] = None if v is None else str(v)
    return doc, None


def _section(cfg) -> dict:
    from ..config import identity

    # The path is not part of it: the content hash is (a corpus fetched elsewhere is the same corpus).
    # The dataset options count only when set (runs from before they existed stay up to date).
    return {"corpus": {k: v for k, v in identity(cfg.corpus).items()
                       if k != "path" and not (k in ("split", "subset", "revision") and v is None)}}


def _run(ctx) -> dict:
    w = ctx.writer("corpus", fresh=True)  # cheap to redo, so never half-resumed
    n = ingest(ctx.cfg.corpus, ctx.cfg.resolve_path(ctx.cfg.corpus.path), w)
    return ctx.publish(w, "corpus", n)


STAGE = Stage("corpus", (), DOCS, _section, _run, uses_ray=False,
              help="read the documents (JSONL/Parquet), rejecting bad records with reasons",
              inputs=lambda cfg: fingerprint(cfg.resolve_path(cfg.corpus.path), cfg.corpus))
