"""Sources on S3 and S3-compatible object storage: list, pin, and stream objects into DuckDB.

A source `url` (s3://bucket/key, the key with globs) names objects. They are listed once
with boto3 (key, ETag, size: the plan's pins, never a hash of the bytes) and read through
pyarrow's S3 filesystem as a pyarrow dataset, which DuckDB scans as Arrow batches: the bytes
stream through in blocks and are never held whole in memory. Measured against DuckDB over
s3fs and against a download to disk: see docs/benchmarks.md.

Cells keep their format's declared type (segops.engine.cells): Parquet columns their own;
CSV columns are read as text; NDJSON lines are read as text and parsed by DuckDB's JSON
functions, so each cell is a JSON value as in a local file. Both clients get their
credentials from one place, boto3's standard AWS chain; segops.yaml never holds them.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from segops.engine.sources import csv, ndjson
from segops.errors import Problem, SourceError
from segops.model import Source, SourceConnection, SourceKind

if TYPE_CHECKING:
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

LINE = "_segops_line"  # the one text column of an NDJSON object read as lines
# Bytes pyarrow reads per block: measured 3.1 s at 1 MiB (its default), 0.7 s at 8 MiB and
# 0.34 s at 32 MiB for 1e6 CSV rows from the S3 server of the tests.
BLOCK_BYTES = 16 << 20
_GLOB = re.compile(r"[*?\[]")
_URL = re.compile(r"s3://([^/]+)/(.*)", re.DOTALL)
_CREDENTIALS = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken"}
    | {"InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "InvalidClientTokenId"}
    | {"403", "Forbidden"}
)


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object a source reads, as listed: its pin is its ETag and size."""

    bucket: str
    key: str
    etag: str
    size: int

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def pin(self) -> str:
        return f"s3:etag={self.etag.strip(chr(34))},size={self.size}"


def split_url(url: str) -> tuple[str, str]:
    """Return (bucket, key pattern) of an s3:// URL (the schema has checked its form)."""
    found = _URL.fullmatch(url)
    assert found is not None, f"the schema checks source URLs: {url!r}"
    return found[1], found[2]


