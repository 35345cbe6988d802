"""The runner forgets its task token once read: not in os.environ (what children
inherit), and not in /proc/<pid>/environ either (the initial environment block, which
os.environ.pop leaves as it was)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).resolve().parents[2] / "job-runner"
FORGET = """
import os, subprocess, sys
from job_runner.environ import forget_environment_variable
before = b"tt1.secret-value" in open("/proc/self/environ", "rb").read()
forgotten = forget_environment_variable("TASK_TOKEN")
after = open("/proc/self/environ", "rb").read()
child = subprocess.run(["env"], capture_output=True).stdout
print(before, forgotten, b"tt1.secret-value" in after, b"TASK_TOKEN" in child,
      b"OTHER=kept" in after, os.environ.get("OTHER"))
"""


def run_as(uid: int | None) -> str:
    done = subprocess.run(
        [sys.executable if uid is None else "/usr/bin/python3", "-c", FORGET],
        env={"TASK_TOKEN": "tt1.secret-value", "OTHER": "kept", "PYTHONPATH": str(RUNNER)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd="/",
        user=uid,
        group=uid,
        extra_groups=[] if uid is not None else None,
    )
    return done.stdout.strip()


def test_the_token_leaves_the_environment_and_proc_environ():
    assert run_as(None) == "True True False False True kept"


def test_it_works_for_a_runner_that_is_not_root():
    assert os.geteuid() == 0, "this test becomes uid 10001: run it as root"
    assert run_as(10001) == "True True False False True kept"
