"""JSON-line logs for Cloud Logging: severity, message, and the task id as a label.
https://cloud.google.com/logging/docs/structured-logging

A few lines of our own rather than the `logging` module: the runner is one short
process per task, and `logging` adds ~8 ms to every task's start (`make bench`)."""

from __future__ import annotations

import json
import sys
import time


class RunnerLog:
    def __init__(self) -> None:
        self.task_id = ""

    def _write(self, severity: str, message: str, args: tuple) -> None:
        entry = {
            "severity": severity,
            "message": message % args if args else message,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "logging.googleapis.com/labels": {"service": "job-runner", "taskId": self.task_id},
        }
        if severity == "ERROR" and sys.exc_info()[0] is not None:
            import traceback

            entry["stack_trace"] = traceback.format_exc()
        sys.stderr.write(json.dumps(entry) + "\n")
        sys.stderr.flush()

    def info(self, message: str, *args) -> None:
        self._write("INFO", message, args)

    def warning(self, message: str, *args) -> None:
        self._write("WARNING", message, args)

    def error(self, message: str, *args) -> None:
        self._write("ERROR", message, args)


log = RunnerLog()


def configure(task_id: str) -> RunnerLog:
    log.task_id = task_id
    return log
