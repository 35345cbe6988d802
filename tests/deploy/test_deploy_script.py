"""deploy-gcp.sh, run for real against a recording fake `gcloud` and `curl` on PATH
(tests/deploy/fake_cloud.py): what it creates, in which order, with which rights, and
that a second run creates nothing."""

from __future__ import annotations

import json
import subprocess

from tests.deploy.harness import (
    ANTHROPIC_KEY,
    API_SA,
    BUILDER_SA,
    PROJECT,
    REGION,
    ROOT,
    RUNNER_SA,
    SCHEDULER_SA,
    SCRIPT,
    assert_ok,
    is_mutating,
    venv_tool,
    words,
)

URL = "https://agent-api-x2fake-uc.a.run.app"
RECONCILE_URI = f"{URL}/internal/v1/reconcile"
JOB = f"projects/{PROJECT}/locations/{REGION}/jobs/agent-runner"
IMAGES = f"{REGION}-docker.pkg.dev/{PROJECT}/agent-platform"

# A first deployment's changes, in order: (positional words, the calls' flags to match).
INDEXES = json.loads((ROOT / "firestore.indexes.json").read_text())["indexes"]
FIRST_RUN = [
    (["services", "enable"], {}),
    (["artifacts", "repositories", "create", "agent-platform"], {"repository-format": "docker"}),
    (["storage", "buckets", "create", f"gs://{PROJECT}-agent-builds"], {}),
    (["storage", "buckets", "update", f"gs://{PROJECT}-agent-builds"], {}),
    (["firestore", "databases", "create"], {"type": "firestore-native"}),
    # One per index in firestore.indexes.json.
    *[(["firestore", "indexes", "composite", "create"], {})] * len(INDEXES),
    (["firestore", "fields", "ttls", "update", "expireAt"], {"collection-group": "idempotency"}),
    (["iam", "service-accounts", "create", "agent-api"], {}),
    (["iam", "service-accounts", "create", "agent-runner"], {}),
    (["iam", "service-accounts", "create", "agent-scheduler"], {}),
    (["iam", "service-accounts", "create", "agent-builder"], {}),
    (["iam", "roles", "create", "agentTaskLauncher"], {}),
    (["secrets", "create", "anthropic-api-key"], {}),
    (["secrets", "versions", "add", "anthropic-api-key"], {"data-file": "-"}),
    (["secrets", "create", "task-token-key"], {}),
    (["secrets", "versions", "add", "task-token-key"], {"data-file": "-"}),
    (["projects", "add-iam-policy-binding", PROJECT], {"role": "roles/datastore.user"}),
    (
        ["secrets", "add-iam-policy-binding", "anthropic-api-key"],
        {"member": f"serviceAccount:{API_SA}"},
    ),
    (
        ["secrets", "add-iam-policy-binding", "task-token-key"],
        {"member": f"serviceAccount:{API_SA}"},
    ),
    (
        ["iam", "service-accounts", "add-iam-policy-binding", RUNNER_SA],
        {"member": f"serviceAccount:{API_SA}"},
    ),
    (["projects", "add-iam-policy-binding", PROJECT], {"role": "roles/logging.logWriter"}),
    (["artifacts", "repositories", "add-iam-policy-binding", "agent-platform"], {}),
    (["storage", "buckets", "add-iam-policy-binding", f"gs://{PROJECT}-agent-builds"], {}),
    (["iam", "service-accounts", "add-iam-policy-binding", API_SA], {}),
    (
        ["iam", "service-accounts", "add-iam-policy-binding", RUNNER_SA],
        {"member": f"serviceAccount:{BUILDER_SA}"},
    ),
    (["builds", "submit"], {}),
    (["run", "jobs", "deploy", "agent-runner"], {}),
    (
        ["run", "jobs", "add-iam-policy-binding", "agent-runner"],
        {"member": f"serviceAccount:{API_SA}"},
    ),
    (
        ["run", "jobs", "add-iam-policy-binding", "agent-runner"],
        {"member": f"serviceAccount:{BUILDER_SA}"},
    ),
    (["run", "deploy", "agent-api"], {}),
    (["run", "services", "update", "agent-api"], {"update-env-vars": f"PUBLIC_URL={URL}"}),
    (["run", "services", "add-iam-policy-binding", "agent-api"], {"role": "roles/run.invoker"}),
    (["run", "services", "add-iam-policy-binding", "agent-api"], {"role": "roles/run.developer"}),
    (["scheduler", "jobs", "create", "http", "agent-reconcile"], {}),
]
# What every later run changes: it rolls out the current code, and nothing else.
ROLLOUT = [["builds", "submit"], ["run", "jobs", "deploy"], ["run", "deploy"]]


