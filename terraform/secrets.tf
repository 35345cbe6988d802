# The two secrets and their first versions. The values are write-only arguments
# (secret_data_wo, Terraform 1.11+): Terraform sends them to Secret Manager and keeps
# them in neither its plan nor its state. Give them as ephemeral variables, from the
# environment (README, "With Terraform instead"), never on the command line:
#   TF_VAR_anthropic_api_key=$(cat ~/anthropic.key) \
#   TF_VAR_task_token_key=$(head -c 32 /dev/urandom | base64) terraform apply ...
# A plain `terraform apply` then creates everything, and the service's first revision
# finds a `latest` version of each. Raise a *_version variable to write a new value.

resource "google_secret_manager_secret" "anthropic_api_key" {
  secret_id = "anthropic-api-key"

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_version" "anthropic_api_key" {
  secret                 = google_secret_manager_secret.anthropic_api_key.id
  secret_data_wo         = var.anthropic_api_key
  secret_data_wo_version = var.anthropic_api_key_version
}

resource "google_secret_manager_secret" "task_token_key" {
  secret_id = "task-token-key"

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_version" "task_token_key" {
  secret                 = google_secret_manager_secret.task_token_key.id
  secret_data_wo         = var.task_token_key
  secret_data_wo_version = var.task_token_key_version
}
