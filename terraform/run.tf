# The runner job (one execution per task) and the API service.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # Cloud Run's deterministic URL for the service, known before it exists: the API's
  # PUBLIC_URL and the audience of the scheduler's tokens both need it, and the
  # service cannot refer to its own uri attribute.
  # https://cloud.google.com/run/docs/triggering/https-request#deterministic
  service_url = "https://${var.service_name}-${data.google_project.this.number}.${var.region}.run.app"

  # = gunicorn's threads (gunicorn.conf.py): Cloud Run sends an instance no more
  # requests than it has threads, so none waits inside gunicorn behind held ones
  # (?wait, SSE; at most MAX_HELD_REQUESTS = 12), and the autoscaler adds instances.
  api_concurrency = 16

  # The longest task (MAX_TIMEOUT_SECONDS 3600) plus the execution's margin
  # (RUNNER_OVERHEAD_SECONDS 300: its start, the workspace restore, the upload); each
  # execution is started with its own task's timeout plus that margin.
  job_task_timeout = "3900s"
  job_max_retries  = 1

  # The jobs by memory class: executions cannot override CPU or memory, so a small code
  # task runs in the small job, billed for its size, and agents and larger tasks in the
  # large one (the dispatcher picks; api/config.py). Each has its candidate, which every
  # rollout checks a new image in first (self-check and a smoke task) before the live
  # job gets it (README, "Deploy"; docs/decisions/0014).
  small_job_name = coalesce(var.small_job_name, "${var.job_name}-small")
  jobs = {
    live              = { name = var.job_name, cpu = var.job_cpu, memory = var.job_memory }
    candidate         = { name = "${var.job_name}-candidate", cpu = var.job_cpu, memory = var.job_memory }
    "small"           = { name = local.small_job_name, cpu = var.small_job_cpu, memory = var.small_job_memory }
    "small-candidate" = { name = "${local.small_job_name}-candidate", cpu = var.small_job_cpu, memory = var.small_job_memory }
  }
}

resource "google_cloud_run_v2_job" "runner" {
  for_each            = local.jobs
  name                = each.value.name
  location            = var.region
  deletion_protection = var.deletion_protection

  template {
    task_count  = 1
    parallelism = 1

    template {
      service_account = google_service_account.runner.email
      # bubblewrap needs user namespaces: the second generation environment, where
      # jobs always run (explicit here; every deploy's --self-check proves it works).
      execution_environment = "EXECUTION_ENVIRONMENT_GEN2"
      max_retries           = local.job_max_retries
      timeout               = local.job_task_timeout

      # No env and no secrets: the API passes TASK_ID, TASK_TOKEN and API_URL to each
      # execution as overrides, and the runner holds nothing else.
      containers {
        image = var.runner_image
        resources {
          limits = {
            cpu    = each.value.cpu
            memory = each.value.memory
          }
        }
      }
    }
  }

  lifecycle {
    # cloudbuild.yaml rolls out new images; gcloud labels and annotates what it deploys.
    ignore_changes = [
      template[0].template[0].containers[0].image, template[0].labels, template[0].annotations,
      client, client_version,
    ]
  }

  depends_on = [google_project_service.enabled]
}

resource "google_cloud_run_v2_service" "api" {
  name                = var.service_name
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.deletion_protection
  # Public through the disabled invoker IAM check, never an allUsers binding, which
  # Domain Restricted Sharing refuses (the default for organizations since May 2024):
  # https://cloud.google.com/run/docs/securing/managing-access#invoker_check
  # Clients authenticate to the API itself (AUTH_MODE), runners with their task token.
  invoker_iam_disabled = true

  template {
    service_account                  = google_service_account.api.email
    max_instance_request_concurrency = local.api_concurrency
    # ?wait holds a request for 60 s at most; an SSE stream lasts as long as its task.
    timeout = "3600s"

    scaling {
      min_instance_count = 0
      max_instance_count = var.api_max_instances
    }

    containers {
      image = var.api_image
      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "1Gi"
        }
        # CPU during requests only: an idle service costs nothing (README, "Deploy").
        cpu_idle          = true
        startup_cpu_boost = true
      }

      env {
        name  = "EXECUTOR"
        value = "cloudrun"
      }
      env {
        name  = "CLOUD_RUN_JOB"
        value = google_cloud_run_v2_job.runner["live"].id
      }
      env {
        name  = "CLOUD_RUN_JOB_SMALL"
        value = google_cloud_run_v2_job.runner["small"].id
      }
      env {
        name  = "GOOGLE_CLOUD_PROJECT"
        value = var.project_id
      }
      env {
        name  = "AUTH_MODE"
        value = var.auth_mode
      }
      env {
        name  = "RECONCILE_INVOKER"
        value = google_service_account.scheduler.email
      }
      env {
        name  = "GUNICORN_THREADS"
        value = tostring(local.api_concurrency)
      }
      env {
        name  = "PUBLIC_URL"
        value = local.service_url
      }
      env {
        name  = "FILES_BUCKET"
        value = google_storage_bucket.files.name
      }
      env {
        name  = "SECRETS_KMS_KEY"
        value = google_kms_crypto_key.user_secrets.id
      }
      # The operator's settings: each a variable, so an apply keeps what they hold.
      dynamic "env" {
        for_each = var.firebase_web_config == "" ? {} : { FIREBASE_WEB_CONFIG = var.firebase_web_config }
        content {
          name  = env.key
          value = env.value
        }
      }
      dynamic "env" {
        for_each = var.api_env
        content {
          name  = env.key
          value = env.value
        }
      }
      # Secrets by reference: Cloud Run reads them when an instance starts.
      env {
        name = "TASK_TOKEN_KEY"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.task_token_key.secret_id
            version = "latest"
          }
        }
      }
      env {
        name = "ANTHROPIC_API_KEY"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.anthropic_api_key.secret_id
            version = "latest"
          }
        }
      }
    }
  }

  lifecycle {
    # cloudbuild.yaml rolls out new images and moves the traffic; gcloud labels and
    # annotates the revisions it deploys.
    ignore_changes = [
      template[0].containers[0].image, template[0].labels, template[0].annotations, traffic,
      client, client_version,
    ]
  }

  depends_on = [
    google_secret_manager_secret_iam_member.api_reads_anthropic_key,
    google_secret_manager_secret_iam_member.api_reads_token_key,
    google_secret_manager_secret_version.anthropic_api_key,
    google_secret_manager_secret_version.task_token_key,
    google_storage_bucket_iam_member.api_uses_files,
  ]
}

# The job was a single resource before its candidate existed: keep its state.
moved {
  from = google_cloud_run_v2_job.runner
  to   = google_cloud_run_v2_job.runner["live"]
}
