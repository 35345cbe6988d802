"""cloudbuild.yaml as Cloud Build gets it: loaded by the real `gcloud builds submit
--config` against the recorder (gcloud parses it into its Build message and refuses
unknown fields), and its test step run the way its image would run it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.deploy.harness import BUILDER_SA, PROJECT, REGION, ROOT, Project, assert_ok

CONFIG = ROOT / "cloudbuild.yaml"
# What python:3.11-slim-bookworm lacks, and the test step must therefore not need.
ABSENT = {"bwrap", "gcloud", "node", "npm", "npx", "terraform", "docker", "sudo"}
NOBODY = 65534


def test_gcloud_submits_the_build_the_file_describes(project: Project):
    project.cloud.resources[f"b/{PROJECT}-agent-builds"] = {"name": f"{PROJECT}-agent-builds"}
    run = project.command(
        [
            "gcloud",
            "builds",
            "submit",
            str(ROOT),
            f"--config={CONFIG}",
            f"--region={REGION}",
            f"--project={PROJECT}",
            "--substitutions=COMMIT_SHA=abc123",
            f"--service-account=projects/{PROJECT}/serviceAccounts/{BUILDER_SA}",
            f"--gcs-source-staging-dir=gs://{PROJECT}-agent-builds/source",
            "--async",
            "--quiet",
        ]
    )
    assert_ok(run)
    [build] = [r["body"] for r in run.requests if r["path"].endswith("/builds")]
    written = yaml.safe_load(CONFIG.read_text())
    assert [s["id"] for s in build["steps"]] == [s["id"] for s in written["steps"]]
    for sent, step in zip(build["steps"], written["steps"], strict=True):
        assert sent["name"] == step["name"]
        assert sent.get("waitFor") == step.get("waitFor")
        assert [str(a) for a in sent["args"]] == [str(a) for a in step["args"]]
    assert build["substitutions"] == {**written["substitutions"], "COMMIT_SHA": "abc123"}
    assert build["serviceAccount"] == f"projects/{PROJECT}/serviceAccounts/{BUILDER_SA}"
    assert build["options"]["logging"] == "CLOUD_LOGGING_ONLY"
    assert build["timeout"] == written["timeout"]
    assert build["images"] == written["images"]
    assert build["source"]["storageSource"]["bucket"] == f"{PROJECT}-agent-builds"


def _bare_path(directory: Path) -> str:
    """A PATH of /usr/bin's tools minus what the python image lacks (and any python3)."""
    for tool in Path("/usr/bin").iterdir():
        if tool.name in ABSENT or tool.name.startswith("python"):
            continue
        (directory / tool.name).symlink_to(tool)
    (directory / "uv").symlink_to(shutil.which("uv") or ROOT / ".venv/bin/uv")
    return str(directory)


@pytest.mark.timeout(600)
def test_the_test_step_passes_without_root_bwrap_or_a_system_python():
    """The step's script: its `uv sync` as root (pip's uv is this one; uv links the
    packages from its cache), then every later command as uid 65534, in an empty
    environment whose PATH has no bwrap, gcloud, node, terraform or python3."""
    script = yaml.safe_load(CONFIG.read_text())
    [step] = [s for s in script["steps"] if s["id"] == "tests"]
    lines = step["args"][1].splitlines()
    [pip] = [line for line in lines if "pip install" in line]
    [sync] = [line for line in lines if "uv sync" in line]
    checks = "\n".join(line for line in lines if line not in (pip, sync))
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o777)
        (Path(tmp) / "bin").mkdir()
        env = {
            "PATH": _bare_path(Path(tmp) / "bin"),
            "HOME": tmp,
            "LANG": "C.UTF-8",
            # The image's interpreter is not this session's (root's pyenv): Debian's.
            "UV_PROJECT_ENVIRONMENT": f"{tmp}/venv",
            "UV_PYTHON": "/usr/bin/python3.11",
            "RUFF_CACHE_DIR": f"{tmp}/ruff-cache",
            "MYPY_CACHE_DIR": f"{tmp}/mypy-cache",
            "PYTEST_ADDOPTS": "-p no:cacheprovider",
        }
        # The install may download (through this machine's TLS settings) what the
        # session's uv cache lacks.
        network = {k: v for k, v in os.environ.items() if k.startswith(("SSL_", "UV_INDEX"))}
        network |= {k: v for k, v in os.environ.items() if k.lower().endswith("_proxy")}
        synced = subprocess.run(
            ["/bin/bash", "-c", sync],
            env={**env, **network},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert synced.returncode == 0, synced.stderr
        subprocess.run(["chmod", "-R", "a+rX", f"{tmp}/venv"], check=True)
        done = subprocess.run(
            [
                "setpriv",
                f"--reuid={NOBODY}",
                f"--regid={NOBODY}",
                "--clear-groups",
                "/bin/bash",
                "-c",
                "set -euo pipefail\n" + checks,
            ],
            env={**env, "UV_CACHE_DIR": f"{tmp}/uv-cache", "UV_NO_SYNC": "1"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=580,
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"\d+ passed", done.stdout), done.stdout[-2000:]