def key_regex(pattern: str) -> re.Pattern[str]:
    """Return the regex of a key glob: `*` and `?` within one folder, `**` across folders."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) > 0:
            body = pattern[i + 1 : end]
            negated = body.startswith("!")
            out.append(f"[{'^' if negated else ''}{re.escape(body[negated:])}]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out), re.DOTALL)


class ObjectStore:
    """One object storage (a segops.yaml `sources` entry of type s3, or AWS by default).

    The boto3 client lists; pyarrow's filesystem reads. Both are made on first use.
    """

    def __init__(self, connection: SourceConnection | None) -> None:
        self.connection = connection
        self._client: Any = None
        self._fs: pafs.S3FileSystem | None = None

    @property
    def endpoint(self) -> str:
        return (self.connection.endpoint_url if self.connection else None) or "AWS S3"

    def objects(self, source: Source) -> list[StoredObject]:
        """Return the objects `source.url` matches, sorted by key; raise SourceError if none."""
        assert source.url is not None
        bucket, pattern = split_url(source.url)
        glob = _GLOB.search(pattern)
        prefix = pattern[: glob.start()] if glob else pattern
        regex = key_regex(pattern)
        found: list[StoredObject] = []
        try:
            pages = (
                self._boto().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    key = str(item["Key"])
                    if regex.fullmatch(key) and not key.endswith("/"):
                        found.append(StoredObject(bucket, key, item["ETag"], int(item["Size"])))
        except SourceError:
            raise
        except Exception as exc:
            raise source_error(source, self.describe(exc, bucket)) from None
        if not found:
            where = f"s3://{bucket}/{prefix}"
            raise source_error(
                source,
                f"no object matches {source.url} (listed under {where} at {self.endpoint}): "
                "check the URL and its globs",
            )
        return sorted(found, key=lambda o: o.key)

    def dataset(
        self,
        source: Source,
        objects: Sequence[StoredObject],
        header: Sequence[str] = (),
        schema: Any = None,
        partitions: Any = None,
    ) -> pads.Dataset:
        """Return a pyarrow dataset over `objects` in the source's format (not read yet).

        `schema`: the dataset's columns (by default, the first object's): a part of a larger
        dataset read apart (by a Spark task) is read with the whole dataset's schema, and
        with its hive `partitions` (their types found from every path of the listing).
        """
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.dataset as ds

        paths = [f"{o.bucket}/{o.key}" for o in objects]
        fmt: Any
        if source.kind is SourceKind.PARQUET:
            fmt = ds.ParquetFileFormat()
        elif source.kind is SourceKind.CSV:
            fmt = ds.CsvFileFormat(
                parse_options=pacsv.ParseOptions(delimiter=source.delimiter),
                read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in header},
                    strings_can_be_null=True,
                ),
            )
        else:  # NDJSON: each line as text, parsed by DuckDB (cells stay JSON values)
            fmt = ds.CsvFileFormat(
                parse_options=pacsv.ParseOptions(delimiter="\x1f", quote_char=False),
                read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES, column_names=[LINE]),
                convert_options=pacsv.ConvertOptions(column_types={LINE: pa.string()}),
            )
        partitioning: Any = None
        base = None
        if source.hive_partitioning:
            assert source.url is not None
            bucket, pattern = split_url(source.url)
            glob = _GLOB.search(pattern)
            prefix = pattern[: glob.start()] if glob else pattern
            folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
            partitioning = (
                ds.HivePartitioning(partitions)
                if partitions is not None
                else ds.HivePartitioning.discover(infer_dictionary=False)
            )
            base = f"{bucket}/{folder}" if folder else bucket
        return ds.dataset(
            paths,
            schema=schema,
            filesystem=self.filesystem(source),
            format=fmt,
            partitioning=partitioning,
            partition_base_dir=base,
        )

    def open(self, source: Source, stored: StoredObject) -> io.BufferedReader:
        """Return a buffered binary stream of one object (for the header and exact readers)."""
        raw = self.filesystem(source).open_input_stream(f"{stored.bucket}/{stored.key}")
        return io.BufferedReader(_Raw(raw), 1 << 20)

    def header(self, source: Source, stored: StoredObject) -> list[str]:
        """Return the CSV header of the object, checked as a local file's header is."""
        with self.open(source, stored) as handle:
            return csv.header_of(handle, source.delimiter, stored.url)

    def iter_rows(
        self, source: Source, objects: Sequence[StoredObject]
    ) -> Iterator[tuple[str, int, dict[str, object]]]:
        """Yield (object URL, line or row, row) for every row, with segops' exact readers.

        Raises:
            LocatedUnreadable: the first line that breaks the format, with its object.
        """
        from segops.engine.sources.errors import UnreadableRow

        for stored in objects:
            try:
                if source.kind is SourceKind.PARQUET:  # the footer first: random access
                    path = f"{stored.bucket}/{stored.key}"
                    with self.filesystem(source).open_input_file(path) as handle:
                        for number, row in _parquet_rows(handle):
                            yield stored.url, number, row
                    continue
                with self.open(source, stored) as stream:
                    if source.kind is SourceKind.CSV:
                        rows = csv.iter_handle_rows(stream, source.delimiter)
                    else:
                        rows = ndjson.iter_handle_rows(stream)
                    for line, row in rows:
                        yield stored.url, line, row
            except UnreadableRow as error:
                raise LocatedUnreadable(stored.url, error) from None

    def filesystem(self, source: Source) -> pafs.S3FileSystem:
        if self._fs is None:
            try:
                self._fs = self.make_filesystem()
            except SourceError:
                raise
            except Exception as exc:
                raise source_error(source, self.describe(exc, "")) from None
        return self._fs

    def _session(self) -> Any:
        import boto3

        return boto3.session.Session()

    def client(self) -> Any:
        """Return the boto3 S3 client of this storage (made on first use)."""
        return self._boto()

    def _boto(self) -> Any:
        if self._client is None:
            from botocore.config import Config

            endpoint = self.connection.endpoint_url if self.connection else None
            s3: Any = {"addressing_style": "path"} if endpoint else {}
            config = Config(
                signature_version="s3v4",
                s3=s3,
                connect_timeout=10,
                read_timeout=60,
                retries={"max_attempts": 3, "mode": "standard"},
            )
            self._client = self._session().client(
                "s3", region_name=self._region(), endpoint_url=endpoint, config=config
            )
        return self._client

    def _region(self) -> str | None:
        return self.connection.region if self.connection and self.connection.region else None

    def make_filesystem(self) -> pafs.S3FileSystem:
        """Return a pyarrow filesystem of this storage, credentials from the AWS chain."""
        import pyarrow.fs as pafs
        from botocore.exceptions import NoCredentialsError

        session = self._session()
        credentials = session.get_credentials()
        if credentials is None:
            raise NoCredentialsError()
        frozen = credentials.get_frozen_credentials()
        endpoint = self.connection.endpoint_url if self.connection else None
        return pafs.S3FileSystem(
            access_key=frozen.access_key,
            secret_key=frozen.secret_key,
            session_token=frozen.token,
            region=self._region() or session.region_name or "us-east-1",
            endpoint_override=endpoint,
            connect_timeout=10,
            request_timeout=60,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=3),
        )

    def describe(self, exc: BaseException, bucket: str) -> str:
        """Return a failure of S3 in words: what to check, never a credential."""
        from botocore import exceptions as boto

        code = _code(exc)
        if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
            return (
                "no AWS credentials found: give them the standard AWS way (AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance or CI role); "
                "segops.yaml never holds them"
            )
        if isinstance(exc, boto.ProfileNotFound | boto.CredentialRetrievalError):
            return (
                f"the AWS credentials cannot be loaded ({type(exc).__name__}): check "
                "AWS_PROFILE and the AWS configuration files"
            )
        if isinstance(exc, boto.EndpointConnectionError | boto.ConnectTimeoutError):
            return f"cannot reach S3 at {self.endpoint}: {self._check_endpoint()}"
        if code == "NoSuchBucket":
            return (
                f"the bucket '{bucket}' does not exist at {self.endpoint}: create it, or "
                "correct the URL"
            )
        if code in _CREDENTIALS:
            return (
                f"S3 refused the AWS credentials in use for s3://{bucket}/ ({code}): check "
                "the AWS credentials (environment, AWS_PROFILE or the CI role) and their "
                "permissions"
            )
        if code:
            return f"S3 at {self.endpoint} answered {code} for s3://{bucket}/"
        return f"cannot read from S3 at {self.endpoint} ({type(exc).__name__})"

    def _check_endpoint(self) -> str:
        if self.connection and self.connection.endpoint_url:
            return f"check segops.yaml sources.{self.connection.name}.endpoint_url"
        return "check the network, or set an endpoint_url in segops.yaml `sources`"


class LocatedUnreadable(Exception):
    """An exact reader's refusal, with the object it read."""

    def __init__(self, url: str, error: Any) -> None:
        super().__init__(error.message)
        self.url = url
        self.line: int | None = error.line
        self.message: str = error.message


class _Raw(io.RawIOBase):
    """A pyarrow input stream as a raw binary file (for io.BufferedReader's readline)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.stream.close()
        super().close()


def _parquet_rows(handle: Any) -> Iterator[tuple[int, dict[str, object]]]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(handle).iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            number += 1
            yield number, row


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def source_error(source: Source, message: str) -> SourceError:
    """Return the error naming the manifest and the source's key, e.g. spec.source.csv.url."""
    key = "spec.source.sql" if source.kind is SourceKind.SQL else f"spec.source.{source.kind}.url"
    return SourceError([Problem(source.manifest, message, source.line, key)])
