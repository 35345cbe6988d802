"""Running deploy-gcp.sh (and cloudbuild.yaml's commands) with the real gcloud and the
real curl against the loopback recorder (recorder.py), and reading what they did."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.recorder import PROJECT_NUMBER, Cloud, Recorder

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy-gcp.sh"
PROJECT = "demo-proj"
REGION = "us-central1"
API_SA = f"agent-api@{PROJECT}.iam.gserviceaccount.com"
RUNNER_SA = f"agent-runner@{PROJECT}.iam.gserviceaccount.com"
SCHEDULER_SA = f"agent-scheduler@{PROJECT}.iam.gserviceaccount.com"
BUILDER_SA = f"agent-builder@{PROJECT}.iam.gserviceaccount.com"
URL = f"https://agent-api-{PROJECT_NUMBER}.{REGION}.run.app"
# Distinctive, so that finding it anywhere it should not be is unambiguous.
ANTHROPIC_KEY = "sk-ant-api03-CANARY-7f3e9c1d-never-on-argv"
# Requests that read, though not GETs: everything else changes the project.
READS = (":getIamPolicy", "entries:list")


def is_change(request: dict) -> bool:
    return request["method"] != "GET" and not request["path"].endswith(READS)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    requests: list[dict] = field(default_factory=list)  # this run's requests only

    def changes(self) -> list[tuple[str, str]]:
        return [(r["method"], r["path"]) for r in self.requests if is_change(r)]

    def gcloud_commands(self) -> list[str]:
        """The commands the script printed (`+ gcloud ...`), for messages."""
        return [line for line in self.stderr.splitlines() if line.startswith("+ gcloud ")]


def assert_ok(run: Run) -> None:
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stderr[-4000:]}"


class Project:
    """One project in the recorder, and deploy-gcp.sh's runs against it."""

    after_first: Cloud  # the `deployed` fixture's: what its first run left

    def __init__(self, tmp: Path, cloud: Cloud | None = None) -> None:
        self.tmp = tmp
        self.cloud = cloud or Cloud(PROJECT)
        self.recorder = Recorder(self.cloud, tmp)
        self.bin = tmp / "bin"
        self.bin.mkdir(exist_ok=True)
        # The script's own helpers need a python3; in python images it is not in /usr/bin.
        if not (self.bin / "python3").exists():
            (self.bin / "python3").symlink_to(sys.executable)

    def copy(self, tmp: Path) -> Project:
        """Another project holding what this one holds now (for one more scenario)."""
        return Project(tmp, self.cloud.copy())

    def close(self) -> None:
        self.recorder.close()

    def env(self, **extra: str) -> dict[str, str]:
        # A clean environment: nothing of the test session's (GOOGLE_CLOUD_PROJECT...).
        return {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "HOME": str(self.tmp),
            "TMPDIR": str(self.tmp),
            "LANG": "C.UTF-8",
            **self.recorder.env(self.tmp / "gcloud-config"),
            **extra,
        }

    def run(self, *args: str, stdin: str = "", timeout: int = 900, **env: str) -> Run:
        return self.command(
            ["bash", str(SCRIPT), "--project", PROJECT, "--tag", "t1", *args],
            stdin=stdin,
            timeout=timeout,
            **env,
        )

    def command(self, argv: list[str], stdin: str = "", timeout: int = 900, **env: str) -> Run:
        before = len(self.cloud.requests)
        done = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(**env),
            cwd=self.tmp,
            timeout=timeout,
        )
        return Run(done.returncode, done.stdout, done.stderr, self.cloud.requests[before:])

    def key_file(self, key: str = ANTHROPIC_KEY) -> Path:
        path = self.tmp / "anthropic.key"
        path.write_text(key + "\n")
        return path

    # -- Reading the recorded project ------------------------------------------------
    def service(self) -> dict:
        return self.cloud.resources["run/services/agent-api"]

    def job(self) -> dict:
        return self.cloud.resources["run/jobs/agent-runner"]

    def scheduler_job(self) -> dict:
        return self.cloud.resources[f"projects/{PROJECT}/locations/{REGION}/jobs/agent-reconcile"]

    def bucket(self, name: str) -> dict:
        return self.cloud.resources[f"b/{name}"]

    def executions(self) -> list[dict]:
        return [v for k, v in self.cloud.resources.items() if k.startswith("run/executions/")]


def new_tmp(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def venv_tool(name: str) -> str:
    """A tool the dev dependencies install next to this Python (shellcheck, hadolint,
    checkov; uv, which the Makefile installs there), or else the one on PATH."""
    path = Path(sys.executable).with_name(name)
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is missing from the environment: run `make test` (uv sync)"
    return found


def request_body(run: Run, method: str, path_end: str) -> dict:
    """The body of the one request of this run whose path ends so."""
    found = [r for r in run.requests if r["method"] == method and r["path"].endswith(path_end)]
    assert len(found) == 1, (method, path_end, [r["path"] for r in found])
    body = found[0]["body"]
    return body if isinstance(body, dict) else json.loads(body)
