"""The S3 objects of a state: one boto3 client, conditional writes, errors naming the setting.

Only the storage's own atomic primitives are used (DESIGN.md): `If-None-Match: *` creates
an object only when it does not exist, `If-Match: <etag>` writes or deletes one only when
it is the version read before. A 412 (or a 409 from a concurrent conditional write) is a
`Conflict`, which the store turns into a message about another run. Any other failure
becomes a StateError naming the setting to check (segops.yaml `state.bucket`...);
credentials come from the standard AWS chain and never appear in a message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from segops._fs import open_private
from segops.errors import StateError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")
DEFAULT_PREFIX: Final = "segops"
ANY: Final = "*any*"  # put/delete without a condition
_CHUNK = 1 << 20
_CREDENTIALS = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken"}
    | {"InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "InvalidClientTokenId"}
)
_REGION = frozenset(
    {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
)
_CONFLICT = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})


class Conflict(Exception):
    """A conditional request lost: the object is not (or no longer) the version expected."""


@dataclass(frozen=True, slots=True)
class S3Location:
    """Where a state lives on S3, and how messages name the settings that say so."""

    bucket: str
    prefix: str = DEFAULT_PREFIX
    region: str | None = None
    endpoint_url: str | None = None
    origin: str = "segops.yaml: state."  # "--" when the settings are command-line options

    def key(self, name: str) -> str:
        prefix = self.prefix.strip("/")
        return f"{prefix}/{name}" if prefix else name

    def url(self, name: str = "") -> str:
        return f"s3://{self.bucket}/{self.key(name)}"

    def setting(self, key: str) -> str:
        """Return how the user wrote setting `key` (`segops.yaml: state.bucket`, `--bucket`)."""
        return f"--{key.replace('_', '-')}" if self.origin == "--" else f"{self.origin}{key}"


class S3Objects:
    """Objects under a location's prefix, by name relative to it."""

    def __init__(self, location: S3Location, client: S3Client | None = None) -> None:
        self.location = location
        self._client = client

    @property
    def client(self) -> S3Client:
        if self._client is None:
            self._client = self._call("connect", "", lambda: _make_client(self.location))
        return self._client

    def get(self, name: str, if_none_match: str | None = None) -> tuple[bytes, str] | None | bool:
        """Return (bytes, etag), None when missing, or False when it is still `if_none_match`."""
        args: dict[str, Any] = {"IfNoneMatch": if_none_match} if if_none_match else {}

        def get() -> tuple[bytes, str] | None | bool:
            try:
                got = self.client.get_object(
                    Bucket=self.location.bucket, Key=self.key(name), **args
                )
            except Exception as exc:
                code = _code(exc)
                if code in ("NoSuchKey", "404"):
                    return None
                if code in ("304", "NotModified"):
                    return False
                raise
            return got["Body"].read(), got["ETag"]

        return self._call("read", name, get)

    def head(self, name: str) -> str | None:
        """Return the object's etag, None when it does not exist."""

        def head() -> str | None:
            try:
                got = self.client.head_object(Bucket=self.location.bucket, Key=self.key(name))
            except Exception as exc:
                if _code(exc) in ("NoSuchKey", "404"):
                    return None
                raise
            return got["ETag"]

        return self._call("read", name, head)

    def put(self, name: str, data: bytes, match: str | None) -> str:
        """Write `data` if the object is version `match` (None: absent; ANY: whatever); etag."""
        args: dict[str, Any] = (
            {} if match == ANY else ({"IfNoneMatch": "*"} if match is None else {"IfMatch": match})
        )
        key = self.key(name)
        return self._call(
            "write",
            name,
            lambda: self.client.put_object(Bucket=self.location.bucket, Key=key, Body=data, **args)[
                "ETag"
            ],
            conditional=bool(args),
        )

    def delete(self, name: str, match: str = ANY) -> None:
        """Delete the object if it is version `match` (ANY: whatever it is, even missing)."""
        args: dict[str, Any] = {} if match == ANY else {"IfMatch": match}
        key = self.key(name)
        self._call(
            "delete",
            name,
            lambda: self.client.delete_object(Bucket=self.location.bucket, Key=key, **args),
            conditional=bool(args),
        )

    def names(self, under: str = "") -> list[str]:
        """Return the names of the objects under `under` (all of them when empty), sorted."""
        start = self.key(under) if under else self.key("")

        def names() -> list[str]:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.location.bucket, Prefix=start
            )
            cut = len(self.key(""))
            return sorted(o["Key"][cut:] for page in pages for o in page.get("Contents", ()))

        return self._call("list", under, names)

    def download(self, name: str, dest: Path) -> tuple[str, str] | None:
        """Write the object to `dest`; return the sha256 of its bytes and the object's etag,
        None when missing."""

        def download() -> tuple[str, str] | None:
            try:
                got = self.client.get_object(Bucket=self.location.bucket, Key=self.key(name))
            except Exception as exc:
                if _code(exc) in ("NoSuchKey", "404"):
                    return None
                raise
            digest = hashlib.sha256()
            with open_private(dest) as out:
                for chunk in got["Body"].iter_chunks(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            return digest.hexdigest(), str(got["ETag"])

        return self._call("read", name, download)

    def upload(self, name: str, source: Path) -> None:
        """Write the file `source` as the object (multipart when large)."""
        key = self.key(name)
        self._call(
            "write",
            name,
            lambda: self.client.upload_file(str(source), self.location.bucket, key),
        )

    def copy(self, name: str, to: str) -> None:
        """Copy object `name` to `to`, inside the storage (multipart when large)."""
        bucket, key = self.location.bucket, self.key(to)
        source: Any = {"Bucket": bucket, "Key": self.key(name)}  # boto3's CopySourceTypeDef
        self._call("copy", name, lambda: self.client.copy(source, bucket, key))

    def key(self, name: str) -> str:
        return self.location.key(name)

    def _call(self, what: str, name: str, call: Callable[[], T], conditional: bool = False) -> T:
        try:
            return call()
        except Exception as exc:
            raise _translate(exc, self.location, what, name, conditional) from None


def _make_client(location: S3Location) -> S3Client:
    import boto3
    from botocore.config import Config

    # Path-style addressing for S3-compatible endpoints (an IP address has no bucket subdomain).
    s3 = {"addressing_style": "path"} if location.endpoint_url else {}
    config = Config(
        signature_version="s3v4",
        s3=s3,  # type: ignore[arg-type]
        connect_timeout=10,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
    )
    session = boto3.session.Session()
    return session.client(
        "s3", region_name=location.region, endpoint_url=location.endpoint_url, config=config
    )


def _code(exc: BaseException) -> str:
    """Return the S3 error code of `exc` ('' when it is not an S3 answer)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _translate(
    exc: Exception, location: S3Location, what: str, name: str, conditional: bool
) -> Exception:
    """Return the error to raise for `exc`: a Conflict, or a StateError naming the setting."""
    from botocore import exceptions as boto

    cause = exc.__context__ if type(exc).__name__ == "S3UploadFailedError" else exc
    code = _code(cause) if cause is not None else ""
    where = location.url(name)
    if conditional and (code in _CONFLICT or code in ("NoSuchKey", "404")):
        return Conflict(code)
    bucket = location.setting("bucket")
    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
        return StateError(
            f"{bucket}: no AWS credentials found to reach {location.url()}: give them the "
            "standard AWS way (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an "
            "instance or CI role); segops.yaml never holds them"
        )
    if isinstance(exc, boto.ProfileNotFound | boto.CredentialRetrievalError):
        return StateError(
            f"{bucket}: the AWS credentials cannot be loaded ({type(exc).__name__}): check "
            "AWS_PROFILE and the AWS configuration files"
        )
    if code == "NoSuchBucket":
        at = f" at {location.endpoint_url}" if location.endpoint_url else ""
        return StateError(
            f"{bucket}: the bucket '{location.bucket}' does not exist{at}: create it, or "
            "correct the name"
        )
    if code in _CREDENTIALS:
        return StateError(
            f"{bucket}: S3 refused the AWS credentials in use for {location.url()} ({code}): "
            "check which credentials the standard AWS chain finds (AWS_ACCESS_KEY_ID, "
            "AWS_PROFILE, an instance or CI role) and that they may read and write this prefix"
        )
    if code in _REGION:
        return StateError(
            f"{location.setting('region')}: the bucket '{location.bucket}' is not reachable "
            f"in region {location.region or '(default)'} ({code}): set the bucket's region"
        )
    if isinstance(exc, boto.EndpointConnectionError | boto.ConnectTimeoutError):
        return StateError(_unreachable(location, type(exc).__name__))
    if isinstance(exc, boto.ConnectionError | boto.HTTPClientError):
        return StateError(_unreachable(location, type(exc).__name__))
    reason = code or type(cause or exc).__name__
    return StateError(f"{where}: cannot {what} the state on S3 ({reason})")


def _unreachable(location: S3Location, reason: str) -> str:
    if location.endpoint_url:
        return (
            f"{location.setting('endpoint_url')}: cannot reach S3 at {location.endpoint_url} "
            f"({reason}): is the server up, and the URL right?"
        )
    return (
        f"{location.setting('region')}: cannot reach S3 in region "
        f"{location.region or '(default)'} ({reason}): check the network and the region"
    )
