"""deploy-gcp.sh, run with the real gcloud and curl against the recorder of the Google
Cloud REST APIs (recorder.py). Assertions are on the recorded resources and policies:
what a project holds after the script, not which command lines it typed."""

from __future__ import annotations

import subprocess

import pytest

from api import config
from api.config import (
    ENVIRONMENT_ARCHIVE_DAYS,
    MAX_OUTPUT_FILE_BYTES,
    MAX_RUNNER_CHUNK_BYTES,
    TASK_RETENTION_DAYS,
)
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
    is_change,
    venv_tool,
)
from tests.deploy.recorder import PROJECT_NUMBER
from tests.deploy.scenarios import CONDITIONAL

# gcloud starts in about a second (several on a busy machine): the session's two
# deployments take a few minutes.
pytestmark = pytest.mark.timeout(1800)

JOB = f"projects/{PROJECT}/locations/{REGION}/jobs/agent-runner"
CANDIDATE_JOB = f"{JOB}-candidate"
IMAGES = f"{REGION}-docker.pkg.dev/{PROJECT}/agent-platform"
FILES_BUCKET = f"{PROJECT}-agent-files"
BUILD_BUCKET = f"{PROJECT}-agent-builds"
# User secrets' key (ADR 0016).
KMS_KEY = f"projects/{PROJECT}/locations/{REGION}/keyRings/agent-platform/cryptoKeys/user-secrets"
JOB_MEMORY_MB = config.MAX_MEMORY_MB + config.TASK_DISK_MB + config.RUNNER_RESERVE_MB
SMALL_JOB_MEMORY_MB = (
    config.SMALL_JOB_MAX_TASK_MEMORY_MB + config.TASK_DISK_MB + config.RUNNER_RESERVE_MB
)
SMALL_JOB = f"projects/{PROJECT}/locations/{REGION}/jobs/agent-runner-small"
# Every job: (name, CPU, MiB). The live ones and their candidates, large and small.
JOBS = [
    ("agent-runner", "2", JOB_MEMORY_MB),
    ("agent-runner-candidate", "2", JOB_MEMORY_MB),
    ("agent-runner-small", "1", SMALL_JOB_MEMORY_MB),
    ("agent-runner-small-candidate", "1", SMALL_JOB_MEMORY_MB),
]
LIVE_JOBS = ("/jobs/agent-runner", "/jobs/agent-runner-small")
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
    *((f"run/jobs/{job}", f"projects/{PROJECT}/roles/agentTaskLauncher", api) for job, *_ in JOBS),
    (f"b/{FILES_BUCKET}", "roles/storage.objectAdmin", api),
    (KMS_KEY, "roles/cloudkms.cryptoKeyEncrypterDecrypter", api),
    ("run/services/agent-api", "roles/run.invoker", scheduler),
    (f"projects/{PROJECT}", "roles/logging.logWriter", builder),
    (f"projects/{PROJECT}", "roles/datastore.user", builder),
    (
        f"projects/{PROJECT}/locations/{REGION}/repositories/agent-platform",
        "roles/artifactregistry.writer",
        builder,
    ),
    (f"b/{BUILD_BUCKET}", "roles/storage.objectViewer", builder),
    (f"projects/{PROJECT}/serviceAccounts/{API_SA}", "roles/iam.serviceAccountUser", builder),
    (f"projects/{PROJECT}/serviceAccounts/{RUNNER_SA}", "roles/iam.serviceAccountUser", builder),
    *((f"run/jobs/{job}", "roles/run.developer", builder) for job, *_ in JOBS),
    ("run/services/agent-api", "roles/run.developer", builder),
}
KEYS = f"/v1/projects/{PROJECT}/databases/(default)/documents/apiKeys"
# What every later run changes: it rolls out the current code, and nothing else (the
# smoke task's key is written and deleted; no IAM policy changes).
ROLLOUT = {
    ("POST", f"/upload/storage/v1/b/{BUILD_BUCKET}/o"),
    ("POST", f"/v1/projects/{PROJECT}/locations/{REGION}/builds"),
    *(("PUT", f"/apis/run.googleapis.com/v1/namespaces/{PROJECT}/jobs/{job}") for job, *_ in JOBS),
    *(
        ("POST", f"/apis/run.googleapis.com/v1/namespaces/{PROJECT}/jobs/{job}:run")
        for job in ("agent-runner-candidate", "agent-runner-small-candidate")
    ),
    ("PUT", f"/apis/serving.knative.dev/v1/namespaces/{PROJECT}/services/agent-api"),
    ("POST", KEYS),
    ("POST", "/api/tasks"),
    ("DELETE", f"{KEYS}/"),
}


