"""`python -m job_runner --self-check` for real: bubblewrap, as the runner image's
non-root user (uid 10001, as on Cloud Run), and its verdict when the sandbox cannot
start. Needs root (to become that uid) and bubblewrap: `make test` provides both."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

from tests.deploy.harness import ROOT

RUNNER = ROOT / "job-runner"


def image_uid() -> int:
    users = re.findall(r"^USER (\d+)", (RUNNER / "Dockerfile").read_text(), re.M)
    return int(users[-1])


def self_check(path: str, python: str = sys.executable, **popen) -> tuple[int, dict, str]:
    done = subprocess.run(
        [python, "-m", "job_runner", "--self-check"],
        env={"PATH": path, "HOME": "/tmp", "TASK_TOKEN": "secret-token", "PYTHONPATH": str(RUNNER)},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        **popen,
    )
    return done.returncode, json.loads(done.stdout), done.stderr


def test_the_sandbox_works_as_the_runner_images_non_root_user():
    assert os.geteuid() == 0, "this test becomes the image's uid: run it as root"
    assert shutil.which("bwrap"), "run `make system-deps`"
    uid = image_uid()
    code, verdict, stderr = self_check(
        # The runner needs only the standard library: the system python, which the
        # image's uid can read (the test session's venv is root's).
        "/usr/local/bin:/usr/bin:/bin",
        "/usr/bin/python3",
        user=uid,
        group=uid,
        extra_groups=[],
    )
    assert code == 0, (verdict, stderr)
    assert verdict["ok"] is True and verdict["uid"] == uid
    assert verdict["checks"] == {
        "sandbox": True,
        "program": True,
        "network": True,
        "environment": True,
    }
    assert verdict["sandboxUid"] not in (0, uid)


def test_without_bubblewrap_the_verdict_fails_and_says_how_to_fix_it(tmp_path):
    (tmp_path / "python3").symlink_to(shutil.which("python3"))
    code, verdict, stderr = self_check(str(tmp_path))
    assert code == 1
    assert verdict["ok"] is False and verdict["failed"] == "sandbox"
    assert "user namespaces" in verdict["fix"] and "self-check failed" in stderr
