"""cloudbuild.yaml: its steps and their order, its substitutions, and its shell
steps, run against the fake cloud."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.conftest import must_match
from tests.deploy.harness import ROOT, SCRIPT, venv_tool

CONFIG = ROOT / "cloudbuild.yaml"
ORDER = [
    "tests",
    "build-api",
    "build-runner",
    "push-api",
    "push-runner",
    "deploy-job",
    "self-check",
    "deploy-service",
    "smoke-test",
    "move-traffic",
]
STAGES = [
    ["tests"],
    ["build-api", "build-runner"],
    ["push-api", "push-runner"],
    ["deploy-job"],
    ["self-check"],
    ["deploy-service"],
    ["smoke-test"],
    ["move-traffic"],
]


def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def steps() -> dict[str, dict]:
    return {step["id"]: step for step in config()["steps"]}


def args(step_id: str) -> list[str]:
    return [str(a) for a in steps()[step_id]["args"]]


def depends_on(step_id: str) -> set[str]:
    """Every step this one waits for, directly or not (Cloud Build runs a step without
    waitFor after all the steps before it)."""
    ordered = [s["id"] for s in config()["steps"]]
    direct = steps()[step_id].get("waitFor")
    if direct is None:
        direct = ordered[: ordered.index(step_id)]
    found = set()
    for other in direct:
        if other != "-":
            found |= {other} | depends_on(other)
    return found


def substituted(text: str) -> str:
    """What Cloud Build runs: the defaults in, `$$` as `$`."""
    for name, value in config()["substitutions"].items():
        text = text.replace("${" + name + "}", value)
    return (
        text.replace("$PROJECT_ID", "demo-proj").replace("$COMMIT_SHA", "abc123").replace("$$", "$")
    )


def test_the_steps_run_in_the_rollout_order():
    assert [s["id"] for s in config()["steps"]] == ORDER
    for later, stage in enumerate(STAGES[1:], start=1):
        for step in stage:
            needed = {s for earlier in STAGES[:later] for s in earlier}
            assert needed <= depends_on(step), (
                f"{step} may start before {needed - depends_on(step)}"
            )


def test_both_images_are_built_for_amd64_tagged_with_the_commit_and_pushed_to_artifact_registry():
    for image, dockerfile in (("api", "api/Dockerfile"), ("runner", "job-runner/Dockerfile")):
        build = args(f"build-{image}")
        tag = f"--tag=${{_REGION}}-docker.pkg.dev/$PROJECT_ID/${{_REPOSITORY}}/{image}:$COMMIT_SHA"
        assert build[0] == "build" and "--platform=linux/amd64" in build
        assert f"--file={dockerfile}" in build and tag in build
        assert args(f"push-{image}") == ["push", tag.removeprefix("--tag=")]
    assert "gcr.io/$PROJECT_ID" not in CONFIG.read_text()


def test_the_job_gets_the_new_image_and_nothing_is_created():
    deploy = args("deploy-job")
    assert deploy[:4] == ["run", "jobs", "update", "${_JOB}"]
    assert (
        "--image=${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}/runner:$COMMIT_SHA" in deploy
    )


def test_the_service_is_deployed_without_traffic_under_a_tag_then_switched():
    deploy = args("deploy-service")
    assert deploy[:3] == ["run", "deploy", "${_SERVICE}"]
    assert "--no-traffic" in deploy and "--tag=${_CANDIDATE_TAG}" in deploy
    assert "--service-account=${_API_SA_ID}@$PROJECT_ID.iam.gserviceaccount.com" in deploy
    move = args("move-traffic")
    assert (
        move[:4] == ["run", "services", "update-traffic", "${_SERVICE}"] and "--to-latest" in move
    )


def test_every_substitution_is_defined_documented_and_used():
    text = CONFIG.read_text()
    header = text.split("\nsubstitutions:")[0]
    body = text.split("\nsubstitutions:")[1]
    defined = set(config()["substitutions"])
    used = set(re.findall(r"\$\{(_[A-Z_]+)\}", body)) | set(re.findall(r"\$(_[A-Z_]+)", body))
    assert used == defined
    for name in defined | {"$PROJECT_ID", "$COMMIT_SHA"}:
        assert re.search(rf"^#\s+{re.escape(name)}\s", header, re.M), f"{name} is not documented"


def test_the_defaults_match_the_deploy_script():
    script = SCRIPT.read_text()
    defaults = config()["substitutions"]
    for substitution, setting in (
        ("_REGION", "REGION"),
        ("_REPOSITORY", "REPOSITORY"),
        ("_JOB", "JOB_NAME"),
        ("_SERVICE", "SERVICE_NAME"),
        ("_API_SA_ID", "API_SA_ID"),
    ):
        pattern = rf'^{setting}=(?:\$\{{{setting}:-(.*)\}}|"(.*)")$'
        match = re.search(pattern, script, re.M)
        assert match and defaults[substitution] in match.groups(), substitution


def test_builds_log_to_cloud_logging_as_a_user_managed_account_requires():
    assert config()["options"]["logging"] == "CLOUD_LOGGING_ONLY"


def test_the_shell_steps_are_shellcheck_clean(tmp_path):
    for step_id in ("tests", "smoke-test"):
        script = tmp_path / f"{step_id}.sh"
        script.write_text("#!/usr/bin/env bash\n" + substituted(args(step_id)[1]))
        done = subprocess.run(
            [venv_tool("shellcheck"), "--shell=bash", str(script)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout


def test_every_deploy_checks_the_sandbox_in_the_new_job_before_traffic_moves():
    assert args("self-check") == [
        "run",
        "jobs",
        "execute",
        "${_JOB}",
        "--region=${_REGION}",
        "--args=--self-check",
        "--wait",
        "--quiet",
    ]
    assert "self-check" in depends_on("deploy-service")


def test_the_test_step_runs_only_suites_its_image_can_run():
    """python:3.11-slim-bookworm has no gcloud, node, bwrap or /usr/bin/python3, and
    runs as a user without root: the step must not select the tests that need them."""
    script = args("tests")[1]
    selected = must_match(r"pytest -q (.*)", script).group(1).split()
    assert selected and all(p.startswith("tests/deploy/test_") for p in selected)
    needs_more = {"test_deploy_script.py", "test_terraform_schema.py", "test_readme_deploy.py"}
    assert not needs_more & {p.rsplit("/", 1)[1] for p in selected}
