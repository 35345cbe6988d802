"""JSON-line logs that Cloud Logging understands (severity, message, labels, trace).

See https://cloud.google.com/logging/docs/structured-logging for the field names.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

from flask import has_request_context, request


class CloudLoggingFormatter(logging.Formatter):
    def __init__(self, project: str | None = None) -> None:
        super().__init__()
        self.project = project or os.environ.get("GOOGLE_CLOUD_PROJECT", "")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        labels = {"service": "api-server"}
        task_id = getattr(record, "task_id", None)
        if task_id:
            labels["taskId"] = task_id
        entry["logging.googleapis.com/labels"] = labels
        if has_request_context():
            trace = request.headers.get("X-Cloud-Trace-Context", "")
            if trace:
                entry["logging.googleapis.com/trace"] = (
                    f"projects/{self.project}/traces/{trace.split('/')[0]}"
                )
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(project: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(CloudLoggingFormatter(project))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "google", "grpc", "werkzeug", "httpx", "httpx2", "anthropic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
