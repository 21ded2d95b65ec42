"""Hugging Face datasets in and out: a corpus or pairs given as a dataset (a `save_to_disk` folder
or a hub id, hf://datasets/ORG/NAME), read through `datasets`; labels written back as a dataset
with a dataset card saying what made them.

A hub id and a local folder are the same code after loading: `datasets.load_dataset` for the hub
(it caches, and honours HF_HUB_OFFLINE), `datasets.load_from_disk` for a folder.
"""
from __future__ import annotations

import json
import logging
import shutil
import uuid
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

HUB = "hf://datasets/"


def is_dataset(path) -> bool:
    """A hub id (hf://datasets/ORG/NAME) or a folder written by `save_to_disk`."""
    s = str(path)
    if s.startswith(HUB):
        return True
    if "://" in s:
        return False
    p = Path(s).expanduser()
    return p.is_dir() and ((p / "dataset_dict.json").is_file()
                           or ((p / "state.json").is_file() and (p / "dataset_info.json").is_file()))


def _quiet() -> None:
    """`datasets`' progress bars only with -v: the command's own lines are its progress."""
    import datasets

    if not logging.getLogger("labeler").isEnabledFor(logging.DEBUG):
        datasets.disable_progress_bars()


def load(path: str, split: Optional[str] = None, subset: Optional[str] = None, revision: Optional[str] = None):
    """(the `datasets.Dataset` of the one split to read, its name); with several splits and none
    named, an error that lists them."""
    import datasets

    _quiet()
    s = str(path)
    try:
        if s.startswith(HUB):
            repo = s[len(HUB):].strip("/")
            ds = datasets.load_dataset(repo, name=subset, split=split, revision=revision)
        else:
            ds = datasets.load_from_disk(str(Path(s).expanduser()))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"dataset {s}: {e}") from None
    if isinstance(ds, (datasets.DatasetDict, dict)):
        names = sorted(ds)
        if split is None and len(names) == 1:
            split = names[0]
        if split not in ds:
            raise ValueError(f"dataset {s}: " + (f"no split {split!r}" if split else "several splits")
                             + f" (has {names}); name one with split in the config")
        return ds[split], split
    if split is not None and ds.split is not None and str(ds.split) != split:
        raise ValueError(f"dataset {s}: holds the split {str(ds.split)!r}, not {split!r}")
    return ds, str(ds.split) if ds.split is not None else "train"


def fingerprint(ds) -> str:
    """What the dataset holds: `datasets`' own fingerprint and the sizes of its data files."""
    import hashlib

    files = sorted((Path(f["filename"]).name, Path(f["filename"]).stat().st_size) for f in ds.cache_files
                   if Path(f["filename"]).is_file())
    return hashlib.sha256(json.dumps([str(ds._fingerprint), files]).encode()).hexdigest()[:16]


def renamed(ds, columns: dict[str, str], where: str):
    """The dataset with its columns renamed to the pairs' fields (`columns`: field -> column)."""
    have = ds.column_names
    missing = {f: c for f, c in columns.items() if c not in have}
    if missing:
        raise ValueError(f"dataset {where}: columns {missing} named in the config are not in it (has {have})")
    moves = {c: f for f, c in columns.items() if c != f}
    clash = [f for c, f in moves.items() if f in have and f not in moves]
    if clash:  # a field name that is also another column: that column is dropped, not merged
        ds = ds.remove_columns(clash)
    return ds.rename_columns(moves) if moves else ds


def save(parquet: Path, dest: Path, card: str) -> int:
    """Write a Parquet export as a dataset at `dest` (`save_to_disk`, so `load_from_disk` and
    `push_to_hub` take it) with `card` as its README.md; atomic: `dest` appears whole. Returns rows."""
    import datasets
    from huggingface_hub import DatasetCard

    _quiet()
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:6]}")
    cache = dest.with_name(f".{dest.name}.cache-{uuid.uuid4().hex[:6]}")
    try:
        ds = datasets.Dataset.from_parquet(str(parquet), cache_dir=str(cache), split="train")
        ds.save_to_disk(str(tmp))
        DatasetCard(card).save(str(tmp / "README.md"))
        n = ds.num_rows
        del ds
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    return n


def card(*, title: str, model: str, teacher: Optional[str], agreement: Optional[dict], counts: dict,
         manifest: dict, source: str, is_teacher: bool = False) -> str:
    """A dataset card (YAML metadata, then Markdown): the model, its teacher, the run's agreement
    figures and the label counts, so the labels say where they came from."""
    from huggingface_hub import DatasetCardData

    n = manifest.get("rows_in", 0)
    data = DatasetCardData(pretty_name=title, tags=["relevance-labels", "labeler"],
                           size_categories=[_size(n)])
    lines = [f"---\n{data.to_yaml()}\n---", f"# {title}", "",
             f"Graded relevance labels (0-3) written by `labeler` from `{source}`.", "",
             "## Model", "", f"- model: `{model}`",
             "- this model is the teacher (`labeler judge`)" if is_teacher else
             f"- teacher: `{teacher}`" if teacher else "- teacher: unknown (the model is not the student of a labeler run)",
             "", "## Agreement with the teacher", ""]
    if is_teacher:
        lines[-3:] = []
    elif agreement:
        lines += ["| measure | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in agreement.items() if not isinstance(v, (dict, list))]
    else:
        lines.append("Not measured: the run has no evaluate stage (or the model is not a run's student).")
    lines += ["", "## Labels", "", f"- pairs: {n:,}; graded: {manifest.get('rows_out', 0):,}; "
              f"failed: {manifest.get('rows_rejected', 0):,}", "", "| grade | pairs |", "|---|---|"]
    lines += [f"| {g} | {c:,} |" for g, c in sorted((counts.get("grade_counts") or {}).items())]
    failed = manifest.get("rejected_by_reason") or {}
    if failed:
        lines += ["", "| failed because | pairs |", "|---|---|"] + [f"| {k} | {v:,} |" for k, v in sorted(failed.items())]
    lines += ["", "Failed pairs are rows with `status` failed and their reason in `error`; they have no grade.",
              "", "```json", json.dumps({k: manifest.get(k) for k in ("rows_in", "rows_out", "rows_rejected",
                                                                         "finished_at", "fingerprint")}, indent=2),
              "```", ""]
    return "\n".join(lines)


def _size(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M"


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)
