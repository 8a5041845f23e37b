"""Publishers: files at unguessable URLs, gone once deleted; S3 against a real S3 server."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from segops.destinations.moengage.publish import HttpPublisher, S3Publisher, publisher_for
from segops.errors import DestinationError
from segops.model import Connection, Platform, Scalar
from tests.s3server import S3Server, s3_server

BUCKET = "segops-publish-test"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        server.create_bucket(BUCKET)
        yield server


def connection(**options: Scalar) -> Connection:
    return Connection("moe", Platform.MOENGAGE, Platform.MOENGAGE, tuple(sorted(options.items())))


# HTTP


def test_http_serves_each_file_at_its_secret_url_until_deleted() -> None:
    with HttpPublisher() as publisher:
        first = publisher.publish("add-0000.csv", b"a@example.com\n")
        second = publisher.publish("add-0000.csv", b"b@example.com\n")
        assert httpx.get(first.url).content == b"a@example.com\n"
        assert httpx.get(second.url).content == b"b@example.com\n"
        publisher.delete(first.key)
        assert httpx.get(first.url).status_code == 404
        assert httpx.get(second.url).status_code == 200
        publisher.delete(first.key)  # unknown keys are not an error


def test_http_urls_are_unguessable_and_keys_reveal_nothing() -> None:
    with HttpPublisher() as publisher:
        published = [publisher.publish("f.csv", b"x\n") for _ in range(20)]
        tokens = [urlsplit(p.url).path.split("/")[1] for p in published]
        assert len(set(tokens)) == 20 and all(len(t) >= 43 for t in tokens)  # 32 random bytes
        assert len({p.key for p in published}) == 20
        assert all(t not in p.key for t, p in zip(tokens, published, strict=True))
        assert all(p.url not in repr(p) for p in published)
        base = published[0].url.rsplit("/", 2)[0]
        for path in ("/", "/f.csv", f"/{tokens[0]}", f"/{tokens[0]}/other.csv", f"/x/{tokens[0]}"):
            assert httpx.get(base + path).status_code == 404
        assert httpx.get(published[0].url + "?x=1").status_code == 404


def test_http_close_stops_serving_and_deletes_the_files() -> None:
    publisher = HttpPublisher()
    published = publisher.publish("f.csv", b"x\n")
    folder = publisher._folder
    assert any(folder.iterdir())
    publisher.close()
    assert not folder.exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(published.url, timeout=2)


def test_http_public_url_names_the_server_as_seen_from_outside() -> None:
    with HttpPublisher(public_url="https://files.example.com/segops/") as publisher:
        url = publisher.publish("f.csv", b"x\n").url
        assert url.startswith("https://files.example.com/segops/") and url.endswith("/f.csv")


@pytest.mark.parametrize("name", ["", "../x.csv", "a/b.csv", ".hidden", "a b.csv"])
def test_names_are_plain_file_names(name: str) -> None:
    with HttpPublisher() as publisher, pytest.raises(DestinationError):
        publisher.publish(name, b"x\n")


# S3


def test_s3_presigned_url_downloads_over_http_and_is_gone_after_delete(s3: S3Server) -> None:
    client = s3.client()
    publisher = S3Publisher(BUCKET, prefix="files/", client=client, url_ttl=600)
    published = publisher.publish("add-0000.csv", b"a@example.com\n")
    assert httpx.get(published.url).content == b"a@example.com\n"
    assert published.key.startswith("files/") and published.key.endswith("/add-0000.csv")
    assert parse_qs(urlsplit(published.url).query)["X-Amz-Expires"] == ["600"]
    # private: the object's plain URL, without the signature, is refused
    assert httpx.get(f"{s3.endpoint_url}/{BUCKET}/{published.key}").status_code == 403
    assert published.url not in repr(published)
    publisher.delete(published.key)
    assert httpx.get(published.url).status_code == 404
    assert client.list_objects_v2(Bucket=BUCKET, Prefix="files/").get("KeyCount") == 0


def test_s3_keys_are_unguessable_and_distinct(s3: S3Server) -> None:
    publisher = S3Publisher(BUCKET, prefix="k/", client=s3.client())
    keys = [publisher.publish("f.csv", b"x\n").key for _ in range(10)]
    tokens = [k.split("/")[1] for k in keys]
    assert len(set(keys)) == 10 and all(len(t) >= 43 for t in tokens)
    for key in keys:
        publisher.delete(key)


def test_s3_errors_name_the_bucket_never_a_url(s3: S3Server) -> None:
    publisher = S3Publisher("no-such-bucket-here", client=s3.client())
    with pytest.raises(DestinationError) as error:
        publisher.publish("f.csv", b"x\n")
    assert "NoSuchBucket" in str(error.value) and "http" not in str(error.value)


# from a connection


def test_publisher_for_s3_reads_the_connection_options(s3: S3Server) -> None:
    options: dict[str, Scalar] = {
        "publish.s3.bucket": BUCKET,
        "publish.s3.prefix": "segops/files/",
        "publish.s3.region": "us-east-1",
        "publish.s3.endpoint_url": s3.endpoint_url,
        "publish.s3.url_ttl": 3600,
    }
    publisher = publisher_for(connection(**options))
    assert isinstance(publisher, S3Publisher)
    settings = (publisher.bucket, publisher.prefix, publisher.url_ttl)
    assert settings == (BUCKET, "segops/files/", 3600)


def test_publisher_for_http_is_the_default() -> None:
    with publisher_for(connection(**{"publish.http.host": "127.0.0.1"})) as publisher:
        assert isinstance(publisher, HttpPublisher)
        published = publisher.publish("f.csv", b"x\n")
        assert httpx.get(published.url).content == b"x\n"
    with publisher_for(connection(**{"publish.http.url": "http://example.com"})) as publisher:
        assert publisher.publish("f.csv", b"x\n").url.startswith("http://example.com/")
