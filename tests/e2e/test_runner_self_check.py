"""`python -m job_runner --self-check` for real: bubblewrap, as a non-root user (uid
10001: the runner image ran as it before ADR 0013, and an operator may still run the
runner so), and its verdict when no sandbox can start. Needs root (to become that
uid) and bubblewrap: `make test` provides both. The runner as root, under each row of
issue 18's table: test_sandbox_under_container_restrictions.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from tests.deploy.harness import ROOT

RUNNER = ROOT / "job-runner"


NON_ROOT_UID = 10001


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


def test_the_sandbox_works_as_a_non_root_user():
    assert os.geteuid() == 0, "this test becomes a non-root uid: run it as root"
    assert shutil.which("bwrap"), "run `make system-deps`"
    uid = NON_ROOT_UID
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
    assert verdict["sandbox"] == "bwrap"  # the one backend a non-root runner has
    assert verdict["checks"] == {
        "sandbox": True,
        "program": True,
        "network": True,
        "environment": True,
        "uid": True,
        "statx": True,
    }
    assert verdict["sandboxUid"] not in (0, uid)
    assert not verdict["backends"]["bwrap-root"]["ok"]  # not root: refused, and why
    assert "not root" in verdict["backends"]["bwrap-root"]["error"]


def test_without_bubblewrap_the_verdict_fails_and_says_how_to_fix_it(tmp_path):
    (tmp_path / "python3").symlink_to(shutil.which("python3"))
    code, verdict, stderr = self_check(str(tmp_path))
    assert code == 1
    assert verdict["ok"] is False and verdict["failed"] == "sandbox"
    assert "user namespaces" in verdict["fix"] and "self-check failed" in stderr
    # Every backend, and what each needs.
    assert set(verdict["backends"]) == {"gvisor", "bwrap-root", "bwrap", "gvisor-rootless"}
    assert "bubblewrap (bwrap) was not found" in verdict["fix"]
    assert "runsc (apt-get install runsc)" in verdict["fix"]
