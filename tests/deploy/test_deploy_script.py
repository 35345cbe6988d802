"""deploy-gcp.sh, run with the real gcloud and curl against the recorder of the Google
Cloud REST APIs (recorder.py). Assertions are on the recorded resources and policies:
what a project holds after the script, not which command lines it typed."""

from __future__ import annotations

import subprocess

import pytest

from api import config
from api.config import MAX_OUTPUT_FILE_BYTES, MAX_RUNNER_CHUNK_BYTES, TASK_RETENTION_DAYS
from tests.deploy.harness import (
    ANTHROPIC_KEY,
    API_SA,
    BUILDER_SA,
    PROJECT,
    REGION,
    RUNNER_SA,
    SCHEDULER_SA,
    SCRIPT,
    URL,
    assert_ok,
    venv_tool,
)
from tests.deploy.recorder import PROJECT_NUMBER
from tests.deploy.scenarios import CONDITIONAL

# gcloud starts in about a second: the session's two deployments take a minute or two.
pytestmark = pytest.mark.timeout(900)

JOB = f"projects/{PROJECT}/locations/{REGION}/jobs/agent-runner"
IMAGES = f"{REGION}-docker.pkg.dev/{PROJECT}/agent-platform"
FILES_BUCKET = f"{PROJECT}-agent-files"
BUILD_BUCKET = f"{PROJECT}-agent-builds"
JOB_MEMORY_MB = config.MAX_MEMORY_MB + config.TASK_DISK_MB + config.RUNNER_RESERVE_MB
api, builder, scheduler = (f"serviceAccount:{sa}" for sa in (API_SA, BUILDER_SA, SCHEDULER_SA))
# DESIGN section 9, plus the files bucket (interfaces item 2): every grant, exactly.
GRANTS = {
    (f"projects/{PROJECT}", "roles/datastore.user", api),
    (
        f"projects/{PROJECT_NUMBER}/secrets/anthropic-api-key",
        "roles/secretmanager.secretAccessor",
        api,
    ),
    (
        f"projects/{PROJECT_NUMBER}/secrets/task-token-key",
        "roles/secretmanager.secretAccessor",
        api,
    ),
    (f"projects/{PROJECT}/serviceAccounts/{RUNNER_SA}", "roles/iam.serviceAccountUser", api),
    ("run/jobs/agent-runner", f"projects/{PROJECT}/roles/agentTaskLauncher", api),
    (f"b/{FILES_BUCKET}", "roles/storage.objectAdmin", api),
    ("run/services/agent-api", "roles/run.invoker", scheduler),
    ("run/services/agent-api", "roles/run.invoker", "allUsers"),
    (f"projects/{PROJECT}", "roles/logging.logWriter", builder),
    (
        f"projects/{PROJECT}/locations/{REGION}/repositories/agent-platform",
        "roles/artifactregistry.writer",
        builder,
    ),
    (f"b/{BUILD_BUCKET}", "roles/storage.objectViewer", builder),
    (f"projects/{PROJECT}/serviceAccounts/{API_SA}", "roles/iam.serviceAccountUser", builder),
    (f"projects/{PROJECT}/serviceAccounts/{RUNNER_SA}", "roles/iam.serviceAccountUser", builder),
    ("run/jobs/agent-runner", "roles/run.developer", builder),
    ("run/services/agent-api", "roles/run.developer", builder),
}
# What every later run changes: it rolls out the current code, and nothing else.
ROLLOUT = {
    ("POST", f"/upload/storage/v1/b/{BUILD_BUCKET}/o"),
    ("POST", f"/v1/projects/{PROJECT}/locations/{REGION}/builds"),
    ("PUT", f"/apis/run.googleapis.com/v1/namespaces/{PROJECT}/jobs/agent-runner"),
    ("POST", f"/apis/run.googleapis.com/v1/namespaces/{PROJECT}/jobs/agent-runner:run"),
    ("PUT", f"/apis/serving.knative.dev/v1/namespaces/{PROJECT}/services/agent-api"),
    # gcloud run deploy --allow-unauthenticated sets allUsers' binding each time.
    ("POST", f"/v1/projects/{PROJECT}/locations/{REGION}/services/agent-api:setIamPolicy"),
}


def container(spec: dict) -> dict:
    [only] = spec["containers"]
    return only


def env_of(spec: dict) -> dict:
    return {e["name"]: e.get("value") or e.get("valueFrom") for e in container(spec).get("env", [])}