def flags(argv: list[str]) -> dict[str, str]:
    return {a[2:].partition("=")[0]: a.partition("=")[2] for a in argv if a.startswith("--")}


def matches(argv: list[str], expected_words: list[str], expected_flags: dict) -> bool:
    given = flags(argv)
    return words(argv)[: len(expected_words)] == expected_words and all(
        given.get(k) == v for k, v in expected_flags.items()
    )


def env_vars(argv: list[str]) -> dict[str, str]:
    spec = flags(argv)["set-env-vars"]
    assert spec.startswith("^|^"), "AUTH_MODE's comma needs gcloud's ^|^ separator"
    return dict(item.split("=", 1) for item in spec[3:].split("|"))


def test_the_first_run_checks_login_and_project_before_anything_else(deployed):
    _, first, _ = deployed
    assert words(first.gcloud()[0])[:2] == ["auth", "list"]
    assert words(first.gcloud()[1])[:3] == ["projects", "describe", PROJECT]


def test_the_first_run_creates_everything_in_order(deployed):
    _, first, _ = deployed
    mutations = first.mutations()
    assert len(mutations) == len(FIRST_RUN), "\n".join(" ".join(words(m)) for m in mutations)
    for argv, (expected_words, expected_flags) in zip(mutations, FIRST_RUN, strict=True):
        assert matches(argv, expected_words, expected_flags), (argv, expected_words)


def test_every_resource_is_described_before_it_is_created(deployed):
    _, first, _ = deployed
    calls = [words(argv) for argv in first.gcloud()]
    for index, call in enumerate(calls):
        if "create" not in call:
            continue
        verb = call.index("create")
        group, name = call[:verb], call[verb + 1 :][-1:]
        earlier = [c for c in calls[:index] if c[:verb] == group]
        assert any(c[verb] in ("describe", "list") for c in earlier), f"no describe before {call}"
        if group == ["iam", "service-accounts"]:
            name = [f"{name[0]}@{PROJECT}.iam.gserviceaccount.com"]
        if group not in (["firestore", "indexes", "composite"], ["firestore", "databases"]):
            assert any(c[verb] == "describe" and c[verb + 1 :][-1:] == name for c in earlier)


def test_every_api_the_platform_uses_is_enabled(deployed):
    _, first, _ = deployed
    enabled = set(first.find("services", "enable")[2:])
    assert {
        "run.googleapis.com",
        "firestore.googleapis.com",
        "secretmanager.googleapis.com",
        "artifactregistry.googleapis.com",
        "cloudbuild.googleapis.com",
        "cloudscheduler.googleapis.com",
        "iam.googleapis.com",
    } <= enabled


def test_a_second_run_creates_nothing_and_only_rolls_out_the_code(deployed):
    _, _, second = deployed
    changed = [words(argv) for argv in second.mutations()]
    assert [c[: len(r)] for c, r in zip(changed, ROLLOUT, strict=True)] == ROLLOUT
    assert "exists: Artifact Registry repository agent-platform" in second.stderr


def test_the_second_run_keeps_public_url_in_the_same_deployment(deployed):
    _, _, second = deployed
    assert env_vars(second.find("run", "deploy"))["PUBLIC_URL"] == URL


