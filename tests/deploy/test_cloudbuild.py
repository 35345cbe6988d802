"""cloudbuild.yaml: its steps and their order, its substitutions, and its shell
steps, run against the fake cloud."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.conftest import must_match
from tests.deploy.harness import ROOT, SCRIPT, venv_tool

CONFIG = ROOT / "cloudbuild.yaml"
ORDER = ["tests", "build-api", "build-runner", "push-api", "push-runner", "rollout"]
STAGES = [["tests"], ["build-api", "build-runner"], ["push-api", "push-runner"], ["rollout"]]


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
    for name, value in (
        ("$PROJECT_ID", "demo-proj"),
        ("$PROJECT_NUMBER", "123456789012"),
        ("$COMMIT_SHA", "abc123"),
        ("$BUILD_ID", "build-7"),
        ("$$", "$"),
    ):
        text = text.replace(name, value)
    return text


def test_the_steps_run_in_the_rollout_order():
    assert [s["id"] for s in config()["steps"]] == ORDER
    for later, stage in enumerate(STAGES[1:], start=1):
        for step in stage:
            needed = {s for earlier in STAGES[:later] for s in earlier}
            assert needed <= depends_on(step), (
                f"{step} may start before {needed - depends_on(step)}"
            )


def test_both_images_are_built_for_amd64_tagged_with_the_build_and_pushed_to_artifact_registry():
    """Tagged with $BUILD_ID, which every build has: $COMMIT_SHA is empty for a manual
    `gcloud builds submit`, and an image named `api:` cannot be built. The commit is the
    image's revision label when there is one."""
    for image, dockerfile in (("api", "api/Dockerfile"), ("runner", "job-runner/Dockerfile")):
        build = args(f"build-{image}")
        tag = f"--tag=${{_REGION}}-docker.pkg.dev/$PROJECT_ID/${{_REPOSITORY}}/{image}:$BUILD_ID"
        assert build[0] == "build" and "--platform=linux/amd64" in build
        assert f"--file={dockerfile}" in build and tag in build
        assert "--label=org.opencontainers.image.revision=$COMMIT_SHA" in build
        assert args(f"push-{image}") == ["push", tag.removeprefix("--tag=")]
    assert "$COMMIT_SHA" not in str(config()["images"]) + str(args("rollout"))
    assert "gcr.io/$PROJECT_ID" not in CONFIG.read_text()


def test_the_rollout_is_the_scripts_own_candidate_first_rollout_of_the_pushed_images():
    rollout = steps()["rollout"]
    assert rollout["entrypoint"] == "bash"
    assert args("rollout")[:2] == ["deploy-gcp.sh", "--rollout-only"]
    assert "--tag=$BUILD_ID" in args("rollout")
    assert {"push-api", "push-runner"} <= depends_on("rollout")


def test_every_substitution_is_defined_documented_and_used():
    text = CONFIG.read_text()
    header = text.split("\nsubstitutions:")[0]
    body = text.split("\nsubstitutions:")[1]
    defined = set(config()["substitutions"])
    used = set(re.findall(r"\$\{(_[A-Z_]+)\}", body)) | set(re.findall(r"\$(_[A-Z_]+)", body))
    assert used == defined
    for name in defined | {"$PROJECT_ID", "$PROJECT_NUMBER", "$BUILD_ID", "$COMMIT_SHA"}:
        assert re.search(rf"^#\s+{re.escape(name)}\s", header, re.M), f"{name} is not documented"


def test_the_defaults_match_the_deploy_script():
    script = SCRIPT.read_text()
    defaults = config()["substitutions"]
    for substitution, setting in (
        ("_REGION", "REGION"),
        ("_REPOSITORY", "REPOSITORY"),
        ("_JOB", "JOB_NAME"),
        ("_SERVICE", "SERVICE_NAME"),
    ):
        pattern = rf'^{setting}=(?:\$\{{{setting}:-(.*)\}}|"(.*)")$'
        match = re.search(pattern, script, re.M)
        assert match and defaults[substitution] in match.groups(), substitution


def test_builds_log_to_cloud_logging_as_a_user_managed_account_requires():
    assert config()["options"]["logging"] == "CLOUD_LOGGING_ONLY"


def test_the_shell_steps_are_shellcheck_clean(tmp_path):
    for step_id in ("tests",):
        script = tmp_path / f"{step_id}.sh"
        script.write_text("#!/usr/bin/env bash\n" + substituted(args(step_id)[1]))
        done = subprocess.run(
            [venv_tool("shellcheck"), "--shell=bash", str(script)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout


def test_the_test_step_runs_only_suites_its_image_can_run():
    """python:3.11-slim-bookworm has no gcloud, node, bwrap or /usr/bin/python3, and
    runs as a user without root: the step must not select the tests that need them."""
    script = args("tests")[1]
    selected = must_match(r"pytest -q (.*)", script).group(1).split()
    assert selected and all(p.startswith("tests/deploy/test_") for p in selected)
    needs_more = {"test_deploy_script.py", "test_terraform_schema.py", "test_readme_deploy.py"}
    assert not needs_more & {p.rsplit("/", 1)[1] for p in selected}
