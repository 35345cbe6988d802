# Identities and what each may do: the same accounts and grants as deploy-gcp.sh.
# Each grant is a single member on the narrowest resource that allows the call
# (google_*_iam_member: additive, never replacing a policy). Never the default
# compute account.

# -- The accounts -------------------------------------------------------------------

resource "google_service_account" "api" {
  # A fresh project enables iam.googleapis.com in the same apply.
  depends_on   = [google_project_service.enabled]
  account_id   = "agent-api"
  display_name = "agent-api"
  description  = "The agent platform's API (Cloud Run service)"
}

# The task runner holds no role at all: a task that escapes its sandbox reaches
# nothing but its own task, through the API (docs/decisions/0001).
resource "google_service_account" "runner" {
  account_id   = "agent-runner"
  depends_on   = [google_project_service.enabled]
  display_name = "agent-runner"
  description  = "Task runner (Cloud Run job): holds no role at all"
}

resource "google_service_account" "scheduler" {
  account_id   = "agent-scheduler"
  depends_on   = [google_project_service.enabled]
  display_name = "agent-scheduler"
  description  = "Cloud Scheduler: calls the API's reconcile endpoint"
}

resource "google_service_account" "builder" {
  account_id   = "agent-builder"
  depends_on   = [google_project_service.enabled]
  display_name = "agent-builder"
  description  = "Cloud Build: builds and rolls out the images"
}

# What the API does with the job (api/adapters/executors/cloudrun.py): RunJob with
# overrides, GetExecution, CancelExecution. Narrower than roles/run.developer, which
# could also update or delete the job.
resource "google_project_iam_custom_role" "task_launcher" {
  role_id     = "agentTaskLauncher"
  title       = "Agent task launcher"
  description = "Run the runner job with overrides; get and cancel its executions"
  stage       = "GA"
  permissions = [
    "run.executions.cancel",
    "run.executions.get",
    "run.jobs.run",
    "run.jobs.runWithOverrides",
  ]

  depends_on = [google_project_service.enabled]
}

locals {
  api_member       = "serviceAccount:${google_service_account.api.email}"
  scheduler_member = "serviceAccount:${google_service_account.scheduler.email}"
  builder_member   = "serviceAccount:${google_service_account.builder.email}"
}

# -- api ------------------------------------------------------------------------------

# Firestore: a grant on the database alone needs IAM conditions; the project is the
# narrowest plain scope for roles/datastore.user.
resource "google_project_iam_member" "api_uses_firestore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = local.api_member

  depends_on = [google_project_service.enabled]
}

# The files bucket's objects, that bucket only: the runner moves bytes through the
# API's internal endpoints and holds no credential of its own.
resource "google_storage_bucket_iam_member" "api_uses_files" {
  bucket = google_storage_bucket.files.name
  role   = "roles/storage.objectAdmin"
  member = local.api_member
}

resource "google_secret_manager_secret_iam_member" "api_reads_anthropic_key" {
  secret_id = google_secret_manager_secret.anthropic_api_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.api_member
}

resource "google_secret_manager_secret_iam_member" "api_reads_token_key" {
  secret_id = google_secret_manager_secret.task_token_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.api_member
}

# User secrets: seal and open with the one key (ADR 0016), nothing more.
resource "google_kms_crypto_key_iam_member" "api_seals_user_secrets" {
  crypto_key_id = google_kms_crypto_key.user_secrets.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = local.api_member
}

resource "google_cloud_run_v2_job_iam_member" "api_launches_tasks" {
  for_each = google_cloud_run_v2_job.runner
  location = each.value.location
  name     = each.value.name
  role     = google_project_iam_custom_role.task_launcher.name
  member   = local.api_member
}

# RunJob starts executions as the job's account: the caller must be allowed to act as it.
resource "google_service_account_iam_member" "api_acts_as_runner" {
  service_account_id = google_service_account.runner.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.api_member
}

# -- scheduler ------------------------------------------------------------------------

resource "google_cloud_run_v2_service_iam_member" "scheduler_invokes_api" {
  location = google_cloud_run_v2_service.api.location
  name     = google_cloud_run_v2_service.api.name
  role     = "roles/run.invoker"
  member   = local.scheduler_member
}

# The API is public through its disabled invoker check (run.tf), not an allUsers grant.

# -- builder (cloudbuild.yaml, and deploy-gcp.sh's image builds) ----------------------

# Build logs go to Cloud Logging (a user-managed build account cannot use the default
# logs bucket); log writing is granted per project.
resource "google_project_iam_member" "builder_writes_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = local.builder_member

  depends_on = [google_project_service.enabled]
}

# The smoke task's API key (deploy-gcp.sh --rollout-only, from cloudbuild.yaml) is
# written and deleted in Firestore by the builder. It adds nothing to what it can do:
# it deploys code that runs as api, which holds this role.
resource "google_project_iam_member" "builder_writes_smoke_key" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = local.builder_member

  depends_on = [google_project_service.enabled]
}

resource "google_artifact_registry_repository_iam_member" "builder_pushes_images" {
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = local.builder_member
}

resource "google_storage_bucket_iam_member" "builder_reads_uploads" {
  bucket = google_storage_bucket.builds.name
  role   = "roles/storage.objectViewer"
  member = local.builder_member
}

resource "google_service_account_iam_member" "builder_deploys_as_api" {
  service_account_id = google_service_account.api.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.builder_member
}

resource "google_service_account_iam_member" "builder_deploys_as_runner" {
  service_account_id = google_service_account.runner.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.builder_member
}

resource "google_cloud_run_v2_job_iam_member" "builder_updates_job" {
  for_each = google_cloud_run_v2_job.runner
  location = each.value.location
  name     = each.value.name
  role     = "roles/run.developer"
  member   = local.builder_member
}

resource "google_cloud_run_v2_service_iam_member" "builder_updates_service" {
  location = google_cloud_run_v2_service.api.location
  name     = google_cloud_run_v2_service.api.name
  role     = "roles/run.developer"
  member   = local.builder_member
}

# The job grants were single resources before the candidate job existed.
moved {
  from = google_cloud_run_v2_job_iam_member.api_launches_tasks
  to   = google_cloud_run_v2_job_iam_member.api_launches_tasks["live"]
}

moved {
  from = google_cloud_run_v2_job_iam_member.builder_updates_job
  to   = google_cloud_run_v2_job_iam_member.builder_updates_job["live"]
}