def test_nothing_is_granted_to_the_runner_account(deployed):
    cloud, first, _ = deployed
    runner = f"serviceAccount:{RUNNER_SA}"
    grants = [a for a in first.gcloud() if "add-iam-policy-binding" in a]
    assert grants, "the run granted nothing at all"
    assert [a for a in grants if flags(a)["member"] == runner] == []
    for bindings in cloud.state()["policies"].values():
        assert all(runner not in b["members"] for b in bindings)


def test_each_account_gets_exactly_its_roles_on_the_narrowest_resource(deployed):
    cloud, _, _ = deployed
    granted = {
        (resource, binding["role"], member)
        for resource, bindings in cloud.state()["policies"].items()
        for binding in bindings
        for member in binding["members"]
    }
    api, builder, scheduler = (f"serviceAccount:{sa}" for sa in (API_SA, BUILDER_SA, SCHEDULER_SA))
    assert granted == {
        (f"projects/{PROJECT}", "roles/datastore.user", api),
        ("secrets/anthropic-api-key", "roles/secretmanager.secretAccessor", api),
        ("secrets/task-token-key", "roles/secretmanager.secretAccessor", api),
        (f"iam service-accounts/{RUNNER_SA}", "roles/iam.serviceAccountUser", api),
        ("run jobs/agent-runner", f"projects/{PROJECT}/roles/agentTaskLauncher", api),
        ("run services/agent-api", "roles/run.invoker", scheduler),
        (f"projects/{PROJECT}", "roles/logging.logWriter", builder),
        ("artifacts repositories/agent-platform", "roles/artifactregistry.writer", builder),
        (f"storage buckets/gs://{PROJECT}-agent-builds", "roles/storage.objectViewer", builder),
        (f"iam service-accounts/{API_SA}", "roles/iam.serviceAccountUser", builder),
        (f"iam service-accounts/{RUNNER_SA}", "roles/iam.serviceAccountUser", builder),
        ("run jobs/agent-runner", "roles/run.developer", builder),
        ("run services/agent-api", "roles/run.developer", builder),
    }


def test_the_launcher_role_holds_only_what_the_executor_calls(deployed):
    _, first, _ = deployed
    permissions = flags(first.find("iam", "roles", "create"))["permissions"].split(",")
    assert sorted(permissions) == [
        "run.executions.cancel",
        "run.executions.get",
        "run.jobs.run",
        "run.jobs.runWithOverrides",
        "run.operations.get",
    ]


def test_the_job_runs_as_the_runner_with_no_secrets_and_no_env(deployed):
    _, first, _ = deployed
    job = flags(first.find("run", "jobs", "deploy"))
    assert job["service-account"] == RUNNER_SA
    assert job["image"] == f"{IMAGES}/runner:t1"
    assert job["max-retries"] == "1"
    assert job["task-timeout"] == "3630s"
    assert job["tasks"] == "1" and job["cpu"] and job["memory"]
    assert "clear-env-vars" in job
    assert not {"set-secrets", "update-secrets", "set-env-vars", "update-env-vars"} & set(job)


def test_the_service_gets_the_env_contract_and_secrets_by_reference(deployed):
    cloud, first, _ = deployed
    deploy = first.find("run", "deploy")
    service = flags(deploy)
    assert service["service-account"] == API_SA
    assert service["image"] == f"{IMAGES}/api:t1"
    assert service["concurrency"] == "16" == env_vars(deploy)["GUNICORN_THREADS"]
    assert service["min-instances"] == "0"
    assert service["set-secrets"] == (
        "TASK_TOKEN_KEY=task-token-key:latest,ANTHROPIC_API_KEY=anthropic-api-key:latest"
    )
    assert env_vars(deploy) == {
        "EXECUTOR": "cloudrun",
        "CLOUD_RUN_JOB": JOB,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "AUTH_MODE": "firebase,apikey",
        "RECONCILE_INVOKER": SCHEDULER_SA,
        "GUNICORN_THREADS": "16",
    }
    # The URL exists only once deployed: the first run sets PUBLIC_URL right after.
    assert cloud.state()["resources"]["run services/agent-api"]["env"]["PUBLIC_URL"] == URL


