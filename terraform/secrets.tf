# The two secrets, as containers only: their values never pass through Terraform (or
# its state). Add the versions with gcloud, from stdin (README, "Deploy").

resource "google_secret_manager_secret" "anthropic_api_key" {
  secret_id = "anthropic-api-key"

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret" "task_token_key" {
  secret_id = "task-token-key"

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}
