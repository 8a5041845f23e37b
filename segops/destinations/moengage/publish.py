"""Publishers: give each MoEngage member file a URL MoEngage can download, then take it away.

MoEngage's File Segment API reads members from "a public, downloadable URL" (reference §6).
A publisher stores one file and returns a `Published(url, key)`:

- `url` is a bearer secret: whoever holds it reads the file (personal data). It goes into the
  request body sent to MoEngage and nowhere else: never into an exception, a log line, the
  journal, the state or an ApplyResult. `Published.__repr__` hides it.
- `key` names the stored file for `delete`. It grants nothing on its own: an S3 key needs the
  bucket's credentials (the bucket is private, no ACL is set); an HTTP key is an id distinct
  from the secret path. The journal may record the key (S3 only) so that a later apply can
  delete a file whose operation finished after the run that published it.

Publishers:

- `S3Publisher`: `put_object` under `prefix + token_urlsafe(32) + "/" + name` (private, no ACL,
  the bucket's default encryption applies) and a presigned GET URL valid `url_ttl` seconds
  (default 6 h: MoEngage documents no processing timeout, so the URL must outlive the
  download). Backstop for files an interrupted apply leaves behind: a lifecycle rule that
  expires the prefix, e.g. ``aws s3api put-bucket-lifecycle-configuration --bucket B
  --lifecycle-configuration '{"Rules": [{"ID": "segops-files", "Status": "Enabled",
  "Filter": {"Prefix": "segops/"}, "Expiration": {"Days": 2}}]}'`` (keep N days above
  url_ttl).
- `HttpPublisher`: serves the files from a private temporary folder on this machine while the
  apply runs, each under an unguessable path; anything else is 404. For local use and tests
  (MoEngage reaches it only through `public_url`). Closing it deletes every file.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from segops.destinations.transport import check_url
from segops.errors import DestinationError
from segops.model import Connection

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DEFAULT_PREFIX = "segops/"
DEFAULT_URL_TTL = 21_600  # seconds (6 h)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


@dataclass(frozen=True, slots=True)
class Published:
    url: str = field(repr=False)  # secret: see the module docstring
    key: str


class Publisher(Protocol):
    def publish(self, name: str, data: bytes) -> Published:
        """Store `data` as file `name`; return its download URL and its key."""
        ...

    def delete(self, key: str) -> None:
        """Delete the file stored under `key`; an unknown key is not an error."""
        ...

    def close(self) -> None:
        """Release the publisher (an HTTP publisher stops serving and deletes its files)."""
        ...

    def __enter__(self) -> Publisher: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class _Closing:
    def __enter__(self) -> Any:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        return None


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise DestinationError(f"published file name {name!r} is not a plain file name")


class HttpPublisher(_Closing):
    """Serve published files over HTTP from this machine for as long as it is open."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, public_url: str | None = None):
        self._folder = Path(tempfile.mkdtemp(prefix="segops-publish-"))  # mode 0700
        self._files: dict[str, Path] = {}  # secret URL path -> file
        self._keys: dict[str, str] = {}  # key -> secret URL path
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler(self._lookup))
        self._server.daemon_threads = True
        bound_host, bound_port = self._server.server_address[:2]
        self._base = (public_url or f"http://{bound_host!s}:{bound_port}").rstrip("/")
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def publish(self, name: str, data: bytes) -> Published:
        _check_name(name)
        path = f"/{secrets.token_urlsafe(32)}/{name}"
        key = f"{secrets.token_hex(8)}-{name}"  # not derived from the secret path
        file = self._folder / f"{key}"
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        with self._lock:
            self._files[path] = file
            self._keys[key] = path
        return Published(self._base + path, key)

    def delete(self, key: str) -> None:
        with self._lock:
            path = self._keys.pop(key, None)
            file = self._files.pop(path, None) if path else None
        if file is not None:
            file.unlink(missing_ok=True)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            self._files.clear()
            self._keys.clear()
        shutil.rmtree(self._folder, ignore_errors=True)

    def _lookup(self, path: str) -> Path | None:
        with self._lock:
            return self._files.get(path)