def test_the_scheduler_calls_reconcile_every_minute_with_oidc(deployed):
    _, first, _ = deployed
    job = flags(first.find("scheduler", "jobs", "create"))
    assert job["schedule"] == "* * * * *"
    assert job["uri"] == RECONCILE_URI == job["oidc-token-audience"]
    assert job["oidc-service-account-email"] == SCHEDULER_SA
    assert job["http-method"] == "post"


def test_images_are_built_by_cloud_build_for_amd64_as_the_builder(deployed):
    cloud, first, _ = deployed
    submit = flags(first.find("builds", "submit"))
    assert submit["service-account"] == f"projects/{PROJECT}/serviceAccounts/{BUILDER_SA}"
    config = cloud.state()["builds"][0]["config"]
    assert config.count("--platform=linux/amd64") == 2
    assert "--file=api/Dockerfile" in config and "--file=job-runner/Dockerfile" in config
    assert f"{IMAGES}/api:t1" in config and f"{IMAGES}/runner:t1" in config
    assert "gcr.io/" + PROJECT not in config  # Artifact Registry, never Container Registry


def test_no_account_is_the_default_compute_account(deployed):
    cloud, first, _ = deployed
    assert "compute@developer.gserviceaccount.com" not in cloud.log.read_text()


def test_the_deployment_ends_with_the_url_and_a_passing_health_check(deployed):
    _, first, _ = deployed
    assert f"Service URL: {URL}" in first.stdout
    assert first.curl()[-1][-1] == f"{URL}/health"
    assert "smoke test: /health is ok" in first.stderr


def test_the_anthropic_key_from_a_file_never_appears_on_a_command_line(deployed):
    cloud, first, _ = deployed
    # Every recorded command line and environment, of gcloud and curl alike.
    assert ANTHROPIC_KEY not in cloud.log.read_text()
    assert ANTHROPIC_KEY not in first.stdout + first.stderr
    # ...and yet it reached Secret Manager, without its newline, through stdin.
    assert cloud.state()["secrets"]["anthropic-api-key"] == [ANTHROPIC_KEY]


def test_the_anthropic_key_from_stdin_never_appears_on_a_command_line(cloud):
    run = cloud.run("--anthropic-key-file", "-", stdin=ANTHROPIC_KEY + "\n")
    assert_ok(run)
    assert ANTHROPIC_KEY not in cloud.log.read_text()
    assert ANTHROPIC_KEY not in run.stdout + run.stderr
    assert cloud.state()["secrets"]["anthropic-api-key"] == [ANTHROPIC_KEY]


def test_the_token_key_is_generated_and_never_on_a_command_line(deployed):
    cloud, _, _ = deployed
    [token_key] = cloud.state()["secrets"]["task-token-key"]
    assert len(token_key) >= 40  # 32 random bytes, base64
    assert token_key not in cloud.log.read_text()


def test_a_key_passed_as_an_argument_is_refused_before_anything_runs(cloud):
    run = cloud.run("--anthropic-key", ANTHROPIC_KEY)
    assert run.returncode != 0
    assert "--anthropic-key-file" in run.stderr
    assert run.calls == []


def test_a_different_key_on_a_later_run_becomes_a_new_version(deployed_cloud):
    cloud = deployed_cloud
    rotated = cloud.run("--anthropic-key-file", str(cloud.key_file("sk-ant-rotated-key-2")))
    assert_ok(rotated)
    added = [w for w in map(words, rotated.mutations()) if w[:3] == ["secrets", "versions", "add"]]
    assert added == [["secrets", "versions", "add", "anthropic-api-key"]]
    assert cloud.state()["secrets"]["anthropic-api-key"] == [ANTHROPIC_KEY, "sk-ant-rotated-key-2"]


