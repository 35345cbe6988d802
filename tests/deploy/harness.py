"""Running deploy-gcp.sh against the recording fake cloud (fake_cloud.py), and reading
what it did."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy-gcp.sh"
FAKE = Path(__file__).with_name("fake_cloud.py")
PROJECT = "demo-proj"
REGION = "us-central1"
API_SA = f"agent-api@{PROJECT}.iam.gserviceaccount.com"
RUNNER_SA = f"agent-runner@{PROJECT}.iam.gserviceaccount.com"
SCHEDULER_SA = f"agent-scheduler@{PROJECT}.iam.gserviceaccount.com"
BUILDER_SA = f"agent-builder@{PROJECT}.iam.gserviceaccount.com"
# Distinctive, so that finding it anywhere it should not be is unambiguous.
ANTHROPIC_KEY = "sk-ant-api03-CANARY-7f3e9c1d-never-on-argv"

# The commands that change something. Reads (describe, list, get-iam-policy) are not.
MUTATING_VERBS = {
    "create",
    "enable",
    "update",
    "add",
    "deploy",
    "submit",
    "undelete",
    "add-iam-policy-binding",
}


def is_mutating(argv: list[str]) -> bool:
    return any(word in MUTATING_VERBS for word in argv if not word.startswith("-"))


def words(argv: list[str]) -> list[str]:
    """The positional words of a command line (its flags dropped)."""
    return [a for a in argv if not a.startswith("-")]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    calls: list[dict] = field(default_factory=list)  # this run's calls only

    def gcloud(self) -> list[list[str]]:
        return [c["argv"] for c in self.calls if c["tool"] == "gcloud"]

    def curl(self) -> list[list[str]]:
        return [c["argv"] for c in self.calls if c["tool"] == "curl"]

    def mutations(self) -> list[list[str]]:
        return [argv for argv in self.gcloud() if is_mutating(argv)]

    def printed_commands(self) -> list[list[str]]:
        """The commands the script printed (`+ gcloud ...` lines), as argv lists."""
        return [
            shlex.split(line[2:])
            for line in self.stderr.splitlines()
            if line.startswith(("+ gcloud ", "+ curl "))
        ]

    def find(self, *prefix: str) -> list[str]:
        """The one gcloud call whose positional words start with prefix."""
        found = [argv for argv in self.gcloud() if words(argv)[: len(prefix)] == list(prefix)]
        assert len(found) == 1, (prefix, found)
        return found[0]


class FakeCloud:
    """A project as the fake gcloud sees it: a state file that outlives each run."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.log = tmp / "calls.jsonl"
        self.state_file = tmp / "state.json"
        for tool in ("gcloud", "curl"):
            shim = self.bin / tool
            shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{FAKE}" {tool} "$@"\n')
            shim.chmod(0o755)
        # The script's own helpers need a python3; in python images it is not in /usr/bin.
        (self.bin / "python3").symlink_to(sys.executable)

    def env(self, **extra: str) -> dict[str, str]:
        # A clean environment: nothing of the test session's (GOOGLE_CLOUD_PROJECT...).
        return {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "HOME": str(self.tmp),
            "TMPDIR": str(self.tmp),
            "LANG": "C.UTF-8",
            "FAKE_CLOUD_LOG": str(self.log),
            "FAKE_CLOUD_STATE": str(self.state_file),
            **extra,
        }

    def run(self, *args: str, stdin: str | None = None, **env: str) -> Run:
        before = self.calls()
        done = subprocess.run(
            ["bash", str(SCRIPT), "--project", PROJECT, "--tag", "t1", *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            env=self.env(**env),
            cwd=self.tmp,
            timeout=60,
        )
        return Run(done.returncode, done.stdout, done.stderr, self.calls()[len(before) :])

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def key_file(self, key: str = ANTHROPIC_KEY) -> Path:
        path = self.tmp / "anthropic.key"
        path.write_text(key + "\n")
        return path


def assert_ok(run: Run) -> None:
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stderr[-4000:]}"


def venv_tool(name: str) -> str:
    """A tool the dev dependencies install next to this Python (shellcheck, hadolint,
    checkov; uv, which the Makefile installs there), or else the one on PATH."""
    path = Path(sys.executable).with_name(name)
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is missing from the environment: run `make test` (uv sync)"
    return found
