"""Where files live: a local path, or object storage (s3://, gs://, ...) through pyarrow.fs.

S3 is AWS's by default; an S3-compatible server (MinIO, Ceph, a local test server) is named by
`storage.endpoint_override` in the config (or AWS_ENDPOINT_URL, which pyarrow reads itself).
Credentials are never configured here: they come from the standard AWS chain (environment,
~/.aws/credentials and config, an instance role), so no config, manifest or log line holds one.

Object-store failures reach users as one line naming the URI and what to check (a missing
bucket, denied access, bad credentials, a server that does not answer), not an AWS SDK error.
"""
from __future__ import annotations

import uuid
from urllib.parse import urlencode

# The process's S3 settings (labeler.config.StorageConfig as a dict), set once per command.
_s3: dict = {}


class StorageError(OSError):
    """Object storage that cannot be used as asked; the message names the URI and the fix."""


def configure(storage) -> None:
    """Use these S3 settings (a StorageConfig or None) for every URI this process opens."""
    global _s3
    _s3 = {} if storage is None else {k: v for k, v in storage.model_dump().items() if v is not None}


def is_uri(path) -> bool:
    return "://" in str(path)


def filesystem(uri: str):
    """(pyarrow FileSystem, path inside it) for a storage URI, with the configured S3 settings.

    pyarrow's own URI parsing is kept (it finds an AWS bucket's region); the settings ride on it
    as query options, which pyarrow takes for S3 (endpoint_override, region, scheme, ...)."""
    import pyarrow.fs as pafs

    uri = str(uri).rstrip("/")
    if uri.startswith("s3://") and _s3 and "?" not in uri:
        try:
            fs, path = pafs.FileSystem.from_uri(f"{uri}?{urlencode(_s3)}")
        except OSError as e:
            raise StorageError(explain(e, uri)) from None
        return fs, path.split("?", 1)[0]
    try:
        return pafs.FileSystem.from_uri(uri)
    except (OSError, ValueError) as e:
        raise StorageError(explain(e, uri)) from None


def explain(e: BaseException, uri: str, doing: str = "") -> str:
    """One line for a pyarrow/AWS SDK error at `uri`."""
    msg = str(e)
    bucket = uri.split("://", 1)[-1].split("/", 1)[0]
    where = f"{uri}: " + (f"while {doing}, " if doing else "")
    endpoint = _s3.get("endpoint_override")
    at = f" at {endpoint}" if endpoint else ""
    if "NO_SUCH_BUCKET" in msg or "NoSuchBucket" in msg:
        return (f"{where}bucket {bucket!r} does not exist{at} (create it, or check the name and "
                f"storage.endpoint_override for a MinIO or Ceph server)")
    if "ACCESS_DENIED" in msg or "AccessDenied" in msg or "Forbidden" in msg:
        return (f"{where}access denied{at}: the credentials found by the AWS chain (AWS_ACCESS_KEY_ID/"
                f"AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws/credentials, an instance role) may not "
                f"{'write' if 'Put' in msg or 'Upload' in msg or 'write' in doing else 'use'} {uri}")
    if any(s in msg for s in ("INVALID_ACCESS_KEY_ID", "InvalidAccessKeyId", "SIGNATURE_DOES_NOT_MATCH",
                              "SignatureDoesNotMatch", "No credentials", "NO_CREDENTIALS")):
        return (f"{where}the credentials found by the AWS chain are not valid{at} (check AWS_ACCESS_KEY_ID/"
                f"AWS_SECRET_ACCESS_KEY or AWS_PROFILE and ~/.aws/credentials)")
    if any(s in msg for s in ("NETWORK_CONNECTION", "Couldn't connect", "Could not connect", "curlCode: 7",
                              "Connection refused")):
        return f"{where}nothing answers{at or ' at the storage endpoint'} (is the server up? storage.endpoint_override)"
    first = msg.split(". Detail:")[0].strip().splitlines()[0] if msg.strip() else type(e).__name__
    return f"{where}{first}"


def check_writable(uri: str) -> None:
    """Fail now, with one line, if `uri` is in a bucket that does not exist or may not be written:
    a probe object is written and deleted, before any work that would be lost."""
    import pyarrow.fs as pafs

    fs, base = filesystem(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        return
    probe = f"{base}/.labeler-write-check-{uuid.uuid4().hex[:8]}"
    try:
        fs.get_file_info(pafs.FileSelector(base, allow_not_found=True, recursive=False))
    except OSError as e:
        raise StorageError(explain(e, uri)) from None
    try:
        with fs.open_output_stream(probe) as f:
            f.write(b"")
    except OSError as e:
        raise StorageError(explain(e, uri, "writing")) from None
    try:
        fs.delete_file(probe)
    except OSError:
        pass  # write-only credentials: the write is what matters
