"""A real S3-compatible server for tests: moto's standalone server on 127.0.0.1, over HTTP.

Not a mocked client: boto3 (and anything else) talks HTTP to it. Use `s3_server()` as a
context manager, or the `S3Server` it yields in a module-level pytest fixture.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from emulators.s3 import start

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
# moto accepts any credentials; fixed ones keep the tests away from the developer's own
ACCESS_KEY = SECRET_KEY = "testing"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    # the requests an in-process server answered: (method, path, User-Agent), oldest first
    requests: Sequence[tuple[str, str, str]] = field(default_factory=list)

    def client(self) -> S3Client:
        """Return a boto3 S3 client of this server (path-style addressing, SigV4)."""
        config = Config(signature_version="s3v4", s3={"addressing_style": "path"})
        return boto3.client(
            "s3",
            region_name=REGION,
            endpoint_url=self.endpoint_url,
            config=config,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def create_bucket(self, name: str) -> S3Client:
        client = self.client()
        client.create_bucket(Bucket=name)
        return client


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """Run moto's S3-compatible server on a free port of 127.0.0.1 for the block."""
    server, url = start()  # conditional writes decided atomically, as S3 does
    try:
        yield S3Server(url, server.seen)
    finally:
        server.stop()
