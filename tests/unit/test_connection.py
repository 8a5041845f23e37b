"""DuckDB connections: the progress bar is off, and fd 1 is restored after any use of quiet()."""

from __future__ import annotations

import os
import threading

from segops.engine.connection import connect, quiet


def _fd1_target() -> tuple[int, int]:
    info = os.fstat(1)
    return info.st_dev, info.st_ino


def test_every_connection_has_the_progress_bar_off() -> None:
    con = connect("64MB", 1)
    settings = dict(
        con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN "
            "('enable_progress_bar', 'enable_progress_bar_print', 'threads', 'memory_limit')"
        ).fetchall()
    )
    assert settings["enable_progress_bar"] == "false"
    assert settings["enable_progress_bar_print"] == "false"
    assert settings["threads"] == "1"
    con.close()


def test_quiet_points_fd1_at_stderr_and_restores_it_nested_and_across_threads() -> None:
    before = _fd1_target()
    stderr = os.fstat(2).st_dev, os.fstat(2).st_ino
    with quiet():
        assert _fd1_target() == stderr or before == stderr
        with quiet():
            pass
        assert _fd1_target() == stderr or before == stderr  # the inner exit keeps it
    assert _fd1_target() == before
    inside = threading.Barrier(8)

    def work() -> None:
        with quiet():
            inside.wait()  # every thread inside at once, then they leave in any order

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _fd1_target() == before
