"""JSON-line logs for Cloud Logging: severity, message, and the task id as a label.
https://cloud.google.com/logging/docs/structured-logging"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime


class _Formatter(logging.Formatter):
    def __init__(self, task_id: str) -> None:
        super().__init__()
        self.task_id = task_id

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logging.googleapis.com/labels": {"service": "job-runner", "taskId": self.task_id},
        }
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(task_id: str) -> logging.Logger:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(task_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    return logging.getLogger("job_runner")