def _handler(lookup: Callable[[str], Path | None]) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            file = lookup(self.path)  # the query string is not stripped: exact paths only
            try:
                handle = file.open("rb") if file is not None else None
            except OSError:
                handle = None
            if handle is None:
                self.send_error(404)
                return
            with handle:
                self.send_response(200)
                self.send_header("Content-Type", "text/csv")
                self.send_header("Content-Length", str(os.fstat(handle.fileno()).st_size))
                self.end_headers()
                shutil.copyfileobj(handle, self.wfile)

        def log_message(self, format: str, *args: Any) -> None:
            return None  # quiet: a request line holds the secret path

    return _Handler


class S3Publisher(_Closing):
    """Publish files as private S3 objects behind presigned GET URLs."""

    def __init__(
        self,
        bucket: str,
        prefix: str = DEFAULT_PREFIX,
        region: str | None = None,
        endpoint_url: str | None = None,
        url_ttl: int = DEFAULT_URL_TTL,
        client: S3Client | None = None,
    ) -> None:
        self.bucket, self.prefix, self.url_ttl = bucket, prefix, url_ttl
        self._client = client or _s3_client(region, endpoint_url)

    def publish(self, name: str, data: bytes) -> Published:
        _check_name(name)
        key = f"{self.prefix}{secrets.token_urlsafe(32)}/{name}"
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="text/csv")
            url = self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=self.url_ttl,
            )
        except Exception as exc:  # botocore raises many types; name the type, not the text
            raise DestinationError(
                f"cannot publish {name} to S3 bucket {self.bucket}: {_s3_problem(exc)}"
            ) from None
        return Published(url, key)

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise DestinationError(
                f"cannot delete a published file from S3 bucket {self.bucket}: {_s3_problem(exc)}"
            ) from None


def _s3_client(region: str | None, endpoint_url: str | None) -> S3Client:
    import boto3
    from botocore.config import Config

    # Path-style addressing for S3-compatible endpoints (an IP address has no bucket subdomain).
    s3 = {"addressing_style": "path"} if endpoint_url else {}
    config = Config(signature_version="s3v4", s3=s3)  # type: ignore[arg-type]
    try:
        return boto3.client("s3", region_name=region, endpoint_url=endpoint_url, config=config)
    except Exception as exc:  # botocore's text may quote the endpoint URL: name the type only
        raise DestinationError(f"cannot make an S3 client: {_s3_problem(exc)}") from None


def _s3_problem(exc: Exception) -> str:
    """Return the S3 error code, or the exception type: botocore messages may quote URLs."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(exc).__name__


def publisher_for(connection: Connection) -> Publisher:
    """Return the publisher a connection configures: `publish.s3`, else `publish.http`.

    Without `publish.s3.bucket`, files are served from this machine (`publish.http`, whose
    keys all have defaults). Validation has made sure the connection names a publisher, and
    names `publish.http` only with a base_url on this machine (an emulator).

    Raises:
        DestinationError: `publish.s3.endpoint_url` is malformed, holds credentials, or is
            http:// to another machine without `allow_insecure_http`.
    """
    bucket = connection.option("publish.s3.bucket")
    if bucket:
        region = connection.option("publish.s3.region")
        endpoint = connection.option("publish.s3.endpoint_url")
        if endpoint:  # never echoed: it could hold credentials
            insecure = connection.option("allow_insecure_http") is True
            check_url(str(endpoint), "publish.s3.endpoint_url", allow_insecure_http=insecure)
        return S3Publisher(
            str(bucket),
            prefix=str(connection.option("publish.s3.prefix", DEFAULT_PREFIX)),
            region=str(region) if region else None,
            endpoint_url=str(endpoint) if endpoint else None,
            url_ttl=int(connection.option("publish.s3.url_ttl", DEFAULT_URL_TTL) or 0),
        )
    url = connection.option("publish.http.url")
    return HttpPublisher(
        host=str(connection.option("publish.http.host", "127.0.0.1")),
        port=int(connection.option("publish.http.port", 0) or 0),
        public_url=str(url) if url else None,
    )


__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_URL_TTL",
    "HttpPublisher",
    "Published",
    "Publisher",
    "S3Publisher",
    "publisher_for",
]
