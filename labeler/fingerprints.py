"""Fingerprints of input files: what each file holds, for deciding which of an earlier run's rows
still stand for it (`labeler judge|label --pairs` over the same files continues, labeler.pairs_input)."""
from __future__ import annotations

from typing import Callable, Optional

HASH_UP_TO = 1 << 30  # bytes: bigger files (and files at a URI) are fingerprinted by size and mtime


def file_fingerprints(fs, files: dict[str, str], hash_up_to: int = HASH_UP_TO) -> dict:
    """What each file (name -> its path on the pyarrow file system `fs`) holds: size, modification
    time, and (local files up to `hash_up_to` bytes) a SHA-256 of the content."""
    import pyarrow.fs as pafs

    out = {}
    for name, path in files.items():
        info = fs.get_file_info(path)
        entry = {"size": info.size, "mtime_ns": info.mtime_ns}
        if isinstance(fs, pafs.LocalFileSystem) and info.size is not None and info.size <= hash_up_to:
            entry["sha256"], entry["ends_newline"] = _file_hash(path)
        out[name] = entry
    return out


def unchanged_files(before: dict, now: dict, root: str,
                    grows_by_lines: Callable[[str], bool]) -> dict[str, Optional[int]]:
    """Files whose rows from a run over `before` (an earlier fingerprint) still hold at `now` (the
    files' fingerprint today, their names relative to the folder `root`): file name -> None (the
    file is as it was) or the byte size it had (a file that `grows_by_lines` and only grew: its
    first lines are the old ones). Other files are read anew."""
    keep: dict[str, Optional[int]] = {}
    for name, new in now.items():
        old = before.get(name)
        if not old or not old.get("sha256") or not new.get("sha256"):
            if old and old == new:  # no hash (remote or huge): size and mtime must both match
                keep[name] = None
            continue
        if old["sha256"] == new["sha256"]:
            keep[name] = None
        elif (grows_by_lines(name) and old.get("ends_newline") and new["size"] > old["size"]
              and _file_hash(root + "/" + name, limit=old["size"])[0] == old["sha256"]):
            keep[name] = old["size"]
    return keep


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
