"""The scenarios that start from a deployed project, each on its own copy: they run at
once (gcloud's start-up, about a second a command, is most of their time)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.deploy.harness import API_SA, PROJECT, REGION, Project, Run

IMAGES = f"{REGION}-docker.pkg.dev/{PROJECT}/agent-platform"
CONDITIONAL = {
    "role": "roles/viewer",
    "members": ["user:auditor@example.com"],
    "condition": {
        "title": "until-2030",
        "expression": "request.time < timestamp('2030-01-01T00:00:00Z')",
    },
}


def conditional_binding(project: Project) -> dict:
    """The project's policy holds someone's conditional binding, and lacks a grant."""
    policy = project.cloud.policies[f"projects/{PROJECT}"]
    policy["version"] = 3
    policy["bindings"] = [b for b in policy["bindings"] if b["role"] != "roles/logging.logWriter"]
    policy["bindings"].append(CONDITIONAL)
    return {"run": project.run()}


def failed_candidate(project: Project) -> dict:
    """cloudbuild.yaml's deploy-service step ran, then its smoke test failed (so no
    move-traffic): the traffic stays pinned to the revision before the candidate."""
    candidate = project.command(
        [
            "gcloud",
            "run",
            "deploy",
            "agent-api",
            f"--region={REGION}",
            f"--project={PROJECT}",
            f"--image={IMAGES}/api:broken",
            f"--service-account={API_SA}",
            "--no-traffic",
            "--tag=candidate",
            "--quiet",
        ]
    )
    pinned = [dict(t) for t in project.service()["status"]["traffic"]]
    return {"candidate": candidate, "pinned": pinned, "run": project.run()}


def failing_self_check(project: Project) -> dict:
    project.cloud.self_check_fails = True
    return {"run": project.run()}


def rotation(project: Project) -> dict:
    key = project.key_file("sk-ant-rotated-key-2")
    return {"run": project.run("--anthropic-key-file", str(key), "--rotate-token-key")}


SCENARIOS = {
    "conditional_binding": conditional_binding,
    "failed_candidate": failed_candidate,
    "failing_self_check": failing_self_check,
    "rotation": rotation,
}


def run_all(deployed: Project, tmp: Path) -> dict[str, tuple[Project, dict[str, Run]]]:
    projects = {}
    for name in SCENARIOS:
        (tmp / name).mkdir()
        projects[name] = deployed.copy(tmp / name)
    with ThreadPoolExecutor(len(SCENARIOS)) as pool:
        futures = {name: pool.submit(SCENARIOS[name], projects[name]) for name in SCENARIOS}
        return {name: (projects[name], future.result()) for name, future in futures.items()}
