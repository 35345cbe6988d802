"""The runner's JSON log lines (job_runner/logs.py)."""

from __future__ import annotations

import json

from job_runner.llm_relay import _Server


def test_the_relays_error_handler_logs_the_dropped_connection_with_its_traceback(capsys):
    try:
        raise ConnectionResetError("peer went away")
    except ConnectionResetError:
        # socketserver calls handle_error inside the handler's `except`.
        _Server.handle_error(None, None, None)  # type: ignore[arg-type]  # no server needed
    (line,) = capsys.readouterr().err.splitlines()
    entry = json.loads(line)
    assert entry["severity"] == "WARNING"
    assert entry["message"] == "the LLM relay dropped a connection"
    assert "ConnectionResetError: peer went away" in entry["stack_trace"]
