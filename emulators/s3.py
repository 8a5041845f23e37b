"""An S3-compatible server on 127.0.0.1 for local use, the docs and the tests: moto's own.

moto's standalone server speaks S3 over HTTP, including conditional writes
(`If-None-Match: *`, `If-Match`), but checks a condition and writes in two steps, so two
racing requests can both pass; S3 itself decides them atomically. This server runs
conditional requests one at a time, which gives them S3's guarantee. It accepts any
credentials (`--check-credentials` makes it refuse every key: moto then checks keys
against its own IAM, which knows none).

    python -m emulators.s3 --port 9000 --bucket segops-state
    python -m emulators.s3 --port 9000 --put lake/exports/cart.csv=data/cart_abandoners.csv
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import boto3
import requests
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _OneConditionalAtATime:
    """WSGI middleware: requests with If-Match / If-None-Match run one at a time.

    The last 100,000 requests are noted in `seen` as (method, path, the client's
    User-Agent): tests tell which client read or wrote an object (boto3 on the machine
    running segops, pyarrow's AWS SDK for C++ in a Spark task).
    """

    def __init__(self, app: WsgiApp, seen: deque[tuple[str, str, str]]) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.seen = seen

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        agent = str(environ.get("HTTP_USER_AGENT", ""))
        self.seen.append((str(environ["REQUEST_METHOD"]), str(environ["PATH_INFO"]), agent))
        if "HTTP_IF_MATCH" not in environ and "HTTP_IF_NONE_MATCH" not in environ:
            return self.app(environ, start_response)
        with self.lock:  # the check and the write, then the whole answer
            return list(self.app(environ, start_response))


class AtomicMotoServer(ThreadedMotoServer):
    """moto's threaded server with conditional requests made atomic."""

    seen: deque[tuple[str, str, str]]  # the last requests: (method, path, User-Agent)

    def _server_entry(self) -> None:
        self.seen = deque(maxlen=100_000)  # a server left running keeps no more
        app = _OneConditionalAtATime(DomainDispatcherApplication(create_backend_app), self.seen)
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


def start(port: int = 0) -> tuple[AtomicMotoServer, str]:
    """Start the server on 127.0.0.1:`port` (0: a free one); return it and its URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = AtomicMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    return server, f"http://{host}:{bound}"


def check_credentials(endpoint_url: str, on: bool) -> None:
    """Make the server refuse every access key (moto's IAM knows none), or accept any again."""
    answer = requests.post(f"{endpoint_url}/moto-api/reset-auth", data=b"0" if on else b"inf")
    answer.raise_for_status()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--bucket", action="append", default=[], help="create this bucket")
    parser.add_argument(
        "--put",
        action="append",
        default=[],
        metavar="BUCKET/KEY=FILE",
        help="put a local file as an object (its bucket created first)",
    )
    parser.add_argument("--check-credentials", action="store_true")
    args = parser.parse_args(argv)
    server, url = start(args.port)
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="emulator",
        aws_secret_access_key="emulator",
    )
    for bucket in args.bucket:
        client.create_bucket(Bucket=bucket)
    for item in args.put:
        where, _, file = item.rpartition("=")  # a key may hold "=" (hive folders)
        bucket, _, key = where.partition("/")
        if bucket not in args.bucket:
            client.create_bucket(Bucket=bucket)
            args.bucket.append(bucket)
        client.upload_file(file, bucket, key)
    if args.check_credentials:
        check_credentials(url, True)
    print(f"S3 emulator on {url} (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