def test_the_first_run_without_a_key_stops_and_says_how_to_give_it(cloud):
    run = cloud.run()
    assert run.returncode != 0
    assert "--anthropic-key-file" in run.stderr
    assert not [a for a in run.gcloud() if words(a)[:3] == ["secrets", "versions", "add"]]


def test_without_a_gcloud_login_nothing_is_changed(cloud):
    run = cloud.run("--anthropic-key-file", str(cloud.key_file()), FAKE_CLOUD_LOGGED_OUT="1")
    assert run.returncode != 0
    assert "gcloud auth login" in run.stderr
    assert run.mutations() == []


def test_an_unknown_project_stops_the_run_before_any_change(cloud):
    run = cloud.run(
        "--anthropic-key-file", str(cloud.key_file()), FAKE_CLOUD_MISSING_PROJECT=PROJECT
    )
    assert run.returncode != 0
    assert f"project {PROJECT} was not found" in run.stderr
    assert run.mutations() == []


def test_auth_mode_dev_is_refused(cloud):
    run = cloud.run("--auth-mode", "dev")
    assert run.returncode != 0
    assert "refuses it on Cloud Run" in run.stderr
    assert run.calls == []


def test_a_failing_health_check_fails_the_deployment(deployed_cloud):
    run = deployed_cloud.run(FAKE_CLOUD_HEALTH_BROKEN="1")
    assert run.returncode != 0
    assert "smoke test: /health answered" in run.stderr


def test_the_smoke_task_runs_code_with_the_api_key_in_a_header_file(deployed_cloud):
    cloud = deployed_cloud
    api_key = "ak_smoke-CANARY-31337"
    key_file = cloud.tmp / "api.key"
    key_file.write_text(api_key + "\n")
    run = cloud.run("--smoke-task", "--smoke-api-key-file", str(key_file))
    assert_ok(run)
    assert "smoke test: a code task ran (task task-1 printed 42)" in run.stderr
    submitted = [r for r in cloud.state()["requests"] if r["data"]]
    assert f"Authorization: Bearer {api_key}" in submitted[0]["headers"]
    assert "print(6 * 7)" in submitted[0]["data"]
    assert api_key not in cloud.log.read_text()


def test_a_dry_run_prints_every_command_and_runs_none(cloud, deployed):
    _, first, _ = deployed
    dry = cloud.run("--dry-run", "--anthropic-key-file", str(cloud.key_file()))
    assert_ok(dry)
    assert dry.calls == [], "a dry run called gcloud or curl"
    assert not cloud.state_file.exists()
    # It prints the same changes, in the same order, as a real first deployment.
    printed = [words(argv[1:])[:4] for argv in dry.printed_commands() if _changes(argv)]
    assert printed == [words(argv)[:4] for argv in first.mutations()]


def _changes(argv: list[str]) -> bool:
    return argv[0] == "gcloud" and is_mutating(argv[1:])


def test_help_lists_every_setting():
    done = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for flag in ("--project", "--region", "--auth-mode", "--anthropic-key-file", "--dry-run"):
        assert flag in done.stdout


def test_the_script_is_shellcheck_clean():
    done = subprocess.run(
        [venv_tool("shellcheck"), "--severity=style", "--shell=bash", str(SCRIPT)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout


def test_rotating_the_token_key_adds_one_new_generated_version(deployed_cloud):
    cloud = deployed_cloud
    [old] = cloud.state()["secrets"]["task-token-key"]
    run = cloud.run("--rotate-token-key")
    assert_ok(run)
    added = [w for w in map(words, run.mutations()) if w[:3] == ["secrets", "versions", "add"]]
    assert added == [["secrets", "versions", "add", "task-token-key"]]
    versions = cloud.state()["secrets"]["task-token-key"]
    assert versions[0] == old and len(versions) == 2 and versions[1] != old
    assert versions[1] not in cloud.log.read_text()
