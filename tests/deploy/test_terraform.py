"""terraform/, parsed (hcl2) and scanned (checkov), offline: the same resources as
deploy-gcp.sh, each account with exactly its grants, at the narrowest scope."""

from __future__ import annotations

import json
import re
import subprocess

import hcl2

from tests.conftest import must_match
from tests.deploy.harness import ROOT, SCRIPT, venv_tool

TERRAFORM = ROOT / "terraform"
FILES = {
    "apis.tf",
    "artifact_registry.tf",
    "firestore.tf",
    "iam.tf",
    "kms.tf",
    "outputs.tf",
    "run.tf",
    "scheduler.tf",
    "secrets.tf",
    "variables.tf",
    "versions.tf",
}
PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}


def unwrap(value):
    """hcl2 (checkov's fork) wraps attribute values in one-element lists."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def parse(name: str) -> dict:
    with open(TERRAFORM / name) as handle:
        return hcl2.load(handle)


def blocks(kind: str) -> dict[str, dict]:
    """Every `resource`/`variable`/... block, by "TYPE.NAME" (or NAME), across all files."""
    found = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        for entry in parse(path.name).get(kind, []):
            for key, body in entry.items():
                if kind in ("resource", "data"):
                    for name, inner in body.items():
                        found[f"{key}.{name}"] = {**inner, "__file__": path.name}
                else:
                    found[key] = {**body, "__file__": path.name} if isinstance(body, dict) else body
    return found


def locals_() -> dict:
    found = {}
    for path in TERRAFORM.glob("*.tf"):
        for entry in parse(path.name).get("locals", []):
            found.update({k: unwrap(v) for k, v in entry.items() if not k.startswith("__")})
    return found


def resolve(value: str) -> str:
    """Substitutes ${local.NAME} references, so members read as what they grant to."""
    values = locals_()
    return re.sub(r"\$\{local\.(\w+)\}", lambda m: str(values[m.group(1)]), str(unwrap(value)))


def iam_members() -> dict[str, dict]:
    return {
        key: body
        for key, body in blocks("resource").items()
        if re.search(r"_iam_(member|binding|policy)$", key.split(".")[0])
    }


def member_of(body: dict) -> str:
    return resolve(body["member"])


def script_setting(name: str) -> str:
    text = SCRIPT.read_text()
    match = re.search(rf"^{name}=\$\{{{name}:-(.*)\}}$", text, re.M) or re.search(
        rf'^{name}="?([^"\n]*)"?$', text, re.M
    )
    assert match, name
    return match.group(1)


def test_the_configuration_is_split_by_concern():
    assert {p.name for p in TERRAFORM.glob("*.tf")} == FILES
    where = {key.split(".")[0]: body["__file__"] for key, body in blocks("resource").items()}
    for resource_type, file in where.items():
        if resource_type.endswith("_iam_member") or resource_type in (
            "google_service_account",
            "google_project_iam_custom_role",
        ):
            assert file == "iam.tf", resource_type
    assert where["google_cloud_run_v2_job"] == where["google_cloud_run_v2_service"] == "run.tf"
    assert where["google_cloud_scheduler_job"] == "scheduler.tf"
    assert where["google_secret_manager_secret"] == "secrets.tf"
    assert where["google_artifact_registry_repository"] == "artifact_registry.tf"
    assert where["google_firestore_database"] == "firestore.tf"
    assert where["google_project_service"] == "apis.tf"
    assert where["google_kms_key_ring"] == where["google_kms_crypto_key"] == "kms.tf"


def test_every_variable_has_a_description_and_a_type():
    variables = blocks("variable")
    assert variables
    for name, body in variables.items():
        assert str(unwrap(body.get("description", ""))).strip(), name
        assert "type" in body, name


def test_the_outputs_are_the_service_url_and_the_job_name():
    outputs = blocks("output")
    assert unwrap(outputs["service_url"]["value"]) == "${google_cloud_run_v2_service.api.uri}"
    assert unwrap(outputs["job_name"]["value"]) == '${google_cloud_run_v2_job.runner["live"].id}'
    assert all(str(unwrap(o.get("description", ""))).strip() for o in outputs.values())


def test_the_service_accounts_are_api_runner_scheduler_and_builder():
    accounts = {
        key: unwrap(body["account_id"])
        for key, body in blocks("resource").items()
        if key.startswith("google_service_account.")
    }
    assert accounts == {
        "google_service_account.api": "agent-api",
        "google_service_account.runner": "agent-runner",
        "google_service_account.scheduler": "agent-scheduler",
        "google_service_account.builder": "agent-builder",
    }
    everything = "".join(p.read_text() for p in TERRAFORM.glob("*.tf"))
    assert "compute@developer.gserviceaccount.com" not in everything


def test_the_runner_account_is_granted_nothing():
    members = [member_of(body) for body in iam_members().values()]
    assert members
    assert not [m for m in members if "google_service_account.runner" in m]


def test_grants_are_single_members_never_whole_policies():
    for key in iam_members():
        assert key.split(".")[0].endswith("_iam_member"), f"{key} would replace a policy"


def test_no_grant_uses_a_primitive_or_admin_role():
    for key, body in iam_members().items():
        role = str(unwrap(body["role"]))
        assert role not in PRIMITIVE_ROLES, key
        # objectAdmin is object access on one bucket (interfaces item 2), not an admin role.
        assert "admin" not in role.lower() or role == "roles/storage.objectAdmin", key


def test_only_three_grants_are_project_wide():
    project_wide = {
        (member_of(body), unwrap(body["role"]))
        for key, body in iam_members().items()
        if key.startswith("google_project_iam_member.")
    }
    assert project_wide == {
        ("serviceAccount:${google_service_account.api.email}", "roles/datastore.user"),
        ("serviceAccount:${google_service_account.builder.email}", "roles/logging.logWriter"),
        # The smoke task's key (cloudbuild.yaml's rollout): no more than it deploys as api.
        ("serviceAccount:${google_service_account.builder.email}", "roles/datastore.user"),
    }


def test_the_api_account_gets_exactly_its_grants_each_on_its_resource():
    api = "serviceAccount:${google_service_account.api.email}"
    grants = sorted(
        (key.split(".")[0], unwrap(body["role"]), _scope(body))
        for key, body in iam_members().items()
        if member_of(body) == api
    )
    assert grants == sorted(
        [
            ("google_project_iam_member", "roles/datastore.user", "${var.project_id}"),
            (
                "google_secret_manager_secret_iam_member",
                "roles/secretmanager.secretAccessor",
                "${google_secret_manager_secret.anthropic_api_key.id}",
            ),
            (
                "google_secret_manager_secret_iam_member",
                "roles/secretmanager.secretAccessor",
                "${google_secret_manager_secret.task_token_key.id}",
            ),
            (
                "google_cloud_run_v2_job_iam_member",
                "${google_project_iam_custom_role.task_launcher.name}",
                "${each.value.name}",
            ),
            (
                "google_service_account_iam_member",
                "roles/iam.serviceAccountUser",
                "${google_service_account.runner.name}",
            ),
            (
                "google_storage_bucket_iam_member",
                "roles/storage.objectAdmin",
                "${google_storage_bucket.files.name}",
            ),
            (
                "google_kms_crypto_key_iam_member",
                "roles/cloudkms.cryptoKeyEncrypterDecrypter",
                "${google_kms_crypto_key.user_secrets.id}",
            ),
        ]
    )


def test_the_job_grants_cover_the_live_job_and_its_candidate():
    resources = blocks("resource")
    jobs = resources["google_cloud_run_v2_job.runner"]
    assert unwrap(jobs["for_each"]) == "${local.jobs}"
    assert unwrap(jobs["name"]) == "${each.value.name}"
    for grant in ("api_launches_tasks", "builder_updates_job"):
        body = resources[f"google_cloud_run_v2_job_iam_member.{grant}"]
        assert unwrap(body["for_each"]) == "${google_cloud_run_v2_job.runner}", grant


def test_the_service_is_public_through_the_disabled_invoker_check_never_all_users():
    service = blocks("resource")["google_cloud_run_v2_service.api"]
    assert unwrap(service["invoker_iam_disabled"]) is True
    members = [member_of(body) for body in iam_members().values()]
    assert not [m for m in members if m in ("allUsers", "allAuthenticatedUsers")]


def _scope(body: dict) -> str:
    for field in (
        "secret_id",
        "service_account_id",
        "repository",
        "bucket",
        "name",
        "project",
        "crypto_key_id",
    ):
        if field in body:
            return unwrap(body[field])
    raise AssertionError(f"no scope in {body}")


def test_the_launcher_role_matches_the_script_and_the_executor():
    role = blocks("resource")["google_project_iam_custom_role.task_launcher"]
    permissions = sorted(unwrap(role["permissions"]))
    assert permissions == sorted(script_setting("LAUNCHER_PERMISSIONS").split(","))
    assert unwrap(role["role_id"]) == script_setting("LAUNCHER_ROLE")


def test_the_job_runs_as_the_runner_in_gen2_with_no_env_and_no_secrets():
    job = blocks("resource")["google_cloud_run_v2_job.runner"]
    task = unwrap(unwrap(job["template"])["template"])
    assert unwrap(task["service_account"]) == "${google_service_account.runner.email}"
    assert unwrap(task["execution_environment"]) == "EXECUTION_ENVIRONMENT_GEN2"
    container = unwrap(task["containers"])
    assert "env" not in container and "volume_mounts" not in container
    assert resolve(task["max_retries"]) == script_setting("JOB_MAX_RETRIES")
    from api import config

    margin = config.RUNNER_OVERHEAD_SECONDS
    assert resolve(task["timeout"]) == f"{config.MAX_TIMEOUT_SECONDS + margin}s"
    # A generous margin for the execution's start, restore and upload: billing is for
    # what runs, and a tight one turns a slow start into an execution_timeout.
    assert margin >= 300


def test_the_service_gets_the_env_contract_and_its_secrets_by_reference():
    service = blocks("resource")["google_cloud_run_v2_service.api"]
    template = unwrap(service["template"])
    assert unwrap(template["service_account"]) == "${google_service_account.api.email}"
    assert resolve(template["max_instance_request_concurrency"]) == script_setting(
        "API_CONCURRENCY"
    )
    assert unwrap(unwrap(template["scaling"])["min_instance_count"]) == 0
    container = unwrap(template["containers"])
    env = {unwrap(e["name"]): e for e in container["env"]}
    assert set(env) == {
        "EXECUTOR",
        "CLOUD_RUN_JOB",
        "CLOUD_RUN_JOB_SMALL",
        "GOOGLE_CLOUD_PROJECT",
        "AUTH_MODE",
        "RECONCILE_INVOKER",
        "GUNICORN_THREADS",
        "PUBLIC_URL",
        "FILES_BUCKET",
        "SECRETS_KMS_KEY",
        "TASK_TOKEN_KEY",
        "ANTHROPIC_API_KEY",
    }
    assert unwrap(env["SECRETS_KMS_KEY"]["value"]) == "${google_kms_crypto_key.user_secrets.id}"
    assert unwrap(env["EXECUTOR"]["value"]) == "cloudrun"
    assert unwrap(env["RECONCILE_INVOKER"]["value"]) == "${google_service_account.scheduler.email}"
    for name, secret in (
        ("TASK_TOKEN_KEY", "task_token_key"),
        ("ANTHROPIC_API_KEY", "anthropic_api_key"),
    ):
        ref = unwrap(unwrap(env[name]["value_source"])["secret_key_ref"])
        assert unwrap(ref["secret"]) == f"${{google_secret_manager_secret.{secret}.secret_id}}"
        assert "value" not in env[name]


def test_the_scheduler_calls_reconcile_every_minute_with_the_schedulers_oidc_token():
    job = blocks("resource")["google_cloud_scheduler_job.reconcile"]
    target = unwrap(job["http_target"])
    token = unwrap(target["oidc_token"])
    assert unwrap(job["schedule"]) == "* * * * *"
    assert unwrap(target["uri"]).endswith("/internal/v1/reconcile")
    assert unwrap(token["audience"]) == unwrap(target["uri"])
    assert unwrap(token["service_account_email"]) == "${google_service_account.scheduler.email}"


def test_firestore_is_native_with_the_declared_indexes_and_a_ttl():
    resources = blocks("resource")
    assert unwrap(resources["google_firestore_database.default"]["type"]) == "FIRESTORE_NATIVE"
    assert "../firestore.indexes.json" in (TERRAFORM / "firestore.tf").read_text()
    index = resources["google_firestore_index.composite"]
    assert unwrap(index["for_each"]) == "${local.firestore_indexes}"
    ttls = must_match(r"^TTLS=\((.*)\)$", SCRIPT.read_text(), re.M).group(1).split()
    found = [
        f"{unwrap(b['collection'])}.{unwrap(b['field'])}"
        for k, b in resources.items()
        if k.startswith("google_firestore_field.") and "ttl_config" in b
    ]
    assert (
        sorted(found)
        == sorted(ttls)
        == [
            "admissionDaily.expireAt",
            "events.expireAt",
            "idempotency.expireAt",
            "runLaunchWindows.expireAt",
            "tasks.expireAt",
            "uploads.expireAt",
        ]
    )


def test_secret_values_are_write_only_so_a_plain_apply_works_and_no_state_holds_them():
    """A plain `terraform apply` creates each secret with a version (the service's first
    revision reads `latest`), from an ephemeral variable through a write-only argument:
    no value in the plan, the state or the configuration."""
    resources = blocks("resource")
    secrets = {
        unwrap(b["secret_id"])
        for k, b in resources.items()
        if k.startswith("google_secret_manager_secret.")
    }
    assert secrets == {script_setting("ANTHROPIC_SECRET"), script_setting("TOKEN_SECRET")}
    variables = blocks("variable")
    versions = {
        k: b for k, b in resources.items() if k.startswith("google_secret_manager_secret_version.")
    }
    assert sorted(versions) == [
        "google_secret_manager_secret_version.anthropic_api_key",
        "google_secret_manager_secret_version.task_token_key",
    ]
    for key, body in versions.items():
        name = key.split(".")[1]
        assert "secret_data" not in body, f"{key} would keep its value in the state"
        assert unwrap(body["secret_data_wo"]) == f"${{var.{name}}}"
        assert unwrap(body["secret_data_wo_version"]) == f"${{var.{name}_version}}"
        assert unwrap(variables[name]["ephemeral"]) is True
        assert unwrap(variables[name]["sensitive"]) is True
        assert f"google_secret_manager_secret_version.{name}" in str(
            resources["google_cloud_run_v2_service.api"]["depends_on"]
        )
    assert not [k for k in resources if k.startswith("random_")]


def test_every_operator_setting_is_a_variable_the_service_applies():
    variables = blocks("variable")
    assert {"auth_mode", "api_max_instances", "firebase_web_config", "api_env"} <= set(variables)
    run_tf = (TERRAFORM / "run.tf").read_text()
    assert "FIREBASE_WEB_CONFIG = var.firebase_web_config" in run_tf
    assert "for_each = var.api_env" in run_tf


def test_the_same_apis_and_defaults_as_the_script():
    apis = sorted(re.findall(r"'([a-z.]+\.googleapis\.com)'", unwrap(locals_()["apis"])))
    script_apis = must_match(r"REQUIRED_APIS=\(\n(.*?)\n\)", SCRIPT.read_text(), re.S).group(1)
    assert apis == sorted(script_apis.split())
    variables = blocks("variable")
    for variable, setting in (
        ("region", "REGION"),
        ("service_name", "SERVICE_NAME"),
        ("job_name", "JOB_NAME"),
        ("repository_id", "REPOSITORY"),
        ("scheduler_job_name", "SCHEDULER_JOB"),
        ("auth_mode", "DEFAULT_AUTH_MODE"),
        ("job_cpu", "JOB_CPU"),
        ("api_max_instances", "DEFAULT_MAX_INSTANCES"),
    ):
        assert str(unwrap(variables[variable]["default"])) == script_setting(setting), variable


def test_the_jobs_memory_holds_the_largest_task_and_the_runner():
    from api import config

    needed = config.MAX_MEMORY_MB + config.TASK_DISK_MB + config.RUNNER_RESERVE_MB
    assert unwrap(blocks("variable")["job_memory"]["default"]) == f"{needed}Mi"


def test_the_small_jobs_memory_holds_its_largest_task_and_the_runner():
    from api import config

    needed = config.SMALL_JOB_MAX_TASK_MEMORY_MB + config.TASK_DISK_MB + config.RUNNER_RESERVE_MB
    variables = blocks("variable")
    assert unwrap(variables["small_job_memory"]["default"]) == f"{needed}Mi"
    # Cloud Run allows up to 4 GiB with 1 CPU: the small job's size is a 1-CPU size.
    assert unwrap(variables["small_job_cpu"]["default"]) == "1" and needed <= 4096


def test_four_jobs_live_and_candidate_of_each_size_and_the_service_names_both_live_ones():
    jobs = locals_()["jobs"]
    assert set(jobs) == {"live", "candidate", "small", "small-candidate"}
    run_tf = (TERRAFORM / "run.tf").read_text()
    assert 'value = google_cloud_run_v2_job.runner["live"].id' in run_tf
    assert 'value = google_cloud_run_v2_job.runner["small"].id' in run_tf
    service = blocks("resource")["google_cloud_run_v2_service.api"]
    env = {unwrap(e["name"]) for e in unwrap(unwrap(service["template"])["containers"])["env"]}
    assert {"CLOUD_RUN_JOB", "CLOUD_RUN_JOB_SMALL"} <= env


def test_the_files_bucket_is_private_with_the_same_lifecycle_as_the_script():
    bucket = blocks("resource")["google_storage_bucket.files"]
    assert unwrap(bucket["name"]) == "${var.project_id}-agent-files"
    assert unwrap(bucket["uniform_bucket_level_access"]) is True
    assert unwrap(bucket["public_access_prevention"]) == "enforced"
    script = json.loads(
        must_match(r"^FILES_LIFECYCLE='(.*?)'$", SCRIPT.read_text(), re.M | re.S).group(1)
    )
    rules = []
    for rule in bucket["lifecycle_rule"]:
        condition = unwrap(rule["condition"])
        rules.append(
            {
                "action": {"type": unwrap(unwrap(rule["action"])["type"])},
                "condition": {
                    {
                        "age": "age",
                        "days_since_custom_time": "daysSinceCustomTime",
                        "matches_prefix": "matchesPrefix",
                        "matches_suffix": "matchesSuffix",
                    }[k]: (v[0] if k.startswith("matches_") else unwrap(v))
                    for k, v in condition.items()
                },
            }
        )
    assert rules == script["rule"]


def test_accounts_role_and_project_grants_wait_for_the_apis():
    for key, body in blocks("resource").items():
        if key.split(".")[0] in (
            "google_service_account",
            "google_project_iam_custom_role",
            "google_project_iam_member",
        ):
            assert "google_project_service.enabled" in str(body.get("depends_on")), key


def test_terraform_leaves_cloud_builds_revisions_alone():
    for key in ("google_cloud_run_v2_job.runner", "google_cloud_run_v2_service.api"):
        ignored = str(blocks("resource")[key]["lifecycle"])
        assert "template[0].labels" in ignored and "template[0].annotations" in ignored, key


def test_checkov_fails_nothing_and_every_skip_says_why():
    done = subprocess.run(
        [
            venv_tool("checkov"),
            "--directory",
            str(TERRAFORM),
            "--framework",
            "terraform",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(done.stdout)
    results = report["results"]
    failed = [(c["check_id"], c["resource"]) for c in results["failed_checks"]]
    assert failed == [], failed
    assert results["passed_checks"], "checkov checked nothing"
    ran_skips = {c["check_id"] for c in results["skipped_checks"]}
    written = re.findall(
        r"#checkov:skip=(CKV\w+):(.*)", "".join(p.read_text() for p in TERRAFORM.glob("*.tf"))
    )
    assert written, "no skips: then this test should say so"
    for check, reason in written:
        assert len(reason.strip()) > 20, f"{check} is skipped without a reason"
        assert check in ran_skips, f"{check} is skipped but checkov never runs it here"


def test_user_secrets_have_one_kms_key_with_the_scripts_names():
    ring = blocks("resource")["google_kms_key_ring.platform"]
    key = blocks("resource")["google_kms_crypto_key.user_secrets"]
    assert unwrap(ring["name"]) == script_setting("KMS_KEYRING")
    assert unwrap(key["name"]) == script_setting("KMS_KEY")
    assert unwrap(key["purpose"]) == "ENCRYPT_DECRYPT"
    assert unwrap(key["rotation_period"]) == "7776000s"
    assert unwrap(unwrap(key["lifecycle"])["prevent_destroy"]) is True
