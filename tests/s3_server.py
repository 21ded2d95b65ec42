"""A real S3-compatible server for the tests: moto's server mode in its own process on 127.0.0.1,
with IAM authentication on, so requests are signed and checked as MinIO or AWS would check them.

Two users: `admin` may do anything with S3, `reader` may only get and list. The tests point
pyarrow's S3FileSystem at the server with `endpoint_override` (labeler's storage.endpoint_override),
exactly as a user points at MinIO or Ceph, and hand the credentials over the standard AWS chain
(environment variables, or a shared credentials file).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BUCKET = "labeler-test"
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    def __init__(self, log_dir: Path):
        port = _free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.log = Path(log_dir) / "moto.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"),
                                     env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"})
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=2)
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"moto server did not start: {self.log.read_text()[-2000:]}")
                time.sleep(0.3)
        self.keys = {"admin": self._user("labeler-admin", ["s3:*"]),
                     "reader": self._user("labeler-reader", ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation",
                                                             "s3:ListAllMyBuckets", "s3:HeadObject"])}
        self._boto("s3").create_bucket(Bucket=BUCKET)
        # From now on every request must be signed by a known user and allowed by its policy.
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=b"0",
                                                      headers={"content-type": "text/plain"}, method="POST"),
                               timeout=10)

    def _boto(self, service: str, who=None):
        import boto3

        key, secret = self.keys[who] if who else ("setup", "setup")
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=key,
                            aws_secret_access_key=secret)

    def _user(self, name: str, actions: list[str]) -> tuple[str, str]:
        iam = self._boto("iam")
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
        k = iam.create_access_key(UserName=name)["AccessKey"]
        return k["AccessKeyId"], k["SecretAccessKey"]

    def env(self, who: str = "admin") -> dict:
        """The AWS chain's environment variables for `who` (and no instance-metadata lookups)."""
        key, secret = self.keys[who]
        return {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": REGION,
                "AWS_EC2_METADATA_DISABLED": "true"}

    def fs(self, who: str = "admin"):
        """A pyarrow S3FileSystem on the server, as the tests' own view of the bucket."""
        import pyarrow.fs as pafs

        key, secret = self.keys[who]
        return pafs.S3FileSystem(endpoint_override=self.endpoint, access_key=key, secret_key=secret, region=REGION)

    def objects(self, prefix: str) -> dict[str, bytes]:
        """Every object under `prefix` (bucket/...) and its bytes."""
        import pyarrow.fs as pafs

        fs = self.fs()
        out = {}
        for info in fs.get_file_info(pafs.FileSelector(prefix, allow_not_found=True, recursive=True)):
            if info.is_file:
                with fs.open_input_stream(info.path) as f:
                    out[info.path] = f.read()
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
