"""A real Spark Connect server in local mode on 127.0.0.1, for the Spark engine's tests.

Started from the pyspark package's own Spark distribution (its jars hold the Connect
server) with this interpreter as the executors' Python, so they import this checkout's
segops. One server serves the whole test session: each segops command opens its own
session on it, as a CI job would against a shared cluster.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.s3state import aws_env

READY_SECONDS = 180  # a busy machine starts a JVM slowly


def java_available() -> bool:
    return shutil.which("java") is not None or bool(os.environ.get("JAVA_HOME"))


@contextmanager
def spark_connect_server(cores: int = 2) -> Iterator[str]:
    """Run a Spark Connect server; yield its URL (sc://127.0.0.1:PORT)."""
    import pyspark

    home = Path(pyspark.__file__).parent
    port = _free_port()
    repo = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")])),
        # the executors' own AWS chain: the S3 emulator's test credentials (tests/s3state.py)
        **aws_env(Path(tempfile.gettempdir())),
    }
    command = [
        str(home / "bin" / "spark-submit"),
        "--master",
        f"local[{cores}]",
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        "spark.sql.shuffle.partitions=2",
        "--conf",
        f"spark.connect.grpc.binding.port={port}",
        "--conf",
        "spark.connect.grpc.binding.address=127.0.0.1",
        "--class",
        "org.apache.spark.sql.connect.service.SparkConnectServer",
        "spark-internal",
    ]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        try:
            _wait(proc, port, log)
            yield f"sc://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait(proc: subprocess.Popen[bytes], port: int, log: object) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)  # type: ignore[attr-defined]
            tail = log.read()[-2000:].decode(errors="replace")  # type: ignore[attr-defined]
            raise RuntimeError(f"the Spark Connect server exited ({proc.returncode}): {tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the Spark Connect server did not listen within {READY_SECONDS} s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