def stable(resources: dict) -> dict:
    """The resources a rollout must not touch (not builds, sources, revisions, executions)."""
    moving = ("run/", f"projects/{PROJECT}/locations/{REGION}/builds/")
    return {k: v for k, v in resources.items() if not k.startswith(moving) and "/o/" not in k}


def test_a_fresh_project_gets_every_resource(deployed):
    project, _, _ = deployed
    names = set(project.after_first.resources)
    for name in (
        f"projects/{PROJECT}/locations/{REGION}/repositories/agent-platform",
        f"b/{BUILD_BUCKET}",
        f"b/{FILES_BUCKET}",
        f"projects/{PROJECT}/databases/(default)",
        f"projects/{PROJECT}/roles/agentTaskLauncher",
        f"projects/{PROJECT_NUMBER}/secrets/anthropic-api-key",
        f"projects/{PROJECT_NUMBER}/secrets/task-token-key",
        "run/jobs/agent-runner",
        "run/services/agent-api",
        f"projects/{PROJECT}/locations/{REGION}/jobs/agent-reconcile",
        *(
            f"projects/{PROJECT}/serviceAccounts/{sa}"
            for sa in (API_SA, RUNNER_SA, SCHEDULER_SA, BUILDER_SA)
        ),
        *(
            f"projects/{PROJECT}/databases/(default)/collectionGroups/{g}/fields/expireAt"
            for g in ("idempotency", "uploads", "admissionDaily", "tasks", "events")
        ),
    ):
        assert name in names, name
    assert (
        "run.googleapis.com" in project.cloud.enabled
        and "storage.googleapis.com" in project.cloud.enabled
    )


def test_each_policy_holds_exactly_the_designed_grants_and_nothing_for_the_runner(deployed):
    project, _, _ = deployed
    assert project.cloud.grants() == GRANTS
    runner = f"serviceAccount:{RUNNER_SA}"
    assert not [g for g in project.cloud.grants() if g[2] == runner]


def test_the_launcher_role_holds_only_what_the_executor_calls(deployed):
    project, _, _ = deployed
    role = project.cloud.resources[f"projects/{PROJECT}/roles/agentTaskLauncher"]
    assert sorted(role["includedPermissions"]) == [
        "run.executions.cancel",
        "run.executions.get",
        "run.jobs.run",
        "run.jobs.runWithOverrides",
    ]


def test_the_job_runs_as_the_runner_with_no_env_no_secrets_and_room_for_the_largest_task(deployed):
    project, _, _ = deployed
    job = project.job()
    execution = job["spec"]["template"]["spec"]
    task = execution["template"]["spec"]
    assert execution["taskCount"] == 1
    assert task["serviceAccountName"] == RUNNER_SA
    assert task["maxRetries"] == 1 and task["timeoutSeconds"] == "3630"
    box = container(task)
    assert box["image"] == f"{IMAGES}/runner:t1"
    assert "env" not in box and "envFrom" not in box and "volumeMounts" not in box
    assert not task.get("volumes")
    limits = box["resources"]["limits"]
    assert limits == {"cpu": "2", "memory": f"{JOB_MEMORY_MB}Mi"}


