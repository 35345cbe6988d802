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

    def _write(self, severity: str, message: str, args: tuple, exc_info: bool) -> None:
        entry = {
            "severity": severity,
            "message": message % args if args else message,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "logging.googleapis.com/labels": {"service": "job-runner", "taskId": self.task_id},
        }
        # As `logging` does with exc_info=True (and always for errors): the exception
        # being handled, if any, goes with the entry.
        if (exc_info or severity == "ERROR") and sys.exc_info()[0] is not None:
            import traceback

            entry["stack_trace"] = traceback.format_exc()
        sys.stderr.write(json.dumps(entry) + "\n")
        sys.stderr.flush()

    def info(self, message: str, *args: object, exc_info: bool = False) -> None:
        self._write("INFO", message, args, exc_info)

    def warning(self, message: str, *args: object, exc_info: bool = False) -> None:
        self._write("WARNING", message, args, exc_info)

    def error(self, message: str, *args: object, exc_info: bool = False) -> None:
        self._write("ERROR", message, args, exc_info)


log = RunnerLog()


def configure(task_id: str) -> RunnerLog:
    log.task_id = task_id
    return log
