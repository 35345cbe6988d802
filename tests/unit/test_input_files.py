"""Input files the runner cannot write end the task with a reason (`input_unwritable`),
not with a crashed runner that the API can only call `runner_lost` (issue 21). The API
refuses such paths already; this holds for any it still lets through."""

from __future__ import annotations

import pytest
from job_runner.task_files import InputsUnavailable, write_inputs


@pytest.mark.parametrize(
    "files",
    [{"a": "file", "a/b": "file under a"}, {"é" * 128: "256 bytes of name"}],
)
def test_an_input_file_that_cannot_be_written_is_input_unwritable(tmp_path, files):
    spec = {"input": {"files": files}}
    with pytest.raises(InputsUnavailable) as refused:
        # A minimal spec: only what write_inputs reads.
        write_inputs(spec, None, str(tmp_path), None)  # type: ignore[arg-type]
    assert refused.value.code == "input_unwritable"
    assert "cannot be written" in str(refused.value)
