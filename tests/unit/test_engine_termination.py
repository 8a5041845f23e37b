"""A SIGTERM that DuckDB saw inside a query ends the run with the signal's code, not a crash.

DuckDB checks Python's signals while a query runs; when the handler raises SystemExit there,
the query ends with "RuntimeError: Query interrupted". The engine turns that into the
SystemExit the signal asked for; without a termination, the error stays what it is.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from segops.engine.duck import DuckDBEngine
from segops.model import EngineConfig
from segops.ui import interrupt


def interrupted() -> None:
    raise RuntimeError("Query interrupted")


def test_a_query_interrupted_by_a_termination_ends_the_run_with_its_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    interrupts = interrupt.Interrupts(write=lambda _line: None)
    monkeypatch.setattr(interrupt, "_current", [interrupts])
    engine = DuckDBEngine(tmp_path, tmp_path, EngineConfig())
    try:
        with pytest.raises(RuntimeError, match="Query interrupted"):  # no signal: a bug
            engine._run("the source", interrupted)
        with pytest.raises(SystemExit) as first:
            interrupts._terminate(signal.SIGHUP, None)
        assert first.value.code == 129
        with pytest.raises(SystemExit) as ended:
            engine._run("the source", interrupted)
        assert ended.value.code == 129 and interrupts.terminated == 129
        with pytest.raises(SystemExit):  # a later SIGTERM does not change the code
            interrupts._terminate(signal.SIGTERM, None)
        assert interrupt.termination() == 129
    finally:
        engine.close()