def test_the_service_gets_the_env_contract_its_secrets_by_reference_and_public_url_at_once(
    deployed,
):
    project, first, _ = deployed
    spec = project.service()["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == API_SA
    assert spec["containerConcurrency"] == 16
    assert container(spec)["image"] == f"{IMAGES}/api:t1"
    env = env_of(spec)
    assert {k: v for k, v in env.items() if isinstance(v, str)} == {
        "EXECUTOR": "cloudrun",
        "CLOUD_RUN_JOB": JOB,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "AUTH_MODE": "firebase,apikey",
        "RECONCILE_INVOKER": SCHEDULER_SA,
        "GUNICORN_THREADS": "16",
        "PUBLIC_URL": URL,
        "FILES_BUCKET": FILES_BUCKET,
    }
    assert env["TASK_TOKEN_KEY"] == {"secretKeyRef": {"key": "latest", "name": "task-token-key"}}
    assert env["ANTHROPIC_API_KEY"] == {
        "secretKeyRef": {"key": "latest", "name": "anthropic-api-key"}
    }
    # The very first revision already had PUBLIC_URL: no task ever ran without it.
    first_revision = project.cloud.resources["run/revisions/agent-api-00001-bbb"]
    assert env_of(first_revision["spec"])["PUBLIC_URL"] == URL


def test_traffic_goes_to_the_latest_revision_and_the_smoke_test_names_it(deployed):
    project, first, second = deployed
    status = project.service()["status"]
    [target] = status["traffic"]
    assert target["latestRevision"] and target["percent"] == 100
    assert target["revisionName"] == status["latestReadyRevisionName"]
    assert f"answered by {status['latestReadyRevisionName']}" in second.stderr
    assert f"Service URL: {URL}" in first.stdout


def test_the_scheduler_calls_reconcile_every_minute_with_the_schedulers_oidc_token(deployed):
    project, _, _ = deployed
    job = project.scheduler_job()
    assert job["schedule"] == "* * * * *"
    target = job["httpTarget"]
    assert target["uri"] == f"{URL}/internal/v1/reconcile" and target["httpMethod"] == "POST"
    assert target["oidcToken"] == {"serviceAccountEmail": SCHEDULER_SA, "audience": target["uri"]}


# A file is joined from at most this many pieces (api/services/files.py).
MAX_PIECES = MAX_OUTPUT_FILE_BYTES // MAX_RUNNER_CHUNK_BYTES


def test_the_files_bucket_is_private_with_the_lifecycle_of_its_layout(deployed):
    project, _, _ = deployed
    bucket = project.bucket(FILES_BUCKET)
    assert bucket["iamConfiguration"] == {
        "publicAccessPrevention": "enforced",
        "uniformBucketLevelAccess": {"enabled": True},
    }
    assert bucket["location"] == REGION
    assert sorted(bucket["lifecycle"]["rule"], key=str) == sorted(
        [
            {"action": {"type": "Delete"}, "condition": {"age": 1, "matchesPrefix": ["uploads/"]}},
            {
                "action": {"type": "Delete"},
                "condition": {"daysSinceCustomTime": 1, "matchesPrefix": ["conversations/"]},
            },
            {
                "action": {"type": "Delete"},
                "condition": {"age": TASK_RETENTION_DAYS, "matchesPrefix": ["tasks/"]},
            },
            {
                "action": {"type": "Delete"},
                "condition": {"age": 1, "matchesSuffix": [f".part{i}" for i in range(MAX_PIECES)]},
            },
        ],
        key=str,
    )
    builds = project.bucket(BUILD_BUCKET)
    assert builds["lifecycle"]["rule"] == [{"action": {"type": "Delete"}, "condition": {"age": 7}}]


def test_images_are_built_by_cloud_build_for_amd64_as_the_builder(deployed):
    project, first, _ = deployed
    [build] = [
        r["body"] for r in first.requests if r["path"].endswith("/builds") and r["method"] == "POST"
    ]
    assert build["serviceAccount"] == f"projects/{PROJECT}/serviceAccounts/{BUILDER_SA}"
    assert build["options"]["logging"] == "CLOUD_LOGGING_ONLY"
    assert [s["args"][1] for s in build["steps"]] == ["--platform=linux/amd64"] * 2
    assert build["images"] == [f"{IMAGES}/api:t1", f"{IMAGES}/runner:t1"]
    assert build["source"]["storageSource"]["bucket"] == BUILD_BUCKET
    # GA `builds submit` cannot show a CLOUD_LOGGING_ONLY build's log (it says so);
    # beta tails it from Cloud Logging.
    assert "only displays logs from Cloud Storage" not in first.stderr


def test_every_run_checks_the_sandbox_in_one_execution_of_the_new_job(deployed):
    project, first, second = deployed
    for run in (first, second):
        runs = [r["body"] for r in run.requests if r["path"].endswith("/jobs/agent-runner:run")]
        assert [b["overrides"]["containerOverrides"][0]["args"] for b in runs] == [["--self-check"]]
        assert "self-check: the sandbox works in job agent-runner" in run.stderr


def test_a_second_run_creates_nothing_and_only_rolls_out_the_code(deployed):
    project, _, second = deployed
    assert set(second.changes()) == ROLLOUT
    assert stable(project.cloud.resources) == stable(project.after_first.resources)
    assert project.cloud.grants() == project.after_first.grants()


def test_a_project_policy_holding_a_conditional_binding_still_gets_its_grants(scenarios):
    project, runs = scenarios["conditional_binding"]
    assert_ok(runs["run"])
    assert (f"projects/{PROJECT}", "roles/logging.logWriter", builder) in project.cloud.grants()
    assert CONDITIONAL in project.cloud.policies[f"projects/{PROJECT}"]["bindings"]


def test_after_a_failed_candidate_a_redeploy_serves_the_new_revision(scenarios):
    project, runs = scenarios["failed_candidate"]
    assert_ok(runs["candidate"])
    assert not any(t.get("latestRevision") for t in runs["pinned"] if t.get("percent"))
    assert_ok(runs["run"])
    status = project.service()["status"]
    served = [t for t in status["traffic"] if t.get("percent")]
    assert served == [
        {"latestRevision": True, "percent": 100, "revisionName": status["latestReadyRevisionName"]}
    ]
    assert container(project.service()["spec"]["template"]["spec"])["image"] == f"{IMAGES}/api:t1"
    assert f"answered by {status['latestReadyRevisionName']}" in runs["run"].stderr


def test_a_failing_self_check_stops_the_deploy_before_the_service(scenarios):
    _, runs = scenarios["failing_self_check"]
    run = runs["run"]
    assert run.returncode != 0
    assert "the runner's self-check failed in job agent-runner" in run.stderr
    assert not [c for c in run.changes() if "/services/agent-api" in c[1]]


def test_a_new_key_and_a_rotated_token_key_become_new_versions(scenarios):
    project, runs = scenarios["rotation"]
    assert_ok(runs["run"])
    secrets = project.cloud.secret_data
    assert secrets[f"projects/{PROJECT_NUMBER}/secrets/anthropic-api-key"] == [
        ANTHROPIC_KEY,
        "sk-ant-rotated-key-2",
    ]
    token_keys = secrets[f"projects/{PROJECT_NUMBER}/secrets/task-token-key"]
    assert len(token_keys) == 2 and token_keys[0] != token_keys[1] and len(token_keys[1]) >= 40


def test_the_keys_never_appear_on_a_command_line_or_in_the_output(deployed):
    project, first, second = deployed
    # gcloud logs every command line it runs under its config directory.
    logs = "".join(
        p.read_text(errors="replace") for p in (project.tmp / "gcloud-config").rglob("*.log")
    )
    assert "Running [gcloud.secrets.versions.add] with arguments" in logs
    [token_key] = project.cloud.secret_data[f"projects/{PROJECT_NUMBER}/secrets/task-token-key"]
    for secret in (ANTHROPIC_KEY, token_key):
        assert secret not in logs
        assert secret not in first.stdout + first.stderr + second.stdout + second.stderr
    assert project.cloud.secret_data[f"projects/{PROJECT_NUMBER}/secrets/anthropic-api-key"] == [
        ANTHROPIC_KEY
    ]


def test_without_credentials_nothing_is_changed(project):
    run = project.run(
        "--anthropic-key-file", str(project.key_file()), CLOUDSDK_AUTH_ACCESS_TOKEN_FILE=""
    )
    assert run.returncode != 0
    assert "gcloud auth login" in run.stderr
    assert run.changes() == []


def test_an_unknown_project_stops_the_run_before_any_change(project):
    run = project.run("--project", "other-proj", "--anthropic-key-file", str(project.key_file()))
    assert run.returncode != 0
    assert "project other-proj was not found" in run.stderr
    assert run.changes() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--auth-mode", "dev"], "refuses it on Cloud Run"),
        (["--anthropic-key", ANTHROPIC_KEY], "--anthropic-key-file"),
        (["--job-memory", "4Gi"], f"it needs {JOB_MEMORY_MB}Mi"),
    ],
)
def test_bad_settings_are_refused_before_anything_runs(project, args, message):
    run = project.run(*args)
    assert run.returncode != 0 and message in run.stderr
    assert run.requests == []


def test_a_dry_run_prints_every_command_and_runs_none(project):
    dry = project.run("--dry-run", "--anthropic-key-file", str(project.key_file()))
    assert_ok(dry)
    assert dry.requests == []
    printed = "\n".join(dry.gcloud_commands())
    for command in (
        "run jobs execute agent-runner",
        "--args=--self-check",
        "update-traffic",
        f"storage buckets create gs://{FILES_BUCKET}",
        "--condition=None",
    ):
        assert command in printed, command


def test_help_lists_every_setting():
    done = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for flag in (
        "--project",
        "--region",
        "--auth-mode",
        "--anthropic-key-file",
        "--dry-run",
        "--job-memory",
    ):
        assert flag in done.stdout


def test_the_script_is_shellcheck_clean():
    done = subprocess.run(
        [venv_tool("shellcheck"), "--severity=style", "--shell=bash", str(SCRIPT)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout
