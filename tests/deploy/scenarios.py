"""The scenarios that start from a deployed project, each on its own copy: they run at
once (gcloud's start-up, about a second a command, is most of their time)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from tests.deploy.harness import API_SA, PROJECT, REGION, ROOT, SCRIPT, Project, Run

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
    return {"run": project.run("--tag", "t2")}


def failing_smoke_task(project: Project) -> dict:
    """The new code prints 41: the deploy must stop before the live job changes."""
    project.cloud.smoke_task_output = "41\n"
    serving = [dict(t) for t in project.service()["status"]["traffic"] if t.get("percent")]
    return {"serving": serving, "run": project.run("--tag", "t2")}


def settings(project: Project) -> dict:
    """A setting added by hand, settings given once by flag, then a plain rerun."""
    by_hand = project.command(
        [
            "gcloud",
            "run",
            "services",
            "update",
            "agent-api",
            f"--region={REGION}",
            f"--project={PROJECT}",
            "--update-env-vars=MAX_TASKS_IN_FLIGHT=50",
            "--quiet",
        ]
    )
    flags = project.run(
        "--auth-mode",
        "firebase",
        "--firebase-web-config",
        '{"apiKey": "AIza-test", "projectId": "demo-proj"}',
        "--env",
        "ALLOWED_MODELS=claude-haiku-4-5",
        "--max-instances",
        "3",
    )
    return {"by_hand": by_hand, "flags": flags, "rerun": project.run()}


def rotation(project: Project) -> dict:
    key = project.key_file("sk-ant-rotated-key-2")
    return {"run": project.run("--anthropic-key-file", str(key), "--rotate-token-key")}


def cloud_build_rollout(project: Project) -> dict:
    """cloudbuild.yaml's rollout step, as Cloud Build runs it after pushing build-7."""
    [step] = [
        s
        for s in yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())["steps"]
        if s["id"] == "rollout"
    ]
    values = {"$PROJECT_ID": PROJECT, "$PROJECT_NUMBER": "123456789012", "$BUILD_ID": "build-7"}
    values |= {
        f"${{{k}}}": v
        for k, v in yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())["substitutions"].items()
    }
    argv = []
    for arg in step["args"]:
        for name, value in values.items():
            arg = arg.replace(name, value)
        argv.append(str(SCRIPT) if arg == "deploy-gcp.sh" else arg)
    return {"run": project.command([step["entrypoint"], *argv])}


SCENARIOS = {
    "conditional_binding": conditional_binding,
    "cloud_build_rollout": cloud_build_rollout,
    "failed_candidate": failed_candidate,
    "failing_self_check": failing_self_check,
    "failing_smoke_task": failing_smoke_task,
    "settings": settings,
    "rotation": rotation,
}


def run_all(deployed: Project, tmp: Path) -> dict[str, tuple[Project, dict[str, Run]]]:
    projects = {}
    for name in SCENARIOS:
        (tmp / name).mkdir()
        projects[name] = deployed.copy(tmp / name)
    # A few at a time: each is a deploy of some thirty gcloud commands, and a loaded
    # 2-core machine runs eight at once slower than it runs them in turn.
    with ThreadPoolExecutor(3) as pool:
        futures = {name: pool.submit(SCENARIOS[name], projects[name]) for name in SCENARIOS}
        return {name: (projects[name], future.result()) for name, future in futures.items()}