def container(spec: dict) -> dict:
    [only] = spec["containers"]
    return only


def env_of(spec: dict) -> dict:
    return {e["name"]: e.get("value") or e.get("valueFrom") for e in container(spec).get("env", [])}


def stable(resources: dict) -> dict:
    """The resources a rollout must not touch (not builds, sources, revisions, executions)."""
    moving = ("run/", "api/", f"projects/{PROJECT}/locations/{REGION}/builds/")
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
        KMS_KEY,
        "run/jobs/agent-runner",
        "run/services/agent-api",
        f"projects/{PROJECT}/locations/{REGION}/jobs/agent-reconcile",
        *(
            f"projects/{PROJECT}/serviceAccounts/{sa}"
            for sa in (API_SA, RUNNER_SA, SCHEDULER_SA, BUILDER_SA)
        ),
        *(
            f"projects/{PROJECT}/databases/(default)/collectionGroups/{g}/fields/expireAt"
            for g in (
                "idempotency",
                "uploads",
                "admissionDaily",
                "tasks",
                "events",
                "runLaunchWindows",
            )
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


@pytest.mark.parametrize(("name", "cpu", "memory"), JOBS)
def test_the_job_runs_as_the_runner_with_no_env_no_secrets_and_room_for_the_largest_task(
    deployed, name, cpu, memory
):
    project, _, _ = deployed
    job = project.cloud.resources[f"run/jobs/{name}"]
    execution = job["spec"]["template"]["spec"]
    task = execution["template"]["spec"]
    assert execution["taskCount"] == 1
    assert task["serviceAccountName"] == RUNNER_SA
    timeout = config.MAX_TIMEOUT_SECONDS + config.RUNNER_OVERHEAD_SECONDS
    assert task["maxRetries"] == 1 and task["timeoutSeconds"] == str(timeout)
    box = container(task)
    assert box["image"] == f"{IMAGES}/runner:t1"
    assert "env" not in box and "envFrom" not in box and "volumeMounts" not in box
    assert not task.get("volumes")
    limits = box["resources"]["limits"]
    assert limits == {"cpu": cpu, "memory": f"{memory}Mi"}


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
        "CLOUD_RUN_JOB_SMALL": SMALL_JOB,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "AUTH_MODE": "firebase,apikey",
        "RECONCILE_INVOKER": SCHEDULER_SA,
        "GUNICORN_THREADS": "16",
        "PUBLIC_URL": URL,
        "FILES_BUCKET": FILES_BUCKET,
        "SECRETS_KMS_KEY": KMS_KEY,
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
                "condition": {
                    "daysSinceCustomTime": ENVIRONMENT_ARCHIVE_DAYS,
                    "matchesPrefix": ["environments/"],
                },
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


def test_every_run_checks_the_sandbox_in_one_execution_of_the_candidate_job(deployed):
    project, first, second = deployed
    for run in (first, second):
        runs = [r for r in run.requests if r["path"].endswith(":run")]
        # The deploy's own executions are the candidates' self-checks; the smoke tasks'
        # (which the API launches) ran there too (test_every_deploy_runs_a_task_end_to_end...).
        candidates = ["agent-runner-candidate", "agent-runner-small-candidate"]
        assert [r["path"].rsplit("/", 1)[1] for r in runs] == [f"{c}:run" for c in candidates]
        for request, candidate in zip(runs, candidates, strict=True):
            assert request["body"]["overrides"]["containerOverrides"][0]["args"] == ["--self-check"]
            assert f"self-check: the sandbox works in job {candidate}\n" in run.stderr


def test_the_live_job_gets_the_image_only_after_the_self_check_and_the_smoke_task(deployed):
    project, _, second = deployed
    paths = [(r["method"], r["path"]) for r in second.requests if is_change(r)]
    live = min(
        paths.index(("PUT", f"/apis/run.googleapis.com/v1/namespaces/{PROJECT}{job}"))
        for job in LIVE_JOBS
    )
    smoke = max(i for i, p in enumerate(paths) if p == ("POST", "/api/tasks"))
    check = max(i for i, p in enumerate(paths) if p[1].endswith("-candidate:run"))
    assert check < smoke < live
    # Then the traffic moves, to a revision that launches on the live job.
    services = [i for i, p in enumerate(paths) if p[1].endswith("/services/agent-api")]
    assert services[0] < smoke < live < services[1]


def test_every_deploy_runs_a_task_end_to_end_on_the_candidate_with_a_key_it_then_deletes(
    deployed,
):
    project, first, second = deployed
    for run in (first, second):
        # A small task and one of the largest memory: each job class's candidate runs one.
        small, large = [r for r in run.requests if r["path"] == "/api/tasks"]
        assert small["body"]["code"] == large["body"]["code"] == "print(6 * 7)"
        assert (small["body"]["memoryMb"], large["body"]["memoryMb"]) == (512, config.MAX_MEMORY_MB)
        assert "(512 MB) printed 42 in job agent-runner-small-candidate" in run.stderr
        assert f"({config.MAX_MEMORY_MB} MB) printed 42 in job agent-runner-candidate" in run.stderr
        [written] = [r for r in run.requests if r["method"] == "POST" and r["path"] == KEYS]
        [deleted] = [r for r in run.requests if r["method"] == "DELETE"]
        assert deleted["path"] == f"{KEYS}/{written['query'].split('documentId=')[1]}"
        assert written["time"] < small["time"] < large["time"] < deleted["time"]
        assert written["body"]["fields"]["owner"] == {"stringValue": "deploy-smoke"}
        # The key went only in a header, to the service; the access token only to Google.
        key = small["headers"]["Authorization"].removeprefix("Bearer ")
        assert key.startswith("ak_") and key not in run.stdout + run.stderr
    # The second run's tasks went to the candidate revision, not the serving one.
    hosts = {r["host"] for r in second.requests if r["path"] == "/api/tasks"}
    assert hosts == {f"candidate---{URL.removeprefix('https://')}"}
    assert not [k for k in project.cloud.resources if "/documents/apiKeys/" in k]


def test_the_service_is_public_through_the_disabled_invoker_check_never_all_users(deployed):
    project, _, _ = deployed
    annotations = project.service()["metadata"]["annotations"]
    assert annotations["run.googleapis.com/invoker-iam-disabled"].lower() == "true"
    assert not [g for g in project.cloud.grants() if g[2] in ("allUsers", "allAuthenticatedUsers")]


def test_grants_to_a_new_account_are_retried_until_iam_knows_it(deployed):
    project, first, _ = deployed
    # The recorder refuses each new account's first binding, as IAM does for a while;
    # every grant still landed (test_each_policy_holds_exactly_the_designed_grants...).
    assert sorted(project.cloud.refused_bindings) == sorted([API_SA, BUILDER_SA, SCHEDULER_SA])
    assert "IAM does not know a new account yet; again in 2s" in first.stderr


def test_a_second_run_creates_nothing_and_only_rolls_out_the_code(deployed):
    project, _, second = deployed
    changes = {(m, p.rsplit("/", 1)[0] + "/" if m == "DELETE" else p) for m, p in second.changes()}
    assert changes == ROLLOUT
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


def test_a_failing_self_check_leaves_the_live_job_and_serving_revision_untouched(scenarios):
    project, runs = scenarios["failing_self_check"]
    run = runs["run"]
    assert run.returncode != 0
    assert "the runner's self-check failed in job agent-runner-candidate" in run.stderr
    # Its verdict, read back from the execution's log (execute --wait prints none).
    assert "the fix: allow unprivileged user namespaces" in run.stderr
    assert not [c for c in run.changes() if "/services/agent-api" in c[1]]
    assert not [c for c in run.changes() if c[1].endswith(LIVE_JOBS)]
    assert (
        container(project.job()["spec"]["template"]["spec"]["template"]["spec"])["image"]
        == f"{IMAGES}/runner:t1"
    )


def test_a_failing_smoke_task_leaves_the_live_job_and_serving_revision_untouched(scenarios):
    project, runs = scenarios["failing_smoke_task"]
    run = runs["run"]
    assert run.returncode != 0
    assert "smoke test: task" in run.stderr and "ended completed with stdout '41'" in run.stderr
    assert not [c for c in run.changes() if c[1].endswith(LIVE_JOBS)]
    image = container(project.job()["spec"]["template"]["spec"]["template"]["spec"])["image"]
    assert image == f"{IMAGES}/runner:t1"
    candidate = project.cloud.resources["run/jobs/agent-runner-candidate"]
    assert container(candidate["spec"]["template"]["spec"]["template"]["spec"])["image"] == (
        f"{IMAGES}/runner:t2"
    )
    status = project.service()["status"]
    served = [(t["revisionName"], t["percent"]) for t in status["traffic"] if t.get("percent")]
    assert served == [(t["revisionName"], t["percent"]) for t in runs["serving"]]
    assert not [k for k in project.cloud.resources if "/documents/apiKeys/" in k]


def test_a_rerun_keeps_the_settings_it_was_not_given(scenarios):
    project, runs = scenarios["settings"]
    for run in runs.values():
        assert_ok(run)
    env = env_of(project.service()["spec"]["template"]["spec"])
    # Added by hand, then a plain rerun: still there.
    assert env["MAX_TASKS_IN_FLIGHT"] == "50"
    assert env["FIREBASE_WEB_CONFIG"] == '{"apiKey": "AIza-test", "projectId": "demo-proj"}'
    # Given once by flag (a firebase-only API: its candidate took the smoke key too).
    assert env["AUTH_MODE"] == "firebase"
    assert env["ALLOWED_MODELS"] == "claude-haiku-4-5"
    assert (
        project.service()["spec"]["template"]["metadata"]["annotations"][
            "autoscaling.knative.dev/maxScale"
        ]
        == "3"
    )
    assert env["CLOUD_RUN_JOB"] == JOB and env["PUBLIC_URL"] == URL


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


def test_user_secrets_get_one_symmetric_key_rotated_every_90_days(deployed):
    project, _, _ = deployed
    key = project.after_first.resources[KMS_KEY]
    assert key["purpose"] == "ENCRYPT_DECRYPT"
    assert key["rotationPeriod"] == "7776000s" and key["nextRotationTime"]
    assert "cloudkms.googleapis.com" in project.cloud.enabled
    # The API's account holds the one role on the one key, and nothing else has any.
    assert [g for g in project.cloud.grants() if g[0] == KMS_KEY] == [
        (KMS_KEY, "roles/cloudkms.cryptoKeyEncrypterDecrypter", api)
    ]


def test_cloud_build_may_run_in_another_region_than_the_platform(project):
    dry = project.run("--dry-run", "--anthropic-key-file", "-", "--build-region", "europe-west1")
    assert_ok(dry)
    printed = "\n".join(dry.gcloud_commands())
    assert "builds submit" in printed and "--region=europe-west1" in printed
    assert "run deploy agent-api" in printed and "--region=us-central1" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "CLOUD_RUN_JOB=x"], "the script sets CLOUD_RUN_JOB itself"),
        (["--env", "lower=x"], "--env takes NAME=VALUE"),
        (["--firebase-web-config", "not json"], "as a JSON object"),
    ],
)
def test_settings_the_script_owns_or_cannot_read_are_refused(project, args, message):
    run = project.run(*args)
    assert run.returncode != 0 and message in run.stderr
    assert run.requests == []


def test_cloud_builds_rollout_checks_the_candidate_then_moves_the_live_job_and_traffic(scenarios):
    project, runs = scenarios["cloud_build_rollout"]
    run = runs["run"]
    assert_ok(run)
    # It changed no policy and created nothing: only the rollout, with the build's images.
    changes = {(m, p.rsplit("/", 1)[0] + "/" if m == "DELETE" else p) for m, p in run.changes()}
    assert changes == ROLLOUT - {
        ("POST", f"/upload/storage/v1/b/{BUILD_BUCKET}/o"),
        ("POST", f"/v1/projects/{PROJECT}/locations/{REGION}/builds"),
    }
    assert "printed 42 in job agent-runner-candidate" in run.stderr
    for job, *_ in JOBS:
        spec = project.cloud.resources[f"run/jobs/{job}"]["spec"]["template"]["spec"]
        assert container(spec["template"]["spec"])["image"] == f"{IMAGES}/runner:build-7"
    service = project.service()
    assert container(service["spec"]["template"]["spec"])["image"] == f"{IMAGES}/api:build-7"
    assert env_of(service["spec"]["template"]["spec"])["CLOUD_RUN_JOB"] == JOB
    assert env_of(service["spec"]["template"]["spec"])["CLOUD_RUN_JOB_SMALL"] == SMALL_JOB
    assert [t.get("tag") for t in service["status"]["traffic"]] == [None]
